//! integration-service: the integrations a workspace has connected.
//!
//! This crate so far lists them; connecting providers and syncing data
//! arrive with the integrations feature.

mod integrations;

use proto::integration::v1::integration_service_server::IntegrationServiceServer;
use service_runtime::{config::ServiceSettings, grpc_server};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "integration";

/// The service has no settings beyond those every service has.
pub type Config = ServiceSettings;

/// `INTEGRATION_GRPC_ADDR`, `INTEGRATION_DB_MAX_CONNECTIONS`, `DATABASE_URL`.
pub fn config_from_env() -> Result<Config, service_runtime::config::ConfigError> {
    ServiceSettings::from_env(
        "INTEGRATION_GRPC_ADDR",
        "127.0.0.1:50052",
        "INTEGRATION_DB_MAX_CONNECTIONS",
    )
}

pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = config.connect(SCHEMA, &MIGRATIONS).await?;
    tracing::info!(addr = %listener.local_addr()?, "integration-service listening");
    let service = IntegrationServiceServer::new(integrations::Integrations::new(pool));
    grpc_server::serve_one(service, listener, shutdown).await?;
    Ok(())
}
