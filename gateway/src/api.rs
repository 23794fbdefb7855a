//! The transcoded public API: resolve the route, build the request message,
//! call the upstream with the principal in metadata, render the reply.
//! There is no per-endpoint code; the route table says everything.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost_reflect::DynamicMessage;
use service_runtime::principal as keys;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::{
    AppState,
    auth::Principal,
    event_stream, http_trace,
    problem::{Problem, ProblemContext},
    request_id, request_limits,
    routes::{Resolution, Route},
    transcode::{
        request::{self, RequestError},
        response::{self, Format},
    },
    upstreams::CallError,
    usage::RouteLabel,
};

/// Headers passed through to the services as gRPC metadata.
const FORWARDED_HEADERS: &[&str] = &[keys::IDEMPOTENCY_KEY, "traceparent", "tracestate"];

pub async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let ctx = ProblemContext::of(&parts);
    let mut label = None;
    let mut response = match transcode(&state, &parts, body, &mut label).await {
        Ok(response) => response,
        Err(problem) => problem.render(&ctx),
    };
    if let Some(label) = label {
        response.extensions_mut().insert(label);
    }
    response
}

async fn transcode(
    state: &AppState,
    parts: &http::request::Parts,
    body: Body,
    label: &mut Option<RouteLabel>,
) -> Result<Response, Problem> {
    let path = parts.uri.path();
    let (route, bindings) = match state.routes.resolve(&parts.method, path) {
        Resolution::Found(route, bindings) => {
            *label = Some(RouteLabel(route.label.clone()));
            http_trace::name_route(&parts.method, &route.label);
            (route, bindings)
        }
        Resolution::MethodNotAllowed { allow } => return Err(Problem::method_not_allowed(&parts.method, &allow)),
        Resolution::NotFound => return Err(Problem::not_found_route(path)),
    };
    if route.inbound_webhook {
        return Err(Problem::not_found_route(path));
    }
    let principal = parts.extensions.get::<Principal>().ok_or_else(Problem::internal)?;
    if !principal.has_scope(&route.required_scope) {
        return Err(Problem::insufficient_scope(&route.required_scope));
    }
    let body = request_limits::read(parts, body).await?;
    let message = request::build(route, bindings, parts.uri.query(), &body).map_err(request_problem)?;

    let mut metadata = MetadataMap::new();
    fill_metadata(&mut metadata, principal, &parts.headers);
    if let Some(version) = parts.extensions.get::<crate::api_version::ApiVersion>() {
        metadata.insert(crate::api_version::HEADER, MetadataValue::from_static(version.0));
    }
    if let Some(stream) = &route.event_stream
        && event_stream::wanted(&parts.headers)
    {
        let opened = state
            .upstreams
            .open_stream(
                route.upstream,
                &stream.grpc_path,
                message,
                metadata,
                &stream.method.output(),
                event_stream::STREAM_DEADLINE,
            )
            .await
            .map_err(|error| call_problem(route.template.as_str(), error))?;
        return Ok(event_stream::respond(opened, ProblemContext::of(parts)));
    }
    // GET and DELETE are idempotent by HTTP's rules, so a call that found a
    // replica unavailable may be sent again.
    let idempotent = matches!(parts.method, http::Method::GET | http::Method::DELETE);
    let reply = state
        .upstreams
        .call(
            route.upstream,
            &route.grpc_path,
            message,
            metadata,
            &route.method.output(),
            idempotent,
        )
        .await
        .map_err(|error| call_problem(route.template.as_str(), error))?;

    respond(route, &reply, Format::negotiate(&parts.headers, parts.uri.query()))
}

/// The upstream's reply as the route's answer, in `format`.
pub(crate) fn respond(route: &Route, reply: &DynamicMessage, format: Format) -> Result<Response, Problem> {
    let bytes = response::render(reply, &route.response_body, format).map_err(|error| {
        tracing::error!(%error, "rendering upstream reply");
        Problem::internal()
    })?;
    Ok((
        route.success_status,
        [(header::CONTENT_TYPE, format.content_type())],
        bytes,
    )
        .into_response())
}

pub(crate) fn call_problem(route: &str, error: CallError) -> Problem {
    match error {
        CallError::CircuitOpen(wait) => {
            let seconds = wait.as_millis().div_ceil(1000).max(1) as u64;
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream-circuit-open",
                "Service unavailable",
                "the service behind this route is failing; calls are paused briefly to let it recover",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
        }
        CallError::Status(status) => {
            if matches!(
                status.code(),
                tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::Unavailable
            ) {
                tracing::warn!(route, code = ?status.code(), message = status.message(), "upstream call failed");
            }
            Problem::from_status(&status)
        }
    }
}

pub(crate) fn request_problem(error: RequestError) -> Problem {
    match error {
        RequestError::MalformedJson(detail) => Problem::bad_request(
            "malformed-json",
            "Malformed JSON",
            format!("the request body is not valid JSON: {detail}"),
        ),
        RequestError::InvalidField { field, reason } => Problem::invalid_argument(field, reason),
        RequestError::UnknownParameter(name) => Problem::unknown_parameter(&name),
    }
}

fn fill_metadata(metadata: &mut MetadataMap, principal: &Principal, headers: &HeaderMap) {
    put(metadata, keys::WORKSPACE_ID, &principal.workspace_id);
    put(metadata, keys::PRINCIPAL_ID, &principal.principal_id);
    put(metadata, keys::SCOPES, &principal.scopes.join(" "));
    fill_request_metadata(metadata, headers);
}

/// What every call carries whoever makes it: the request id, and the
/// idempotency key and trace headers when the client sent them.
pub(crate) fn fill_request_metadata(metadata: &mut MetadataMap, headers: &HeaderMap) {
    put(metadata, keys::REQUEST_ID, &request_id::of(headers));
    for name in FORWARDED_HEADERS {
        if let Some(value) = headers.get(*name).and_then(|v: &HeaderValue| v.to_str().ok()) {
            put(metadata, name, value);
        }
    }
}

fn put(metadata: &mut MetadataMap, key: &'static str, value: &str) {
    if let Ok(value) = MetadataValue::try_from(value) {
        metadata.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principal_request_id_and_idempotency_key_travel_as_metadata() {
        let principal = Principal {
            workspace_id: "ws_1".into(),
            principal_id: "key_1".into(),
            scopes: vec!["read:bots".into(), "write:bots".into()],
            plan: "default".into(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("req_abc"));
        headers.insert("idempotency-key", HeaderValue::from_static("k-1"));
        headers.insert("authorization", HeaderValue::from_static("Bearer secret"));
        let mut metadata = MetadataMap::new();
        fill_metadata(&mut metadata, &principal, &headers);
        let get = |k: &str| metadata.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(get("x-workspace-id").as_deref(), Some("ws_1"));
        assert_eq!(get("x-principal-id").as_deref(), Some("key_1"));
        assert_eq!(get("x-scopes").as_deref(), Some("read:bots write:bots"));
        assert_eq!(get("x-request-id").as_deref(), Some("req_abc"));
        assert_eq!(get("idempotency-key").as_deref(), Some("k-1"));
        assert_eq!(get("authorization"), None, "credentials never cross the gateway");
    }
}
