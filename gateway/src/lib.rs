//! The public REST gateway: authenticates callers, and transcodes REST to
//! gRPC by the `google.api.http` annotations of the descriptor set.
//!
//! Cross-cutting layers are stacked in [`router`], in one place.

mod admin;
mod api;
mod api_version;
pub mod auth;
pub mod config;
mod event_stream;
mod health;
mod key_management;
mod metrics;
pub mod oauth;
mod owned_resources;
mod problem;
pub mod rate_limit;
mod request_id;
pub mod routes;
mod security_headers;
mod status_map;
mod transcode;
pub mod upstreams;

use std::{sync::Arc, time::Duration};

use axum::{
    Router, middleware,
    routing::{any, delete, get, post},
};
use prost_reflect::DescriptorPool;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, migrate::Migrator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

pub use config::Config;
use problem::{Problem, ProblemContext};
use routes::RouteTable;
use upstreams::Upstreams;

static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "gateway";

/// Shared, read-mostly state of the request path.
pub struct AppState {
    config: Config,
    pool: PgPool,
    jwt: auth::jwt::JwtVerifier,
    credentials: Arc<auth::credential_cache::CredentialCache>,
    oauth: oauth::OAuth,
    workspace_plans: auth::workspace_plans::WorkspacePlans,
    rate_limits: Arc<rate_limit::RateLimits>,
    metrics: Arc<metrics::Metrics>,
    routes: RouteTable,
    upstreams: Upstreams,
    admin_token_hash: Option<[u8; 32]>,
}

/// Connects, builds the route table from the descriptor set, and serves
/// HTTP on `listener` until `shutdown` is cancelled.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    service_runtime::tls::install();
    let pool = service_runtime::database::connect_and_migrate(&config.database_url, SCHEMA, 10, &MIGRATIONS).await?;
    let signing_keys = oauth::signing_keys::SigningKeys::load(pool.clone(), config.oauth.access_ttl).await?;
    signing_keys.spawn_reload(Duration::from_secs(30), shutdown.clone());
    let jwt = jwt_verifier(&config, signing_keys.clone(), &shutdown).await?;
    let oauth = oauth::OAuth {
        config: config.oauth.clone(),
        keys: signing_keys,
    };
    let credentials = auth::credential_cache::CredentialCache::new();
    credentials.spawn_listener(pool.clone(), shutdown.clone());
    let metrics = Arc::new(metrics::Metrics::default());
    let rate_limits = Arc::new(rate_limits(&config.rate_limits, metrics.clone())?);
    rate_limits.spawn_housekeeping(shutdown.clone());
    let descriptors = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)?;
    let upstreams = Upstreams::new(
        &config.upstreams,
        &config.routes,
        config.upstream_timeout,
        config.breaker,
        &shutdown,
    )?;
    let routes = RouteTable::build(&descriptors, |prefix| upstreams.for_path(prefix))?;
    tracing::info!(
        routes = routes.routes().count(),
        "route table built from google.api.http annotations"
    );
    let state = Arc::new(AppState {
        admin_token_hash: config
            .admin_token
            .as_deref()
            .map(|t| Sha256::digest(t.as_bytes()).into()),
        config,
        workspace_plans: auth::workspace_plans::WorkspacePlans::new(pool.clone()),
        pool,
        jwt,
        credentials,
        oauth,
        rate_limits,
        metrics,
        routes,
        upstreams,
    });
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Answers go out as soon as they are written: with Nagle's algorithm a
    // reply written in two pieces waits for the client's delayed ACK (40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

fn rate_limits(
    config: &config::RateLimitConfig,
    metrics: Arc<metrics::Metrics>,
) -> anyhow::Result<rate_limit::RateLimits> {
    let redis = match &config.redis_url {
        Some(url) => Some(rate_limit::redis::RedisLimiter::connect(
            url,
            &config.redis_key_prefix,
            config.redis_timeout,
        )?),
        None => None,
    };
    let settings = rate_limit::Settings {
        plans: config.plans.clone(),
        per_ip: config.per_ip,
        redis,
        on_redis_failure: config.on_redis_failure,
    };
    Ok(rate_limit::RateLimits::new(settings, metrics))
}

async fn jwt_verifier(
    config: &Config,
    keys: Arc<oauth::signing_keys::SigningKeys>,
    shutdown: &CancellationToken,
) -> anyhow::Result<auth::jwt::JwtVerifier> {
    let own = Some(auth::jwt::OwnTokens {
        issuer: config.oauth.issuer.clone(),
        audience: config.oauth.audience.clone(),
        keys,
    });
    let Some(jwt) = &config.jwt else {
        return Ok(auth::jwt::JwtVerifier::new(auth::jwt::JwtSettings {
            own,
            hs256_secret: None,
            jwks: None,
            asymmetric_algorithms: Vec::new(),
            issuers: Vec::new(),
            audience: String::new(),
            leeway_seconds: 30,
            workspace_claim: "workspace_id".into(),
        }));
    };
    let jwks = match &jwt.jwks {
        Some(source) => {
            let jwks = auth::jwks::Jwks::load(source.clone(), jwt.jwks_min_refresh).await?;
            jwks.spawn_refresh(jwt.jwks_refresh_every, shutdown.clone());
            Some(jwks)
        }
        None => None,
    };
    Ok(auth::jwt::JwtVerifier::new(auth::jwt::JwtSettings {
        own,
        hs256_secret: jwt.hs256_secret.clone(),
        jwks,
        asymmetric_algorithms: jwt.asymmetric_algorithms.clone(),
        issuers: jwt.issuers.clone(),
        audience: jwt.audience.clone(),
        leeway_seconds: jwt.leeway_seconds,
        workspace_claim: jwt.workspace_claim.clone(),
    }))
}

fn router(state: Arc<AppState>) -> Router {
    let cors_origins = state.config.cors_allowed_origins.clone();
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
    let admin = Router::new()
        .route("/workspaces", post(admin::create_workspace))
        .route("/workspaces/{workspace_id}/api-keys", post(admin::create_api_key))
        .route("/oauth/signing-keys", post(admin::rotate_signing_key))
        .layer(middleware::from_fn_with_state(state.clone(), admin::require_admin))
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit::per_ip));
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata::authorization_server),
        )
        .route("/.well-known/jwks.json", get(oauth::metadata::jwks))
        .nest("/admin/v1", admin)
        .merge(api)
        .merge(consent)
        .merge(token_endpoints)
        .fallback(not_found)
        .with_state(state);
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
        .layer(TraceLayer::new_for_http())
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
