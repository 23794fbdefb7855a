//! Dated API versions, chosen per request with `X-API-Version`.
//!
//! Absent means the latest. The version served is echoed on the response
//! and passed to the services as `x-api-version`, so a service can keep an
//! old behaviour for clients pinned to an old version.

use axum::{extract::Request, middleware::Next, response::Response};
use http::HeaderValue;

use crate::problem::{Problem, ProblemContext};

pub const HEADER: &str = "x-api-version";
/// Oldest first; the last one is the latest.
pub const SUPPORTED: &[&str] = &["2024-01"];

/// The version a request is served with.
#[derive(Debug, Clone, Copy)]
pub struct ApiVersion(pub &'static str);

pub async fn select(mut request: Request, next: Next) -> Response {
    let requested = request
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().unwrap_or("").trim().to_owned());
    let version = match requested.as_deref() {
        None | Some("") => SUPPORTED[SUPPORTED.len() - 1],
        Some(asked) => match SUPPORTED.iter().find(|v| **v == asked) {
            Some(version) => version,
            None => {
                let ctx = ProblemContext::of_request(&request);
                return Problem::bad_request(
                    "unsupported-api-version",
                    "Unsupported API version",
                    format!(
                        "X-API-Version {asked:?} is not supported; supported versions: {}",
                        SUPPORTED.join(", ")
                    ),
                )
                .render(&ctx);
            }
        },
    };
    request.extensions_mut().insert(ApiVersion(version));
    let mut response = next.run(request).await;
    response.headers_mut().insert(HEADER, HeaderValue::from_static(version));
    response
}
