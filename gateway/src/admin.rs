//! The platform operator's API (`/admin/v1`): creating workspaces and
//! issuing their API keys. Guarded by the admin token from configuration.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use ids::WorkspaceId;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    AppState,
    auth::{api_keys, scopes, workspace_plans::DEFAULT_PLAN},
    json_body,
    problem::{Problem, ProblemContext, ProblemResponse},
};

/// Middleware: only the configured admin token passes. Both sides are hashed
/// first so the comparison takes the same time whatever the lengths.
pub async fn require_admin(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let allowed = match (&state.admin_token_hash, presented) {
        (Some(expected), Some(token)) => bool::from(Sha256::digest(token.as_bytes()).as_slice().ct_eq(expected)),
        _ => false,
    };
    if allowed {
        return next.run(request).await;
    }
    let (parts, _) = request.into_parts();
    let detail = if state.admin_token_hash.is_none() {
        "the admin API is disabled: set GATEWAY_ADMIN_TOKEN"
    } else {
        "send the platform admin token as `Authorization: Bearer <token>`"
    };
    Problem::unauthorized(detail).render(&ProblemContext::of(&parts))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    name: String,
    /// A plan from GATEWAY_RATE_LIMIT_PLANS; `default` when absent.
    #[serde(default)]
    plan: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

type AdminResult = Result<Response, ProblemResponse>;

pub async fn create_workspace(State(state): State<Arc<AppState>>, request: Request) -> AdminResult {
    let ctx = ProblemContext::of_request(&request);
    let input: CreateWorkspace = json_body::read(request, &ctx).await?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ProblemResponse::new(
            Problem::invalid_argument("name", "must be 1 to 100 characters"),
            ctx,
        ));
    }
    let plan = input.plan.unwrap_or_else(|| DEFAULT_PLAN.to_owned());
    if !state.rate_limits.has_plan(&plan) {
        return Err(ProblemResponse::new(
            Problem::invalid_argument("plan", format!("{plan:?} is not a configured plan")),
            ctx,
        ));
    }
    let id = WorkspaceId::generate();
    let db_error = |e: sqlx::Error| ProblemResponse::new(Problem::database(e), ctx.clone());
    let mut tx = state.pool.begin().await.map_err(db_error)?;
    let created_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("INSERT INTO workspaces (id, name, plan) VALUES ($1, $2, $3) RETURNING created_at")
            .bind(&id)
            .bind(name)
            .bind(&plan)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
    let key = api_keys::issue(
        &mut *tx,
        id.as_str(),
        "default",
        scopes::parse(&[]).expect("all scopes are known"),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let body = json!({
        "workspace": {"id": id, "name": name, "plan": plan, "created_at": created_at},
        "api_key": key,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn create_api_key(
    State(state): State<Arc<AppState>>,
    Path(workspace_id): Path<String>,
    request: Request,
) -> AdminResult {
    let ctx = ProblemContext::of_request(&request);
    let input: CreateKey = json_body::read(request, &ctx).await?;
    let scopes = scopes::parse(&input.scopes)
        .map_err(|reason| ProblemResponse::new(Problem::invalid_argument("scopes", reason), ctx.clone()))?;
    if WorkspaceId::parse("workspace_id", &workspace_id).is_err() {
        return Err(ProblemResponse::new(
            Problem::not_found(WorkspaceId::KIND, &workspace_id),
            ctx,
        ));
    }
    let db_error = |e: sqlx::Error| ProblemResponse::new(Problem::database(e), ctx.clone());
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM workspaces WHERE id = $1")
        .bind(&workspace_id)
        .fetch_optional(&state.pool)
        .await
        .map_err(db_error)?;
    if exists.is_none() {
        return Err(ProblemResponse::new(
            Problem::not_found(WorkspaceId::KIND, &workspace_id),
            ctx,
        ));
    }
    let key = api_keys::issue(&state.pool, &workspace_id, input.name.trim(), scopes)
        .await
        .map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(json!({"api_key": key}))).into_response())
}

/// Rotates the OAuth token signing key: new tokens use a new key; the old
/// one keeps verifying until its tokens have expired.
pub async fn rotate_signing_key(State(state): State<Arc<AppState>>, request: Request) -> AdminResult {
    let ctx = ProblemContext::of_request(&request);
    match state.oauth.keys.rotate().await {
        Ok(kid) => Ok((StatusCode::CREATED, Json(json!({"kid": kid}))).into_response()),
        Err(error) => {
            tracing::error!(%error, "rotating the signing key");
            Err(ProblemResponse::new(Problem::internal(), ctx))
        }
    }
}
