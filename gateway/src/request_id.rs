//! Request ids: accepted from the client's `X-Request-Id` or generated, set
//! on the request before anything else runs, echoed on the response and
//! passed upstream (tower-http does the setting and echoing).

use http::HeaderMap;
use tower_http::request_id::{MakeRequestId, RequestId};

pub const HEADER: &str = "x-request-id";

/// Generates `req_` + 32 hex digits for requests that came without an id.
#[derive(Clone, Copy, Default)]
pub struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        // The thread-local generator: no system call per request.
        let id = format!("req_{:032x}", rand::random::<u128>());
        Some(RequestId::new(id.parse().ok()?))
    }
}

/// Longest client-supplied request id kept; longer ones are replaced.
const MAX_CLIENT_ID_LEN: usize = 128;

/// Drops a client-supplied `X-Request-Id` that is too long or holds
/// characters other than letters, digits and `-_.:`, so a new one is
/// generated: ids end up in logs and problem bodies, and must stay inert.
pub fn drop_invalid(mut request: axum::extract::Request) -> axum::extract::Request {
    let valid = request.headers().get(HEADER).map(|value| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_CLIENT_ID_LEN
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if valid == Some(false) {
        request.headers_mut().remove(HEADER);
    }
    request
}

/// The request's id (always present once the layer ran).
pub fn of(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
