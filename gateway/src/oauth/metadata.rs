//! `/.well-known/oauth-authorization-server` (RFC 8414) and the JWKS of the
//! gateway's token signing keys.

use std::sync::Arc;

use axum::{Json, extract::State};
use serde_json::{Value, json};

use crate::{AppState, auth::scopes};

pub async fn authorization_server(State(state): State<Arc<AppState>>) -> Json<Value> {
    let issuer = &state.oauth.config.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": scopes::ALL,
    }))
}

pub async fn jwks(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.oauth.keys.jwks())
}
