//! analytics-service: request metrics per workspace.
//!
//! It answers windowed totals from `request_metrics`; recording requests and
//! conversation statistics arrive with the analytics feature.

mod request_metrics;

use proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use service_runtime::{config::ServiceSettings, database, grpc_server};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "analytics";

pub type Config = ServiceSettings;

/// `ANALYTICS_GRPC_ADDR`, `ANALYTICS_DB_MAX_CONNECTIONS`, `DATABASE_URL`.
pub fn config_from_env() -> Result<Config, service_runtime::config::ConfigError> {
    ServiceSettings::from_env("ANALYTICS_GRPC_ADDR", "127.0.0.1:50053", "ANALYTICS_DB_MAX_CONNECTIONS")
}

pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool =
        database::connect_and_migrate(&config.database_url, SCHEMA, config.max_db_connections, &MIGRATIONS).await?;
    let (router, health) = grpc_server::base_router();
    let service = AnalyticsServiceServer::new(request_metrics::RequestMetricsService::new(pool));
    grpc_server::mark_serving::<AnalyticsServiceServer<request_metrics::RequestMetricsService>>(&health).await;
    tracing::info!(addr = %listener.local_addr()?, "analytics-service listening");
    grpc_server::serve(router.add_service(service), health, listener, shutdown).await?;
    Ok(())
}
