//! The spans each hop opens, named and attributed by the OpenTelemetry
//! semantic conventions (RPC, database, messaging, HTTP), so any tracing
//! back end groups and labels them without configuration. Each is
//! `Span::none()` unless traces are exported: they cost nothing otherwise.

use tracing::{Span, field::Empty};

/// A gRPC call made (`client`) or answered (`server`) on `path`
/// (`/package.Service/Method`). Record `rpc.grpc.status_code` when it ends.
pub fn rpc(kind: &'static str, path: &str) -> Span {
    if !super::exporting() {
        return Span::none();
    }
    let full = path.trim_start_matches('/');
    let (service, method) = full.split_once('/').unwrap_or((full, ""));
    tracing::info_span!(
        "rpc",
        otel.name = full,
        otel.kind = kind,
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
        server.address = Empty,
        request_id = Empty,
    )
}

/// Records a finished call's gRPC status (0 is OK) on a span from [`rpc`];
/// server errors (and every client failure) mark it as failed.
pub fn record_grpc_status(span: &Span, code: i32, server: bool) {
    span.record("rpc.grpc.status_code", code);
    // Per the conventions, a server span fails only for codes that are
    // the server's fault.
    let failed = if server {
        matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
    } else {
        code != 0
    };
    if failed {
        span.record("otel.status_code", "ERROR");
    }
}

/// One SQL statement: `operation` (`INSERT`, `SELECT`…) on `table`.
pub fn sql(operation: &str, table: &str) -> Span {
    if !super::exporting() {
        return Span::none();
    }
    tracing::info_span!(
        "sql",
        otel.name = format!("{operation} {table}"),
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.collection.name = table,
    )
}

/// Publishing one event to `exchange` with `routing_key`.
pub fn publish(exchange: &str, routing_key: &str, message_id: &str) -> Span {
    if !super::exporting() {
        return Span::none();
    }
    tracing::info_span!(
        "publish",
        otel.name = format!("publish {exchange}"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = exchange,
        messaging.rabbitmq.destination.routing_key = routing_key,
        messaging.message.id = message_id,
    )
}

/// Processing one event received from `queue`.
pub fn process(queue: &str, message_id: &str) -> Span {
    if !super::exporting() {
        return Span::none();
    }
    tracing::info_span!(
        "process",
        otel.name = format!("process {queue}"),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = queue,
        messaging.message.id = message_id,
    )
}

/// One HTTP request served (the gateway's): named by its method until
/// routing finds its template ([`rename`]). Record
/// `http.response.status_code` (and `otel.status_code` for a 5xx) when it
/// ends, `http.route` once known.
pub fn http_server(method: &str, path: &str, request_id: &str) -> Span {
    if !super::exporting() {
        return Span::none();
    }
    tracing::info_span!(
        "request",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = Empty,
        http.response.status_code = Empty,
        url.path = path,
        url.scheme = "http",
        request_id,
    )
}

/// One outbound HTTP request: `resend` is 0 for the first attempt. Record
/// `http.response.status_code` or `error.type` when it ends.
pub fn http_client(method: &'static str, host: &str, port: u16, resend: u32) -> Span {
    if !super::exporting() {
        return Span::none();
    }
    tracing::info_span!(
        "http",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method,
        server.address = host,
        server.port = port,
        http.request.resend_count = resend,
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Renames `span` once what names it is known (the route an HTTP request
/// matched). `otel.name` only names a span not yet started.
pub fn rename(span: &Span, name: String) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if super::exporting() {
        span.context().span().update_name(name);
    }
}
