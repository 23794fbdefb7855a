//! Settings for verifying JWTs from the customer's identity provider, from
//! the environment.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use service_runtime::config::{self, ConfigError};

use super::jwks::{self, JwksSource};

/// External JWT verification; absent when neither a secret nor a JWKS is set.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// `GATEWAY_JWT_HS256_SECRET` (at least 32 bytes).
    pub hs256_secret: Option<String>,
    /// `GATEWAY_JWKS_URL` (HTTPS, or HTTP on loopback) or `GATEWAY_JWKS_FILE`.
    pub jwks: Option<JwksSource>,
    /// `GATEWAY_JWT_ALGORITHMS`: asymmetric algorithms accepted with JWKS keys.
    pub asymmetric_algorithms: Vec<Algorithm>,
    /// `GATEWAY_JWT_ISSUERS` (comma-separated; required).
    pub issuers: Vec<String>,
    /// `GATEWAY_JWT_AUDIENCE` (required).
    pub audience: String,
    /// `GATEWAY_JWT_LEEWAY_SECONDS` for `exp` and `nbf` (default 30).
    pub leeway_seconds: u64,
    /// `GATEWAY_JWT_WORKSPACE_CLAIM` (default `workspace_id`).
    pub workspace_claim: String,
    /// `GATEWAY_JWKS_MIN_REFRESH_SECONDS`: floor between refetches (default 60).
    pub jwks_min_refresh: Duration,
    /// `GATEWAY_JWKS_REFRESH_SECONDS`: periodic refresh (default 300).
    pub jwks_refresh_every: Duration,
}

pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;
pub const DEFAULT_WORKSPACE_CLAIM: &str = "workspace_id";

impl JwtConfig {
    /// `None` when external JWTs are off (no secret and no key set).
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let hs256_secret = config::optional("GATEWAY_JWT_HS256_SECRET");
        let jwks = match (
            config::optional("GATEWAY_JWKS_URL"),
            config::optional("GATEWAY_JWKS_FILE"),
        ) {
            (Some(url), _) if !jwks::url_allowed(&url) => {
                return Err(ConfigError::invalid(
                    "GATEWAY_JWKS_URL",
                    &url,
                    "must be https:// (http:// only on loopback)",
                ));
            }
            (Some(url), _) => Some(JwksSource::Url(url)),
            (None, Some(path)) => Some(JwksSource::File(path.into())),
            (None, None) => None,
        };
        if hs256_secret.is_none() && jwks.is_none() {
            return Ok(None);
        }
        if hs256_secret.as_ref().is_some_and(|secret| secret.len() < 32) {
            return Err(ConfigError::invalid(
                "GATEWAY_JWT_HS256_SECRET",
                "(hidden)",
                "must be at least 32 bytes",
            ));
        }
        let hint = "required when JWT verification is configured";
        Ok(Some(Self {
            hs256_secret,
            jwks,
            asymmetric_algorithms: parse_algorithms(&config::string("GATEWAY_JWT_ALGORITHMS", "RS256,ES256,EdDSA"))?,
            issuers: config::list(&config::required("GATEWAY_JWT_ISSUERS", hint)?),
            audience: config::required("GATEWAY_JWT_AUDIENCE", hint)?,
            leeway_seconds: config::parsed("GATEWAY_JWT_LEEWAY_SECONDS", DEFAULT_LEEWAY_SECONDS)?,
            workspace_claim: config::string("GATEWAY_JWT_WORKSPACE_CLAIM", DEFAULT_WORKSPACE_CLAIM),
            jwks_min_refresh: config::seconds("GATEWAY_JWKS_MIN_REFRESH_SECONDS", Duration::from_secs(60))?,
            jwks_refresh_every: config::seconds("GATEWAY_JWKS_REFRESH_SECONDS", Duration::from_secs(300))?,
        }))
    }
}

/// Asymmetric algorithm names; symmetric ones are refused here because only
/// the HS256 secret may verify HMAC tokens.
pub fn parse_algorithms(text: &str) -> Result<Vec<Algorithm>, ConfigError> {
    config::list(text)
        .iter()
        .map(|name| match name.parse::<Algorithm>() {
            Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => Err(ConfigError::invalid(
                "GATEWAY_JWT_ALGORITHMS",
                text,
                format!("{name} is not an accepted asymmetric algorithm (RS256, ES256, EdDSA, …)"),
            )),
            Ok(alg) => Ok(alg),
        })
        .collect()
}
