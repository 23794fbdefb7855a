//! Webhooks other systems send the platform (a Shopify store's orders and
//! products), under `/hooks/`. No credentials are asked: the service
//! behind the route authenticates each request by the sender's signature
//! over the exact bytes, which reach it untouched with the headers. The
//! route table says which service; callers are limited per IP.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    response::Response,
};
use tonic::metadata::MetadataMap;

use crate::{
    AppState,
    api::{call_problem, fill_request_metadata, request_problem, respond},
    problem::{Problem, ProblemContext},
    request_limits,
    routes::Resolution,
    transcode::{request, response::Format},
};

pub async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let ctx = ProblemContext::of(&parts);
    match forward(&state, &parts, body).await {
        Ok(response) => response,
        Err(problem) => problem.render(&ctx),
    }
}

async fn forward(state: &AppState, parts: &http::request::Parts, body: Body) -> Result<Response, Problem> {
    let path = parts.uri.path();
    let (route, bindings) = match state.routes.resolve(&parts.method, path) {
        Resolution::Found(route, bindings) if route.inbound_webhook => (route, bindings),
        Resolution::MethodNotAllowed { allow } => return Err(Problem::method_not_allowed(&parts.method, &allow)),
        _ => return Err(Problem::not_found_route(path)),
    };
    let body = request_limits::read(parts, body).await?;
    let message = request::build_inbound(route, bindings, body, &parts.headers).map_err(request_problem)?;
    let mut metadata = MetadataMap::new();
    fill_request_metadata(&mut metadata, &parts.headers);
    // Not sent twice on a failed call: the sender retries on its own
    // schedule, and the service deduplicates by the sender's delivery id.
    let reply = state
        .upstreams
        .call(
            route.upstream,
            &route.grpc_path,
            message,
            metadata,
            &route.method.output(),
            false,
        )
        .await
        .map_err(|error| call_problem(route.template.as_str(), error))?;
    respond(route, &reply, Format::Json)
}
