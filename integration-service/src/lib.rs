//! integration-service: a workspace's connections to other systems (its
//! own databases now; Shopify and Salesforce next), tested before they are
//! saved, with their credentials sealed, and announced as events.
//!
//! [`serve`] runs the service on a bound listener until shutdown; the
//! binary in `main.rs` only reads the config and calls it, so tests start
//! the same code in-process.

mod config;
mod events;
mod grpc;
mod kinds;
mod store;

use event_pipeline::{Outbox, relay};
use proto::integration::v1::integration_service_server::IntegrationServiceServer;
use service_runtime::grpc_server;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "integration";

pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = config.service.connect(SCHEMA, &MIGRATIONS).await?;
    let outbox = Outbox::new(SCHEMA);
    relay::spawn(pool.clone(), outbox.clone(), config.events, shutdown.clone());
    tracing::info!(addr = %listener.local_addr()?, "integration-service listening");
    let integrations =
        grpc::Integrations::new(pool, outbox, config.secret_keys, config.targets, config.connect_timeout);
    grpc_server::serve_one(IntegrationServiceServer::new(integrations), listener, shutdown).await?;
    Ok(())
}
