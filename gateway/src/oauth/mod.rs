//! The gateway's OAuth 2.0 authorization server (RFC 6749), so third-party
//! apps can act for a workspace: authorization code with PKCE (RFC 7636),
//! refresh tokens with rotation and reuse detection, client credentials,
//! revocation (RFC 7009), and metadata (RFC 8414).
//!
//! Access tokens are short-lived ES256 JWTs signed with the gateway's own
//! rotatable keys, verified on the same path as external JWTs.

pub mod authorize;
pub mod client_auth;
pub mod clients;
pub mod errors;
pub mod form;
pub mod metadata;
pub mod pkce;
pub mod revoke;
pub mod token;

use std::{sync::Arc, time::Duration};

use rand::RngCore;
use service_runtime::config::{self, ConfigError};
use sha2::{Digest, Sha256};

use crate::auth::signing_keys::SigningKeys;

#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// `GATEWAY_PUBLIC_URL`: the issuer, and the base of every endpoint URL.
    pub issuer: String,
    /// `GATEWAY_OAUTH_AUDIENCE`: the `aud` of issued access tokens.
    pub audience: String,
    /// `GATEWAY_OAUTH_ACCESS_TOKEN_SECONDS` (600).
    pub access_ttl: Duration,
    /// `GATEWAY_OAUTH_REFRESH_TOKEN_SECONDS` (30 days).
    pub refresh_ttl: Duration,
    /// Authorization codes live one minute (RFC 6749 recommends at most ten).
    pub code_ttl: Duration,
}

impl OAuthConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            issuer: config::string("GATEWAY_PUBLIC_URL", DEFAULT_ISSUER)
                .trim_end_matches('/')
                .to_owned(),
            audience: config::string("GATEWAY_OAUTH_AUDIENCE", &defaults.audience),
            access_ttl: config::seconds("GATEWAY_OAUTH_ACCESS_TOKEN_SECONDS", defaults.access_ttl)?,
            refresh_ttl: config::seconds("GATEWAY_OAUTH_REFRESH_TOKEN_SECONDS", defaults.refresh_ttl)?,
            code_ttl: defaults.code_ttl,
        })
    }
}

impl Default for OAuthConfig {
    /// The defaults, for a gateway answering where the README's up command
    /// runs it.
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: "chatbot-platform".into(),
            access_ttl: Duration::from_secs(600),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            code_ttl: Duration::from_secs(60),
        }
    }
}

const DEFAULT_ISSUER: &str = "http://127.0.0.1:8080";

pub struct OAuth {
    pub config: OAuthConfig,
    pub keys: Arc<SigningKeys>,
}

/// A random bearer secret (code, refresh token, client secret): 32 bytes,
/// base64url.
pub fn random_secret() -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored instead of a secret.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Splits a space-separated scope parameter.
pub fn scope_list(text: &str) -> Vec<String> {
    text.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}
