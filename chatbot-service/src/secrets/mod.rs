//! Model API keys and who may use them where. A bot's config names a key
//! (`config.llm.api_key_ref`); the value never leaves the service except
//! toward the one origin it is bound to, and never appears in an answer or
//! a log.
//!
//! A name resolves first to the workspace's own secret, sealed at rest for
//! the workspace, the name and the origin together; then to a key the
//! operator provides and has granted to the workspace ([`operator`]). A
//! name that is neither is refused the same way whether it exists in
//! another workspace or nowhere, so names cannot be probed.

pub mod operator;

use reqwest::Url;
use sealing::Keyring;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::store::secrets as store;

/// The longest value accepted: model API keys are far shorter.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Why a bot cannot use the key it names.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("names no secret of this workspace")]
    Unknown,
    #[error("secret {name:?} may only be sent to {origin}, not to {requested}")]
    OtherOrigin {
        name: String,
        origin: String,
        requested: String,
    },
    #[error("secret {0:?} cannot be opened here (its sealing key is no longer configured)")]
    Unopenable(String),
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct Secrets {
    pool: PgPool,
    keys: Keyring,
    operator: operator::Secrets,
}

impl Secrets {
    pub fn new(pool: PgPool, keys: Keyring, operator: operator::Secrets) -> Self {
        Self { pool, keys, operator }
    }

    /// The value `name` holds for `workspace_id`, if it may be sent to
    /// `base_url`.
    pub async fn resolve(&self, workspace_id: &str, name: &str, base_url: &str) -> Result<String, Refusal> {
        let requested = origin_of(base_url).unwrap_or_else(|_| base_url.to_owned());
        let bound = |origin: String| match origin == requested {
            true => Ok(()),
            false => Err(Refusal::OtherOrigin {
                name: name.to_owned(),
                origin,
                requested: requested.clone(),
            }),
        };
        let own = store::sealed(&self.pool, workspace_id, name)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        if let Some((sealed, origin)) = own {
            // The origin is checked first: a key bound elsewhere is not
            // even opened.
            bound(origin.clone())?;
            return self
                .keys
                .open(&sealed, &[workspace_id, name, &origin])
                .ok()
                .and_then(|value| String::from_utf8(value).ok())
                .ok_or_else(|| Refusal::Unopenable(name.to_owned()));
        }
        let origin = self.operator.granted(name, workspace_id).ok_or(Refusal::Unknown)?;
        bound(origin_of(&origin).unwrap_or(origin))?;
        self.operator.get(name).ok_or(Refusal::Unknown)
    }

    /// `value` sealed for the workspace's secret `name` bound to `origin`.
    pub fn seal(&self, workspace_id: &str, name: &str, origin: &str, value: &str) -> Vec<u8> {
        self.keys.seal(value.as_bytes(), &[workspace_id, name, origin])
    }
}

/// `url`'s origin, `scheme://host[:port]` with the default port left out.
pub fn origin_of(url: &str) -> Result<String, String> {
    let parsed = Url::parse(url.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("must be an http or https URL".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("names no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(parsed.origin().ascii_serialization())
}

/// Whether `name` can name a secret: 1 to 100 letters, digits, '-', '_'
/// or '.', not starting with '.'.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= 100 && operator::Secrets::is_valid_reference(name)
}

/// A value's fingerprint: enough to tell two apart, too little (32 bits)
/// to confirm a guess at the value.
pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Why `value` cannot be a secret, if it cannot: it goes in an HTTP header.
pub fn value_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return Some("must not be empty");
    }
    if value.len() > MAX_VALUE_BYTES {
        return Some("must be at most 8 KiB");
    }
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Some("must be printable ASCII (it is sent in an HTTP header)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            origin_of("https://api.openai.com/v1").unwrap(),
            "https://api.openai.com"
        );
        assert_eq!(
            origin_of("https://API.openai.com:443/").unwrap(),
            "https://api.openai.com"
        );
        assert_eq!(origin_of("http://10.0.0.5:11434/v1").unwrap(), "http://10.0.0.5:11434");
        assert!(origin_of("ftp://example.com").is_err());
        assert!(origin_of("https://user:pw@example.com").is_err());
        assert!(origin_of("not a url").is_err());
    }

    #[test]
    fn fingerprints_tell_values_apart_without_revealing_them() {
        let (a, b) = (fingerprint("sk-one"), fingerprint("sk-two"));
        assert_ne!(a, b);
        assert_eq!(a.len(), "sha256:".len() + 8);
        assert!(!a.contains("sk-"));
    }

    #[test]
    fn values_must_fit_a_header() {
        assert_eq!(value_problem("sk-abc"), None);
        assert!(value_problem("").is_some());
        assert!(value_problem("sk\r\nX-Injected: 1").is_some());
        assert!(value_problem(&"k".repeat(MAX_VALUE_BYTES + 1)).is_some());
    }
}
