//! Shared plumbing for the few REST resources the gateway owns itself (API
//! keys, OAuth clients): scope checks, replies in the negotiated format,
//! and list parameters.

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use service_runtime::pagination::NewestFirst;

use crate::{
    auth::Principal,
    problem::{Problem, ProblemContext, ProblemResponse},
    transcode::response::{Format, render_value},
};

/// The caller, if it holds `scope`.
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

pub fn reply(status: StatusCode, body: serde_json::Value, format: Format) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, format.content_type())],
        render_value(&body, format),
    )
        .into_response()
}

/// The page a list request asks for (`limit`, `cursor`); any other query
/// parameter is an error.
pub fn list_page(query: Option<&str>) -> Result<NewestFirst, Problem> {
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
    NewestFirst::new(limit, &cursor).map_err(|status| Problem::from_status(&status))
}

pub fn db_problem(error: sqlx::Error) -> Problem {
    tracing::error!(%error, "gateway store");
    Problem::internal()
}

pub fn not_found(kind: &str, id: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("{kind} {id} not found"),
    )
}
