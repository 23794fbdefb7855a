//! The request size limits, as a layer of their own. Headers over
//! [`MAX_HEADER_BYTES`] together are refused with a 431 problem (hyper's
//! own limit, far higher, answers without one). A body declared larger
//! than the limit is refused with 413 at once; any other body is capped, so
//! a handler reading it with [`read`] gets 413 as soon as it passes the
//! limit, whether or not the client declared its length. Nothing is read
//! here: a request refused for another reason (no credentials, no such
//! route) never has its body buffered.

use std::time::Duration;

use axum::{
    body::{Body, HttpBody},
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::problem::{Problem, ProblemContext};

/// The most a request body may hold, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// How much of a refused body is read and dropped before answering, and
/// for how long: closing a socket with unread data makes the kernel reset
/// the connection, and the client may then never see the 413.
const DRAIN_FRAMES: usize = 256;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// The most a request's header names and values may hold together: what
/// real clients send is a few KiB; nginx refuses lines over 8 KiB.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Middleware enforcing the header limit and `limit` on every request
/// below it.
pub async fn cap(State(BodyLimit(limit)): State<BodyLimit>, mut request: Request, next: Next) -> Response {
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        let context = ProblemContext::of_request(&request);
        drain(request.into_body()).await;
        return Problem::headers_too_large(MAX_HEADER_BYTES).render(&context);
    }
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    if request.body().size_hint().exact().is_some_and(|n| n > limit as u64) {
        let context = ProblemContext::of_request(&request);
        drain(request.into_body()).await;
        return Problem::payload_too_large(limit).render(&context);
    }
    request.extensions_mut().insert(BodyLimit(limit));
    next.run(request.map(|body| Body::new(Limited::new(body, limit)))).await
}

/// The whole body of a request under [`cap`].
pub async fn read(parts: &http::request::Parts, body: Body) -> Result<Bytes, Problem> {
    let limit = parts.extensions.get::<BodyLimit>().map_or(usize::MAX, |l| l.0);
    read_within(body, limit).await
}

/// The whole body, refusing more than `limit` bytes (413): for a route
/// whose bodies are smaller than the layer's limit allows.
pub async fn read_within(mut body: Body, limit: usize) -> Result<Bytes, Problem> {
    let declared = body.size_hint().exact().unwrap_or(0);
    if declared > limit as u64 {
        drain(body).await;
        return Err(Problem::payload_too_large(limit));
    }
    let mut collected = Vec::with_capacity(declared as usize);
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) if over_limit(&error) => {
                drain(body).await;
                return Err(Problem::payload_too_large(limit));
            }
            Err(error) => {
                return Err(Problem::bad_request(
                    "unreadable-body",
                    "Unreadable request body",
                    format!("the request body could not be read: {error}"),
                ));
            }
        };
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                drain(body).await;
                return Err(Problem::payload_too_large(limit));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.into())
}

/// Whether reading failed because the layer's cap was passed.
fn over_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if error.is::<LengthLimitError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Reads and drops what is left of a refused body, within bounds.
async fn drain(mut body: Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        for _ in 0..DRAIN_FRAMES {
            match body.frame().await {
                // Past the cap every frame is an error, and still consumed.
                Some(_) if !body.is_end_stream() => {}
                _ => return,
            }
        }
    })
    .await;
}
