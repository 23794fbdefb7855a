//! Authentication of API calls: the middleware that turns a credential into
//! a [`Principal`] or answers 401.

pub mod api_keys;
pub mod scopes;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use sqlx::PgPool;

use crate::problem::{Problem, ProblemContext};

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    pub workspace_id: String,
    /// `key_…` for API keys.
    pub principal_id: String,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
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
/// its extensions for the handler.
pub async fn require_principal(State(pool): State<PgPool>, mut request: Request, next: Next) -> Response {
    let Some(token) = credential(request.headers()).map(str::to_owned) else {
        let (parts, _) = request.into_parts();
        return Problem::unauthorized("send an API key as `Authorization: Bearer <key>` or `X-API-Key`")
            .render(&ProblemContext::of(&parts));
    };
    match api_keys::verify(&pool, &token).await {
        Ok(Some(principal)) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Ok(None) => {
            let (parts, _) = request.into_parts();
            Problem::unauthorized("the API key is invalid or revoked").render(&ProblemContext::of(&parts))
        }
        Err(error) => {
            tracing::error!(%error, "API key lookup failed");
            let (parts, _) = request.into_parts();
            Problem::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "auth-unavailable",
                "Authentication unavailable",
                "credentials cannot be checked right now; retry later",
            )
            .render(&ProblemContext::of(&parts))
        }
    }
}
