//! A workspace's own API key management (`/api/v1/api-keys`): create (the
//! key is shown once), list, revoke. The gateway owns these rows, so these
//! few routes are handled here rather than transcoded.
//!
//! A credential can only grant scopes it holds itself, so a narrow key can
//! never mint a broader one.

use std::sync::Arc;

use axum::{
    extract::{Path, Request, State},
    response::Response,
};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{
    AppState,
    auth::{api_keys, require_scope, scopes},
    json_body::read as read_json,
    list_params,
    problem::{Problem, ProblemContext, ProblemResponse},
    transcode::response::reply,
};

pub const SCOPE: &str = "manage:api-keys";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

type Outcome = Result<Response, ProblemResponse>;

pub async fn create(State(state): State<Arc<AppState>>, request: Request) -> Outcome {
    let ctx = ProblemContext::of_request(&request);
    let principal = require_scope(&request, &ctx, SCOPE)?;
    let input: CreateKey = read_json(request, &ctx).await?;
    let fail = |p: Problem| ProblemResponse::new(p, ctx.clone());
    let name = input.name.trim();
    if name.chars().count() > 100 {
        return Err(fail(Problem::invalid_argument(
            "name",
            "must be at most 100 characters",
        )));
    }
    let requested = if input.scopes.is_empty() {
        principal.scopes.clone()
    } else {
        input.scopes
    };
    let granted = scopes::parse(&requested).map_err(|reason| fail(Problem::invalid_argument("scopes", reason)))?;
    if let Some(beyond) = granted.iter().find(|s| !principal.has_scope(s)) {
        return Err(fail(Problem::insufficient_scope(beyond)));
    }
    let key = api_keys::issue(&state.pool, &principal.workspace_id, name, granted)
        .await
        .map_err(|e| fail(Problem::database(e)))?;
    Ok(reply(StatusCode::CREATED, json!({ "api_key": key }), ctx.format))
}

#[derive(sqlx::FromRow, serde::Serialize)]
struct KeyView {
    id: String,
    prefix: String,
    name: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

pub async fn list(State(state): State<Arc<AppState>>, request: Request) -> Outcome {
    let ctx = ProblemContext::of_request(&request);
    let principal = require_scope(&request, &ctx, SCOPE)?;
    let fail = |p: Problem| ProblemResponse::new(p, ctx.clone());
    let page = list_params::page(request.uri().query()).map_err(fail)?;
    let rows: Vec<KeyView> = page
        .fetch(
            &state.pool,
            "SELECT id, 'cbk_' || lookup_id AS prefix, name, scopes, created_at, last_used_at, revoked_at FROM api_keys",
            &principal.workspace_id,
        )
        .await
        .map_err(|e| fail(Problem::database(e)))?;
    let (rows, next_cursor) = page.finish(rows, |k| (k.created_at, &k.id));
    Ok(reply(
        StatusCode::OK,
        json!({ "api_keys": rows, "next_cursor": next_cursor }),
        ctx.format,
    ))
}

pub async fn revoke(State(state): State<Arc<AppState>>, Path(id): Path<String>, request: Request) -> Outcome {
    let ctx = ProblemContext::of_request(&request);
    let principal = require_scope(&request, &ctx, SCOPE)?;
    let fail = |p: Problem| ProblemResponse::new(p, ctx.clone());
    if ids::ApiKeyId::parse("key_id", &id).is_err() {
        return Err(fail(Problem::not_found("API key", &id)));
    }
    // The NOTIFY is delivered on commit, so every gateway drops its cached
    // credentials the moment the revocation is durable.
    let revoked: Option<DateTime<Utc>> = sqlx::query_scalar(
        "WITH revoked AS (
             UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
             WHERE workspace_id = $1 AND id = $2
             RETURNING id, revoked_at)
         SELECT revoked_at FROM revoked, pg_notify($3, revoked.id)",
    )
    .bind(&principal.workspace_id)
    .bind(&id)
    .bind(crate::auth::credential_cache::REVOCATION_CHANNEL)
    .fetch_optional(&state.pool)
    .await
    .map_err(|e| fail(Problem::database(e)))?;
    // This replica must not answer from its cache even for the moment
    // before its own notification arrives.
    state.credentials.clear();
    match revoked {
        Some(at) => Ok(reply(
            StatusCode::OK,
            json!({ "id": id, "revoked": true, "revoked_at": at }),
            ctx.format,
        )),
        None => Err(fail(Problem::not_found("API key", &id))),
    }
}
