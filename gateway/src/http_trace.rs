//! The span of each HTTP request the gateway serves: an OpenTelemetry HTTP
//! server span (named `GET /api/v1/conversations/{id}` by its route
//! template, child of the client's `traceparent`) when traces are
//! exported; otherwise tower-http's debug-level span, off at the default
//! log level, so a request costs no span it does not need.

use std::time::Duration;

use http::{Request, Response};
use service_runtime::telemetry::{self, propagation, spans};
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;

use crate::request_id;

#[derive(Clone, Copy, Default)]
pub struct ServerSpan;

impl<B> MakeSpan<B> for ServerSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let path = request.uri().path();
        if !telemetry::exporting() {
            // Its fields are read only when debug logging is on.
            return tracing::debug_span!(
                "request",
                method = %request.method(),
                path,
                request_id = request_id_of(request)
            );
        }
        let span = spans::http_server(request.method().as_str(), path, request_id_of(request));
        propagation::adopt(&span, propagation::from_headers(request.headers()));
        span
    }
}

fn request_id_of<B>(request: &Request<B>) -> &str {
    request
        .headers()
        .get(request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[derive(Clone, Copy, Default)]
pub struct ServerResponse;

impl<B> OnResponse<B> for ServerResponse {
    fn on_response(self, response: &Response<B>, _latency: Duration, span: &Span) {
        if !telemetry::exporting() {
            return;
        }
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// Names the current request span by the route template it matched, once
/// routing has found one (`GET /api/v1/conversations/{id}`).
pub fn name_route(method: &http::Method, template: &str) {
    if telemetry::exporting() {
        let span = Span::current();
        span.record("http.route", template);
        spans::rename(&span, format!("{method} {template}"));
    }
}
