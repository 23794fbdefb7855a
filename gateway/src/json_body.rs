//! JSON request bodies of the routes the gateway serves itself (the admin
//! API, API keys, OAuth clients): read under the body limit, parsed into
//! the handler's type, with a problem naming what is wrong.

use axum::extract::Request;
use serde::de::DeserializeOwned;

use crate::{
    problem::{Problem, ProblemContext, ProblemResponse},
    request_limits,
    transcode::request,
};

/// The body as `T`; an empty body is `T::default()`.
pub async fn read<T: DeserializeOwned + Default>(request: Request, ctx: &ProblemContext) -> Result<T, ProblemResponse> {
    let (parts, body) = request.into_parts();
    let bytes = request_limits::read(&parts, body)
        .await
        .map_err(|p| ProblemResponse::new(p, ctx.clone()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let invalid = |e: serde_json::Error| {
        let kind = if e.is_syntax() || e.is_eof() {
            "malformed-json"
        } else {
            "invalid-argument"
        };
        ProblemResponse::new(
            Problem::bad_request(kind, "Invalid request body", e.to_string()),
            ctx.clone(),
        )
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(invalid)?;
    if let Some(field) = value.as_object().and_then(request::field_with_nul) {
        let problem = Problem::invalid_argument(field.to_owned(), request::NUL_REASON);
        return Err(ProblemResponse::new(problem, ctx.clone()));
    }
    serde_json::from_value(value).map_err(invalid)
}
