//! The caller's side: a channel wrapper that signs every call it sends.
//!
//! Whoever builds the request sets the principal metadata (the gateway from
//! the credential it checked, a service from the workspace it acts for);
//! the wrapper binds it to the call's path, request id and deadline.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderValue};
use tower::Service;

use super::{
    TOKEN,
    keys::{CallKeys, CallKeysError, CallMac, Party},
    token::Claims,
};
use crate::principal::{PRINCIPAL_ID, REQUEST_ID, SCOPES, WORKSPACE_ID};

/// The longest a token lives, whatever the call's deadline: a streamed
/// call is checked when it opens.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(60);

/// `inner` with every call signed for `callee`.
#[derive(Clone)]
pub struct Signed<S> {
    inner: S,
    signer: Arc<Signer>,
}

struct Signer {
    caller: Party,
    callee: Party,
    key: CallMac,
}

impl<S> Signed<S> {
    /// Fails when `keys` hold none for calling `callee`.
    pub fn new(inner: S, keys: &CallKeys, callee: Party) -> Result<Self, CallKeysError> {
        let key = keys.signer(callee).cloned().ok_or(CallKeysError::MissingSigner {
            caller: keys.me(),
            callee,
        })?;
        Ok(Self {
            inner,
            signer: Arc::new(Signer {
                caller: keys.me(),
                callee,
                key,
            }),
        })
    }
}

impl<S, B> Service<http::Request<B>> for Signed<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        self.signer.sign(parts.uri.path(), &mut parts.headers);
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

impl Signer {
    fn sign(&self, path: &str, headers: &mut HeaderMap) {
        if !headers.contains_key(REQUEST_ID) {
            headers.insert(REQUEST_ID, fresh_request_id());
        }
        let lifetime = deadline(headers).map_or(MAX_LIFETIME, |d| d.min(MAX_LIFETIME));
        let expires_ms = now_ms() + lifetime.as_millis() as u64;
        let token = token(&self.key, self.caller, self.callee, path, headers, expires_ms);
        headers.insert(TOKEN, token);
    }
}

impl CallKeys {
    /// The token for a call to `callee`'s `path` carrying `headers`'
    /// principal and request id, valid until `expires_ms` (ms since the
    /// epoch); none without a key for `callee`. [`Signed`] does this for
    /// every call; this is for callers that build requests by hand.
    pub fn token(&self, callee: Party, path: &str, headers: &HeaderMap, expires_ms: u64) -> Option<HeaderValue> {
        let key = self.signer(callee)?;
        Some(token(key, self.me(), callee, path, headers, expires_ms))
    }
}

fn token(key: &CallMac, caller: Party, callee: Party, path: &str, headers: &HeaderMap, expires_ms: u64) -> HeaderValue {
    let text = |key: &str| headers.get(key).and_then(|v| v.to_str().ok()).unwrap_or("");
    let claims = Claims {
        caller,
        callee,
        path,
        expires_ms,
        request_id: text(REQUEST_ID),
        workspace_id: text(WORKSPACE_ID),
        principal_id: text(PRINCIPAL_ID),
        scopes: text(SCOPES),
    };
    HeaderValue::try_from(claims.sign(key)).expect("a token is ASCII")
}

/// A request id for a call no client request started (a background job's).
fn fresh_request_id() -> HeaderValue {
    let id = format!("req_{:032x}", rand::random::<u128>());
    HeaderValue::try_from(id).expect("hex is ASCII")
}

/// The call's `grpc-timeout`: digits and a unit.
pub(crate) fn deadline(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Now, in ms since the epoch, as tokens count time.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
