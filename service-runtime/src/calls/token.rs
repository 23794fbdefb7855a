//! The token itself: `v1.<caller>.<expiry, ms since the epoch>.<MAC>`, the
//! MAC (base64url) taken over everything the callee acts on.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::Mac;

use super::keys::{CallMac, Party};

const VERSION: &str = "v1";

/// What a token vouches for; every field is covered by the MAC.
pub(crate) struct Claims<'a> {
    pub caller: Party,
    pub callee: Party,
    /// The RPC, `/package.Service/Method`.
    pub path: &'a str,
    pub expires_ms: u64,
    pub request_id: &'a str,
    pub workspace_id: &'a str,
    pub principal_id: &'a str,
    pub scopes: &'a str,
}

impl Claims<'_> {
    fn mac(&self, key: &CallMac) -> CallMac {
        let mut mac = key.clone();
        // Metadata values hold no newline, so the fields cannot run into
        // one another.
        for part in [
            VERSION,
            self.caller.name(),
            self.callee.name(),
            self.path,
            &self.expires_ms.to_string(),
            self.request_id,
            self.workspace_id,
            self.principal_id,
            self.scopes,
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    pub fn sign(&self, key: &CallMac) -> String {
        let tag = self.mac(key).finalize().into_bytes();
        format!(
            "{VERSION}.{}.{}.{}",
            self.caller,
            self.expires_ms,
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Whether `tag` is the MAC of these claims under any of `keys`, in
    /// constant time for each key.
    pub fn verify(&self, tag: &[u8], keys: &[CallMac]) -> bool {
        keys.iter().any(|key| self.mac(key).verify_slice(tag).is_ok())
    }
}

/// A token's parts before its MAC is checked.
pub(crate) struct Presented {
    pub caller: Party,
    pub expires_ms: u64,
    pub tag: Vec<u8>,
}

pub(crate) fn parse(token: &str) -> Option<Presented> {
    let mut parts = token.split('.');
    if parts.next()? != VERSION {
        return None;
    }
    let caller = parts.next()?.parse().ok()?;
    let expires_ms = parts.next()?.parse().ok()?;
    let tag = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    parts.next().is_none().then_some(Presented {
        caller,
        expires_ms,
        tag,
    })
}
