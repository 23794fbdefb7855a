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
pub mod metadata;
pub mod pkce;
pub mod revoke;
pub mod signing_keys;
pub mod token;

use std::{sync::Arc, time::Duration};

use rand::RngCore;
use sha2::{Digest, Sha256};

use signing_keys::SigningKeys;

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
