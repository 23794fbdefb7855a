//! The public REST gateway: authenticates callers, and transcodes REST to
//! gRPC by the `google.api.http` annotations of the descriptor set.
//!
//! This module only composes: the state every request shares, built from
//! each part's own builder, served through the layers of [`router`].

mod admin;
mod admin_usage;
mod api;
mod api_version;
pub mod auth;
pub mod config;
mod docs;
mod event_stream;
mod health;
mod http_trace;
mod inbound_webhooks;
mod json_body;
mod key_management;
mod list_params;
mod metrics;
pub mod oauth;
mod openapi;
mod problem;
mod public_listener;
pub mod rate_limit;
mod request_id;
mod request_limits;
mod router;
pub mod routes;
mod security_headers;
mod status_map;
mod transcode;
pub mod upstreams;
pub mod usage;

use std::{sync::Arc, time::Duration};

use prost_reflect::DescriptorPool;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, migrate::Migrator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use auth::{
    credential_cache::CredentialCache,
    jwt::{JwtVerifier, OwnTokens},
    signing_keys::SigningKeys,
    workspace_plans::WorkspacePlans,
};
pub use config::Config;
use rate_limit::RateLimits;
use routes::RouteTable;
use upstreams::Upstreams;

/// The schema's migrations, applied at start or by `<binary> migrate`.
pub static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "gateway";
/// The upstream that keeps the API usage report.
const ANALYTICS: &str = "analytics";

/// Shared, read-mostly state of the request path.
pub struct AppState {
    config: Config,
    pool: PgPool,
    jwt: JwtVerifier,
    credentials: Arc<CredentialCache>,
    oauth: oauth::OAuth,
    workspace_plans: WorkspacePlans,
    rate_limits: Arc<RateLimits>,
    metrics: Arc<metrics::Metrics>,
    routes: RouteTable,
    upstreams: Upstreams,
    admin_token_hash: Option<[u8; 32]>,
    usage: usage::UsageRecorder,
    usage_series: Arc<usage::Prometheus>,
    /// analytics-service, for the platform usage report.
    analytics: Option<service_runtime::grpc_client::CallChannel>,
    descriptors: DescriptorPool,
    /// The API's description, generated from `routes`.
    openapi: openapi::OpenApi,
    /// Swagger UI's files for `/docs`, when `GATEWAY_DOCS_DIR` is set.
    docs: Option<Arc<docs::Docs>>,
}

/// Connects, builds the route table from the descriptor set, and serves
/// HTTP on `listener` until `shutdown` is cancelled.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state = Arc::new(AppState::build(config, &shutdown).await?);
    usage::spawn_sampler(state.clone(), shutdown.clone());
    if let Some(addr) = &state.config.admin_addr {
        let admin = addr.listen("GATEWAY_ADMIN_ADDR").await?;
        tracing::info!(addr = %admin.local_addr()?, "serving /metrics");
        health::spawn_admin(admin, state.clone(), shutdown.clone());
    }
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    let header_read_timeout = state.config.header_read_timeout;
    public_listener::serve(listener, router::build(state), header_read_timeout, shutdown).await?;
    Ok(())
}

impl AppState {
    /// Every part of the request path, built from `config`; background
    /// refreshes run until `shutdown`.
    async fn build(config: Config, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let pool = service_runtime::database::connect_and_migrate(
            &config.database_url,
            SCHEMA,
            10,
            &MIGRATIONS,
            config.migrations,
        )
        .await?;
        let signing_keys = SigningKeys::load(pool.clone(), config.oauth.access_ttl).await?;
        signing_keys.spawn_reload(Duration::from_secs(30), shutdown.clone());
        let own_tokens = OwnTokens {
            issuer: config.oauth.issuer.clone(),
            audience: config.oauth.audience.clone(),
            keys: signing_keys.clone(),
        };
        let jwt = JwtVerifier::from_config(config.jwt.as_ref(), own_tokens, shutdown).await?;
        let credentials = CredentialCache::new();
        credentials.spawn_listener(pool.clone(), shutdown.clone());
        let metrics = Arc::new(metrics::Metrics::default());
        let rate_limits = Arc::new(RateLimits::from_config(&config.rate_limits, metrics.clone())?);
        rate_limits.spawn_housekeeping(shutdown.clone());
        let upstreams = Upstreams::new(
            &config.upstreams,
            &config.routes,
            config.upstream_timeout,
            config.breaker,
            &config.call_keys,
            &config.grpc_tls,
            shutdown,
        )?;
        let analytics = upstreams.channel_named(ANALYTICS);
        let (usage, usage_series) = usage::start(&config.usage, analytics.clone(), shutdown);
        let descriptors = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)?;
        let routes = RouteTable::build(&descriptors, |prefix| upstreams.for_path(prefix))?;
        tracing::info!(
            routes = routes.routes().count(),
            "route table built from google.api.http annotations"
        );
        let openapi = openapi::OpenApi::build(&routes, &descriptors, &config.oauth.issuer);
        let docs = config
            .docs_dir
            .as_deref()
            .map(docs::Docs::load)
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            admin_token_hash: config
                .admin_token
                .as_deref()
                .map(|t| Sha256::digest(t.as_bytes()).into()),
            oauth: oauth::OAuth {
                config: config.oauth.clone(),
                keys: signing_keys,
            },
            config,
            workspace_plans: WorkspacePlans::new(pool.clone()),
            pool,
            jwt,
            credentials,
            rate_limits,
            metrics,
            routes,
            upstreams,
            usage,
            usage_series,
            analytics,
            descriptors,
            openapi,
            docs,
        })
    }
}
