//! webhook-dispatcher: webhook endpoints, and the RabbitMQ side of delivery.
//!
//! It connects to RabbitMQ at start-up and declares the durable `events`
//! topic exchange that services publish to, and lists a workspace's
//! endpoints. Consuming and signed delivery arrive with the events feature.

mod broker;
mod config;
mod endpoints;

use proto::webhooks::v1::webhook_service_server::WebhookServiceServer;
use service_runtime::{database, grpc_server};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "webhooks";

pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let service = &config.service;
    let pool =
        database::connect_and_migrate(&service.database_url, SCHEMA, service.max_db_connections, &MIGRATIONS).await?;
    let broker = broker::Broker::connect(&config.amqp_url, &config.exchange).await?;
    let (router, health) = grpc_server::base_router();
    let endpoints = WebhookServiceServer::new(endpoints::Endpoints::new(pool));
    grpc_server::mark_serving::<WebhookServiceServer<endpoints::Endpoints>>(&health).await;
    tracing::info!(addr = %listener.local_addr()?, exchange = %config.exchange, "webhook-dispatcher listening");
    let served = grpc_server::serve(router.add_service(endpoints), health, listener, shutdown).await;
    broker.close().await;
    served?;
    Ok(())
}
