//! The callee's side: a layer in front of every service that admits a call
//! only with a valid token from a caller it has a key for, and only when
//! the principal holds the RPC's required scope. Health checks and
//! reflection stay open: probes and tools carry no principal.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::HeaderMap;
use tonic::Status;
use tower::{Layer, Service};

use super::{
    TOKEN,
    keys::{CallKeys, Party},
    scopes,
    signing::{MAX_LIFETIME, now_ms},
    token::{self, Claims},
};
use crate::principal::{PRINCIPAL_ID, Principal, REQUEST_ID, SCOPES, WORKSPACE_ID};

/// How far callers' clocks may run behind or ahead of ours.
const CLOCK_SKEW: Duration = Duration::from_secs(5);

const OPEN_PREFIXES: [&str; 2] = ["/grpc.health.v1.Health/", "/grpc.reflection."];

/// Who made a call, once its token checked out. The principal goes into
/// the request's extensions, where [`Principal::of`] finds it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub party: Party,
    /// The workspace principal the call acts for, if any (an inbound
    /// webhook acts for none until its signature names one).
    pub principal: Option<Principal>,
}

#[derive(Clone)]
pub struct CallCheckLayer(Arc<CallKeys>);

impl CallCheckLayer {
    pub fn new(keys: CallKeys) -> Self {
        Self(Arc::new(keys))
    }
}

impl<S> Layer<S> for CallCheckLayer {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked {
            inner,
            keys: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Checked<S> {
    inner: S,
    keys: Arc<CallKeys>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> Service<http::Request<B>> for Checked<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if OPEN_PREFIXES.iter().any(|open| path.starts_with(open)) {
            return Box::pin(self.inner.call(request));
        }
        match check(&self.keys, path, request.headers()) {
            Ok(caller) => {
                if let Some(principal) = caller.principal {
                    request.extensions_mut().insert(principal);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                tracing::debug!(path, code = ?status.code(), reason = status.message(), "call refused");
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The verified caller of a call to `path`, or why it is refused.
pub fn check(keys: &CallKeys, path: &str, headers: &HeaderMap) -> Result<Caller, Status> {
    let text = |key: &str| headers.get(key).and_then(|v| v.to_str().ok()).unwrap_or("");
    let presented = token::parse(text(TOKEN))
        .ok_or_else(|| Status::unauthenticated("the call carries no valid x-call-token; only the gateway may call"))?;
    let keys_of_caller = keys.checkers(presented.caller);
    if keys_of_caller.is_empty() {
        return Err(Status::unauthenticated(format!(
            "calls from {} are not accepted here",
            presented.caller
        )));
    }
    let now = now_ms();
    let skew = CLOCK_SKEW.as_millis() as u64;
    if presented.expires_ms.saturating_add(skew) < now {
        return Err(Status::unauthenticated("the call token has expired"));
    }
    if presented.expires_ms > now + (MAX_LIFETIME.as_millis() as u64) + skew {
        return Err(Status::unauthenticated("the call token outlives any deadline"));
    }
    let claims = Claims {
        caller: presented.caller,
        callee: keys.me(),
        path,
        expires_ms: presented.expires_ms,
        request_id: text(REQUEST_ID),
        workspace_id: text(WORKSPACE_ID),
        principal_id: text(PRINCIPAL_ID),
        scopes: text(SCOPES),
    };
    if !claims.verify(&presented.tag, keys_of_caller) {
        return Err(Status::unauthenticated(
            "the call token does not match this call (another principal, RPC or request)",
        ));
    }
    let principal = Principal::from_verified(claims.workspace_id, claims.principal_id, claims.scopes);
    if let Some(scope) = scopes::required(path)
        && !principal.as_ref().is_some_and(|p| p.has_scope(scope))
    {
        return Err(Status::permission_denied(format!("this call needs the {scope} scope")));
    }
    Ok(Caller {
        party: presented.caller,
        principal,
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::calls::keys::generate;

    const PATH: &str = "/chatbot.v1.BotService/GetBot";

    fn signed(keys: &CallKeys, callee: Party, path: &str, workspace: &str, scopes: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(WORKSPACE_ID, HeaderValue::try_from(workspace).unwrap());
        headers.insert(SCOPES, HeaderValue::try_from(scopes).unwrap());
        headers.insert("grpc-timeout", HeaderValue::from_static("5S"));
        let mut service = super::super::Signed::new(
            tower::service_fn(|r: http::Request<()>| async move { Ok::<_, ()>(r) }),
            keys,
            callee,
        )
        .unwrap();
        let mut request = http::Request::builder()
            .uri(format!("http://x{path}"))
            .body(())
            .unwrap();
        *request.headers_mut() = headers;
        let request = futures_lite(service.call(request));
        request.headers().clone()
    }

    /// The signing service answers at once; poll it once.
    fn futures_lite<F: Future<Output = Result<http::Request<()>, ()>>>(future: F) -> http::Request<()> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match std::pin::pin!(future).poll(&mut cx) {
            Poll::Ready(Ok(request)) => request,
            _ => unreachable!("an immediate answer"),
        }
    }

    fn keys() -> (CallKeys, CallKeys) {
        let text = generate();
        (
            CallKeys::parse(Party::Gateway, &text).unwrap(),
            CallKeys::parse(Party::Chatbot, &text).unwrap(),
        )
    }

    #[test]
    fn a_signed_call_names_its_principal() {
        let (gateway, chatbot) = keys();
        let headers = signed(&gateway, Party::Chatbot, PATH, "ws_a", "read:bots");
        let caller = check(&chatbot, PATH, &headers).unwrap();
        assert_eq!(caller.party, Party::Gateway);
        assert_eq!(caller.principal.unwrap().workspace_id, "ws_a");
    }

    #[test]
    fn changing_any_covered_field_breaks_the_token() {
        let (gateway, chatbot) = keys();
        let headers = signed(&gateway, Party::Chatbot, PATH, "ws_a", "read:bots");
        for (key, value) in [
            (WORKSPACE_ID, "ws_b"),
            (SCOPES, "read:bots write:bots"),
            (REQUEST_ID, "req_other"),
            (PRINCIPAL_ID, "key_other"),
        ] {
            let mut forged = headers.clone();
            forged.insert(key, HeaderValue::from_static(value));
            let status = check(&chatbot, PATH, &forged).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{key}");
        }
        let status = check(&chatbot, "/chatbot.v1.BotService/DeleteBot", &headers).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "another RPC");
    }

    #[test]
    fn a_token_for_another_callee_or_from_an_unknown_caller_is_refused() {
        let text = generate();
        let gateway = CallKeys::parse(Party::Gateway, &text).unwrap();
        let integration = CallKeys::parse(Party::Integration, &text).unwrap();
        let headers = signed(&gateway, Party::Integration, PATH, "ws_a", "read:bots");
        let status = check(&CallKeys::parse(Party::Chatbot, &text).unwrap(), PATH, &headers).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        // A key from another deployment's list.
        let elsewhere = CallKeys::parse(Party::Integration, &generate()).unwrap();
        assert!(check(&elsewhere, PATH, &headers).is_err());
        assert!(check(&integration, PATH, &headers).is_ok());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let (gateway, chatbot) = keys();
        let mut headers = HeaderMap::new();
        headers.insert(WORKSPACE_ID, HeaderValue::from_static("ws_a"));
        headers.insert(SCOPES, HeaderValue::from_static("read:bots"));
        let token = gateway
            .token(Party::Chatbot, PATH, &headers, now_ms() - 60_000)
            .unwrap();
        headers.insert(TOKEN, token);
        let status = check(&chatbot, PATH, &headers).unwrap_err();
        assert_eq!(status.message(), "the call token has expired");
    }

    #[test]
    fn the_required_scope_is_checked_by_the_service() {
        let (gateway, chatbot) = keys();
        let path = "/chatbot.v1.BotService/CreateBot";
        let headers = signed(&gateway, Party::Chatbot, path, "ws_a", "read:bots");
        let status = check(&chatbot, path, &headers).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "this call needs the write:bots scope");
    }

    #[test]
    fn a_call_without_a_token_is_unauthenticated() {
        let (_, chatbot) = keys();
        let mut headers = HeaderMap::new();
        headers.insert(WORKSPACE_ID, HeaderValue::from_static("ws_a"));
        let status = check(&chatbot, PATH, &headers).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
}
