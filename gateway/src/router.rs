//! The gateway's routes and the layers around them, stacked in this one
//! place. Layers run outermost first: request id, body timeout, tracing,
//! CORS and security headers, the body limit; then per route group, the
//! API version, authentication and rate limits.

use std::{sync::Arc, time::Duration};

use axum::{
    Router, middleware,
    routing::{any, delete, get, post},
};
use tower_http::{
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{
    AppState, admin, admin_usage, api, api_version, auth, docs, health, http_trace, inbound_webhooks, key_management,
    oauth, openapi,
    problem::{Problem, ProblemContext},
    rate_limit, request_id,
    request_limits::{self, BodyLimit},
    security_headers, usage,
};

pub fn build(state: Arc<AppState>) -> Router {
    let cors_origins = state.config.cors_allowed_origins.clone();
    let body_limit = BodyLimit(state.config.max_body_bytes);
    // Every /api path goes to the transcoder, which resolves it against the
    // route table (and answers 404/405 itself); API keys are the gateway's
    // own resource. Layers run bottom-up: version check, then auth.
    let api = Router::new()
        .route(
            "/api/v1/api-keys",
            get(key_management::list).post(key_management::create),
        )
        .route("/api/v1/api-keys/{key_id}", delete(key_management::revoke))
        .route(
            "/api/v1/oauth/clients",
            get(oauth::clients::list).post(oauth::clients::create),
        )
        .route("/api/v1/oauth/clients/{client_id}", delete(oauth::clients::delete))
        .route("/api/{*path}", any(api::handle))
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit::per_principal))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_principal))
        .route_layer(middleware::from_fn(api_version::select));
    // The consent step needs an authenticated principal, but no API version.
    let consent = Router::new()
        .route(
            "/oauth/authorize",
            get(oauth::authorize::show).post(oauth::authorize::decide),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit::per_principal))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_principal));
    // Clients authenticate themselves here; limit by IP.
    let token_endpoints = Router::new()
        .route("/oauth/token", post(oauth::token::token))
        .route("/oauth/revoke", post(oauth::revoke::revoke))
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit::per_ip));
    // Other systems' webhooks: authenticated by the service behind them.
    let inbound = Router::new()
        .route("/hooks/{*path}", any(inbound_webhooks::handle))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::per_ip_webhooks,
        ));
    let admin = Router::new()
        .route("/workspaces", post(admin::create_workspace))
        .route("/workspaces/{workspace_id}/api-keys", post(admin::create_api_key))
        .route("/oauth/signing-keys", post(admin::rotate_signing_key))
        .route("/api-usage", get(admin_usage::api_usage))
        .layer(middleware::from_fn_with_state(state.clone(), admin::require_admin))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit::per_ip));
    let recording = state.config.usage.recording;
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata::authorization_server),
        )
        .route("/.well-known/jwks.json", get(oauth::metadata::jwks))
        .route("/openapi.json", get(openapi::json))
        .route("/openapi.yaml", get(openapi::yaml))
        .route("/docs", get(docs::page))
        .route("/docs/start.js", get(docs::start))
        .route("/docs/swagger-ui-bundle.js", get(docs::bundle))
        .route("/docs/swagger-ui.css", get(docs::stylesheet))
        .nest("/admin/v1", admin)
        .merge(api)
        .merge(consent)
        .merge(token_endpoints)
        .merge(inbound)
        .fallback(not_found)
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(body_limit, request_limits::cap));
    if recording {
        // After routing (axum runs router layers per route), so the matched
        // route is known; around authentication, so 401s and 429s count.
        router = router.layer(usage::RecordLayer(Arc::new(state.usage.clone())));
    }
    for layer in security_headers::layers() {
        router = router.layer(layer);
    }
    if let Some(cors) = security_headers::cors(&cors_origins) {
        router = router.layer(cors);
    }
    // Outermost last: the request id exists before tracing and every
    // handler, and is copied onto every response.
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(http_trace::ServerSpan)
                .on_response(http_trace::ServerResponse),
        )
        .layer(SetRequestIdLayer::x_request_id(request_id::MakeId))
        .layer(tower::util::MapRequestLayer::new(request_id::drop_invalid))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(Duration::from_secs(
            30,
        )))
}

async fn not_found(request: axum::extract::Request) -> axum::response::Response {
    let (parts, _) = request.into_parts();
    Problem::not_found_route(parts.uri.path()).render(&ProblemContext::of(&parts))
}
