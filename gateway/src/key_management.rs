//! A workspace's own API key management (`/api/v1/api-keys`): create (the
//! key is shown once), list, revoke. The gateway owns these rows, so these
//! few routes are handled here rather than transcoded.
//!
//! A credential can only grant scopes it holds itself, so a narrow key can
//! never mint a broader one.

use std::sync::Arc;

use axum::{
    extract::{Path, Request, State},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{
    AppState,
    auth::{Principal, api_keys, scopes},
    problem::{Problem, ProblemContext, ProblemResponse},
    transcode::response::{Format, render_value},
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

fn authorised(request: &Request, ctx: &ProblemContext) -> Result<Principal, ProblemResponse> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ProblemResponse::new(Problem::internal(), ctx.clone()))?;
    if !principal.has_scope(SCOPE) {
        return Err(ProblemResponse::new(Problem::insufficient_scope(SCOPE), ctx.clone()));
    }
    Ok(principal)
}

fn reply(status: StatusCode, body: serde_json::Value, format: Format) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, format.content_type())],
        render_value(&body, format),
    )
        .into_response()
}

pub async fn create(State(state): State<Arc<AppState>>, request: Request) -> Outcome {
    let ctx = ProblemContext::of_request(&request);
    let principal = authorised(&request, &ctx)?;
    let input: CreateKey = crate::admin::read_json(&state, request.into_body(), &ctx).await?;
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
        .map_err(|e| fail(db_problem(e)))?;
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
    let principal = authorised(&request, &ctx)?;
    let fail = |p: Problem| ProblemResponse::new(p, ctx.clone());
    let (limit, cursor) = list_params(request.uri().query()).map_err(fail)?;
    let (after_time, after_id) = service_runtime::pagination::newest_first_after(&cursor)
        .map_err(|status| fail(Problem::from_status(&status)))?
        .unzip();
    let rows: Vec<KeyView> = sqlx::query_as(
        "SELECT id, 'cbk_' || lookup_id AS prefix, name, scopes, created_at, last_used_at, revoked_at
         FROM api_keys
         WHERE workspace_id = $1
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC
         LIMIT $4",
    )
    .bind(&principal.workspace_id)
    .bind(after_time)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await
    .map_err(|e| fail(db_problem(e)))?;
    let (rows, next_cursor) = service_runtime::pagination::finish_page(rows, limit, |k| {
        service_runtime::pagination::newest_first_position(k.created_at, &k.id)
    });
    Ok(reply(
        StatusCode::OK,
        json!({ "api_keys": rows, "next_cursor": next_cursor }),
        ctx.format,
    ))
}

pub async fn revoke(State(state): State<Arc<AppState>>, Path(id): Path<String>, request: Request) -> Outcome {
    let ctx = ProblemContext::of_request(&request);
    let principal = authorised(&request, &ctx)?;
    let fail = |p: Problem| ProblemResponse::new(p, ctx.clone());
    let revoked: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
         WHERE workspace_id = $1 AND id = $2
         RETURNING revoked_at",
    )
    .bind(&principal.workspace_id)
    .bind(&id)
    .fetch_optional(&state.pool)
    .await
    .map_err(|e| fail(db_problem(e)))?;
    match revoked {
        Some(at) => Ok(reply(
            StatusCode::OK,
            json!({ "id": id, "revoked": true, "revoked_at": at }),
            ctx.format,
        )),
        None => Err(fail(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("API key {id} not found"),
        ))),
    }
}

fn list_params(query: Option<&str>) -> Result<(i64, String), Problem> {
    let mut limit = 0;
    let mut cursor = String::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => {
                limit = value
                    .parse()
                    .map_err(|_| Problem::invalid_argument("limit", "must be a number"))?
            }
            "cursor" => cursor = value.into_owned(),
            "format" => {}
            other => {
                return Err(Problem::bad_request(
                    "unknown-parameter",
                    "Unknown query parameter",
                    format!("query parameter {other:?} is not a field of this request"),
                ));
            }
        }
    }
    let limit = service_runtime::pagination::page_limit(limit).map_err(|status| Problem::from_status(&status))?;
    Ok((limit, cursor))
}

fn db_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "API key store");
    Problem::internal()
}
