//! analytics-service: request metrics per workspace.
//!
//! It answers windowed totals from `request_metrics`; recording requests and
//! conversation statistics arrive with the analytics feature.

mod request_metrics;

use proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use service_runtime::{config::ServiceSettings, grpc_server};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "analytics";

/// The service has no settings beyond those every service has.
pub type Config = ServiceSettings;

/// `ANALYTICS_GRPC_ADDR`, `ANALYTICS_DB_MAX_CONNECTIONS`, `DATABASE_URL`.
pub fn config_from_env() -> Result<Config, service_runtime::config::ConfigError> {
    ServiceSettings::from_env("ANALYTICS_GRPC_ADDR", "127.0.0.1:50053", "ANALYTICS_DB_MAX_CONNECTIONS")
}

pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = config.connect(SCHEMA, &MIGRATIONS).await?;
    tracing::info!(addr = %listener.local_addr()?, "analytics-service listening");
    let service = AnalyticsServiceServer::new(request_metrics::RequestMetricsService::new(pool));
    grpc_server::serve_one(service, listener, shutdown).await?;
    Ok(())
}
