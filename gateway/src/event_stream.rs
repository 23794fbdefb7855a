//! Server-Sent Events from a server-streaming RPC: each streamed message
//! becomes one event named after the oneof case it carries (`message`,
//! `delta`, `reply`, ...) with that case's JSON as data. A failure after
//! the stream began is an `error` event holding the problem document.

use std::{convert::Infallible, time::Duration};

use axum::response::{
    IntoResponse, Response,
    sse::{Event, KeepAlive, Sse},
};
use futures_util::stream::{self, Stream};
use http::{HeaderMap, header};
use prost_reflect::{DynamicMessage, ReflectMessage};

use crate::{
    problem::{Problem, ProblemContext},
    transcode::response::{self, Format},
};

/// How long a stream may run in all: model replies can be slow, but a
/// stream nobody ends must not hold a connection for ever.
pub const STREAM_DEADLINE: Duration = Duration::from_secs(300);

/// Whether the client asked for `text/event-stream`.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

pub fn respond(stream: tonic::Streaming<DynamicMessage>, context: ProblemContext) -> Response {
    let mut sse = Sse::new(events(stream, context))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Proxies such as nginx buffer responses unless told not to.
    sse.headers_mut()
        .insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    sse
}

fn events(
    stream: tonic::Streaming<DynamicMessage>,
    context: ProblemContext,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(Some((stream, context)), |state| async move {
        let (mut stream, context) = state?;
        match stream.message().await {
            Ok(Some(message)) => Some((Ok(to_event(&message)), Some((stream, context)))),
            Ok(None) => None,
            Err(status) => {
                let problem = Problem::from_status(&status);
                let body = problem.body(&context.request_id, &context.instance);
                let event = Event::default().event("error").data(body.to_string());
                Some((Ok(event), None))
            }
        }
    })
}

/// The event for one streamed message: its set oneof case, or the whole
/// message as `message` when it has none.
fn to_event(message: &DynamicMessage) -> Event {
    let descriptor = message.descriptor();
    let case = descriptor
        .oneofs()
        .flat_map(|oneof| oneof.fields().collect::<Vec<_>>())
        .find(|field| message.has_field(field));
    let (name, field) = match &case {
        Some(field) => (field.name().to_owned(), field.name()),
        None => ("message".to_owned(), ""),
    };
    let data = response::render(message, field, Format::Json).unwrap_or_default();
    Event::default().event(name).data(String::from_utf8_lossy(&data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_asked_for_by_accept() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json, text/event-stream;q=0.9".parse().unwrap(),
        );
        assert!(wanted(&headers));
        headers.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wanted(&headers));
    }
}
