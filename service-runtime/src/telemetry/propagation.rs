//! W3C Trace Context across the platform's hops: the `traceparent` header
//! in HTTP requests and gRPC metadata, and a `traceparent` AMQP header (and
//! outbox column) on events. Only `traceparent` travels; `tracestate` is
//! not kept.
//!
//! Every function is a no-op unless traces are exported.

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const HEADER: &str = "traceparent";

/// The `traceparent` naming `span`, to send on.
pub fn traceparent_of(span: &Span) -> Option<String> {
    if !super::exporting() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut out = None;
    TraceContextPropagator::new().inject_context(&context, &mut Sink(&mut out));
    out
}

/// The `traceparent` naming the current span.
pub fn current() -> Option<String> {
    if !super::exporting() {
        return None;
    }
    traceparent_of(&Span::current())
}

/// Makes `span` the child of the remote span `traceparent` names, when it
/// names one; a malformed value is ignored (the span starts a trace).
pub fn adopt(span: &Span, traceparent: Option<&str>) {
    let Some(value) = traceparent.filter(|_| super::exporting()) else {
        return;
    };
    let context = TraceContextPropagator::new().extract(&Source(value));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Adds the current span's `traceparent` to outgoing gRPC metadata.
pub fn inject_metadata(span: &Span, metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(value) = traceparent_of(span)
        && let Ok(value) = value.parse()
    {
        metadata.insert(HEADER, value);
    }
}

/// The `traceparent` of incoming HTTP or gRPC headers.
pub fn from_headers(headers: &tonic::codegen::http::HeaderMap) -> Option<&str> {
    headers.get(HEADER).and_then(|v| v.to_str().ok())
}

struct Sink<'a>(&'a mut Option<String>);

impl Injector for Sink<'_> {
    fn set(&mut self, key: &str, value: String) {
        if key == HEADER {
            *self.0 = Some(value);
        }
    }
}

struct Source<'a>(&'a str);

impl Extractor for Source<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == HEADER).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![HEADER]
    }
}
