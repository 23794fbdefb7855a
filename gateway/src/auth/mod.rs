//! Authentication of API calls: the middleware that turns a credential into
//! a [`Principal`] or answers 401.

pub mod api_keys;
pub mod credential_cache;
pub mod jwks;
pub mod jwt;
pub mod jwt_config;
pub mod scopes;
pub mod signing_keys;
pub mod workspace_plans;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use std::sync::Arc;

use crate::{
    AppState,
    problem::{Problem, ProblemContext, ProblemResponse},
};

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub workspace_id: String,
    /// `key_…` for API keys.
    pub principal_id: String,
    pub scopes: Vec<String>,
    /// The workspace's plan, which sizes its rate limits.
    pub plan: String,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The caller of a route the gateway serves itself, if it holds `scope`.
pub fn require_scope(request: &Request, ctx: &ProblemContext, scope: &str) -> Result<Principal, ProblemResponse> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ProblemResponse::new(Problem::internal(), ctx.clone()))?;
    if !principal.has_scope(scope) {
        return Err(ProblemResponse::new(Problem::insufficient_scope(scope), ctx.clone()));
    }
    Ok(principal)
}

/// Reads `Authorization: Bearer <key>` or `X-API-Key: <key>`.
fn credential(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Axum middleware: authenticates the request and stores the principal in
/// its extensions for the handler. API keys (`cbk_…`) are looked up; JWTs
/// are verified when JWT verification is configured.
pub async fn require_principal(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let outcome = match credential(request.headers()) {
        None => Err(Problem::unauthorized(
            "send an API key as `Authorization: Bearer <key>` or `X-API-Key`, or a bearer JWT",
        )),
        Some(token) => authenticate(&state, token).await,
    };
    match outcome {
        Ok(principal) => {
            let workspace = crate::usage::WorkspaceLabel(principal.workspace_id.clone());
            request.extensions_mut().insert(principal);
            let mut response = next.run(request).await;
            response.extensions_mut().insert(workspace);
            response
        }
        Err(problem) => problem.render(&ProblemContext::of_request(&request)),
    }
}

async fn authenticate(state: &AppState, token: &str) -> Result<Principal, Problem> {
    let cache_key = credential_cache::CredentialCache::key(token);
    if let Some(principal) = state.credentials.get(&cache_key) {
        return Ok(principal);
    }
    let (principal, valid_for) = verify(state, token).await?;
    state.credentials.put(cache_key, principal.clone(), valid_for);
    Ok(principal)
}

/// Checks a credential from scratch; also says how long it stays valid
/// (JWTs expire; API keys last until revoked).
async fn verify(state: &AppState, token: &str) -> Result<(Principal, Option<std::time::Duration>), Problem> {
    if jwt::looks_like_jwt(token) {
        let mut principal = state
            .jwt
            .verify(token)
            .await
            .map_err(|error| Problem::invalid_token(&error.to_string()))?;
        principal.plan = state.workspace_plans.plan_of(&principal.workspace_id).await;
        let valid_for = jwt::remaining_lifetime(token);
        return Ok((principal, Some(valid_for)));
    }
    match api_keys::verify(&state.pool, token).await {
        Ok(Some(principal)) => Ok((principal, None)),
        Ok(None) => Err(Problem::invalid_token("the API key is invalid or revoked")),
        Err(error) => {
            tracing::error!(%error, "API key lookup failed");
            Err(Problem::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "auth-unavailable",
                "Authentication unavailable",
                "credentials cannot be checked right now; retry later",
            ))
        }
    }
}
