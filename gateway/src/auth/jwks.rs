//! The key set that asymmetric JWTs are verified against, from a file or a
//! URL, cached and refreshed.
//!
//! A failed refresh keeps the last good set: a JWKS endpoint hiccup must not
//! turn into 401s for every caller. An unknown `kid` triggers a refresh, but
//! never more often than the configured floor, so forged kids cannot make
//! the gateway hammer the identity provider.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm},
};
use outbound_http::{body::read_bounded, client::Timeouts};
use tokio::sync::Mutex;

/// A key set is a few keys; anything larger is not one.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub enum JwksSource {
    File(std::path::PathBuf),
    Url(String),
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("reading JWKS file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("JWKS is not a valid key set: {0}")]
    Parse(String),
}

/// A usable verification key from the set.
#[derive(Clone)]
pub struct VerificationKey {
    pub key: Arc<DecodingKey>,
    /// The algorithm the JWK pins, if it names one.
    pub algorithm: Option<Algorithm>,
}

pub struct Jwks {
    source: JwksSource,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, VerificationKey>>,
    min_refresh: Duration,
    /// When the set was last fetched (successfully or not); guards the floor.
    last_attempt: Mutex<Option<Instant>>,
}

impl Jwks {
    /// Loads the set once. A file must load; a URL that fails now is retried
    /// later (the gateway still serves API keys meanwhile).
    pub async fn load(source: JwksSource, min_refresh: Duration) -> Result<Arc<Self>, JwksError> {
        let jwks = Arc::new(Self {
            source,
            // The operator's identity provider, which may be internal.
            http: outbound_http::client::configured(
                Timeouts {
                    connect: Duration::from_secs(5),
                    request: Some(Duration::from_secs(5)),
                    read: None,
                },
                concat!("chatbot-platform-gateway/", env!("CARGO_PKG_VERSION")),
            ),
            keys: RwLock::new(HashMap::new()),
            min_refresh,
            last_attempt: Mutex::new(None),
        });
        match (&jwks.source, jwks.refresh().await) {
            (JwksSource::File(_), Err(error)) => return Err(error),
            (JwksSource::Url(_), Err(error)) => tracing::warn!(%error, "JWKS not loaded yet; will retry"),
            (_, Ok(count)) => tracing::info!(keys = count, "JWKS loaded"),
        }
        Ok(jwks)
    }

    /// The key for `kid`, refreshing once (within the floor) when unknown.
    pub async fn key(&self, kid: &str) -> Option<VerificationKey> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        {
            let mut last = self.last_attempt.lock().await;
            let due = last.is_none_or(|at| at.elapsed() >= self.min_refresh);
            if !due {
                return self.cached(kid);
            }
            *last = Some(Instant::now());
        }
        if let Err(error) = self.refresh().await {
            tracing::warn!(%error, "JWKS refresh failed; keeping the last good key set");
        }
        self.cached(kid)
    }

    fn cached(&self, kid: &str) -> Option<VerificationKey> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// Refreshes on a timer so rotated keys arrive before tokens use them.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        let jwks = Arc::clone(self);
        service_runtime::shutdown::spawn_periodic(every, shutdown, move || {
            let jwks = Arc::clone(&jwks);
            async move {
                *jwks.last_attempt.lock().await = Some(Instant::now());
                if let Err(error) = jwks.refresh().await {
                    tracing::warn!(%error, "JWKS refresh failed; keeping the last good key set");
                }
            }
        });
    }

    /// Fetches and swaps in a new set; on any error the old set stays.
    async fn refresh(&self) -> Result<usize, JwksError> {
        let text = match &self.source {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|source| JwksError::File {
                    path: path.display().to_string(),
                    source,
                })?,
            JwksSource::Url(url) => self.fetch(url).await?,
        };
        let set: JwkSet = serde_json::from_str(&text).map_err(|e| JwksError::Parse(e.to_string()))?;
        let keys = usable_keys(&set);
        let count = keys.len();
        if let Ok(mut slot) = self.keys.write() {
            *slot = keys;
        }
        Ok(count)
    }

    async fn fetch(&self, url: &str) -> Result<String, JwksError> {
        let fail = |reason: String| JwksError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let response = self.http.get(url).send().await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let body = read_bounded(response, MAX_JWKS_BYTES)
            .await
            .map_err(|e| fail(e.to_string()))?;
        String::from_utf8(body).map_err(|e| fail(e.to_string()))
    }
}

/// Asymmetric keys with a `kid`. Symmetric (`oct`) keys are dropped: a JWKS
/// is public, and a shared secret in it would let anyone mint tokens.
fn usable_keys(set: &JwkSet) -> HashMap<String, VerificationKey> {
    set.keys
        .iter()
        .filter(|jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)))
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((
                kid,
                VerificationKey {
                    key: Arc::new(key),
                    algorithm: pinned_algorithm(jwk),
                },
            ))
        })
        .collect()
}

fn pinned_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match jwk.common.key_algorithm? {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::RS384 => Some(Algorithm::RS384),
        KeyAlgorithm::RS512 => Some(Algorithm::RS512),
        KeyAlgorithm::PS256 => Some(Algorithm::PS256),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::ES384 => Some(Algorithm::ES384),
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Whether `url` may be fetched: HTTPS anywhere, plain HTTP on loopback only.
pub fn url_allowed(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_must_come_over_https_unless_from_this_machine() {
        assert!(url_allowed("https://idp.example.com/.well-known/jwks.json"));
        assert!(url_allowed("http://127.0.0.1:9000/jwks.json"));
        assert!(url_allowed("http://localhost/jwks"));
        assert!(!url_allowed("http://idp.example.com/jwks.json"));
        assert!(!url_allowed("http://127.0.0.1.evil.com/jwks.json"));
        assert!(!url_allowed("ftp://idp/jwks"));
    }

    #[test]
    fn symmetric_keys_in_a_jwks_are_ignored() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}))
        .unwrap();
        let keys = usable_keys(&set);
        assert!(!keys.contains_key("shared"));
        assert_eq!(keys["ed"].algorithm, Some(Algorithm::EdDSA));
    }
}
