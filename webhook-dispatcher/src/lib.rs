//! webhook-dispatcher: webhook endpoints, and the RabbitMQ side of delivery.
//!
//! It consumes the `events` exchange through a durable quorum queue
//! ([`consumer`]), records one delivery per interested endpoint, and sends
//! them as signed webhooks with retries ([`delivery`]). Over gRPC it manages
//! a workspace's endpoints and shows their deliveries ([`endpoints`]).

mod config;
mod consumer;
pub mod delivery;
mod endpoint_rules;
mod endpoints;
pub mod retry_schedule;
mod secrets;
mod signing;
pub use service_runtime::target_guard;

use proto::webhooks::v1::webhook_service_server::WebhookServiceServer;
use service_runtime::{
    database, grpc_server,
    outbox::{self, Outbox, RelayConfig},
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use consumer::queue_name;

static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "webhooks";

pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let service = &config.service;
    let pool =
        database::connect_and_migrate(&service.database_url, SCHEMA, service.max_db_connections, &MIGRATIONS).await?;
    let secrets = secrets::SecretBox::new(&config.secret_key);
    let outbox = Outbox::new(SCHEMA);
    let relay = RelayConfig {
        amqp_url: config.amqp_url.clone(),
        exchange: config.exchange.clone(),
    };
    outbox::spawn_relay(pool.clone(), outbox.clone(), relay, shutdown.clone());
    // Sending's own bookkeeping (leases, attempts, outcomes) may be lost in
    // a database crash without losing a webhook: it is redone and the
    // delivery sent again. Recording deliveries before the broker ack stays
    // on the durable pool.
    let sending_pool =
        database::connect_async_commit(&service.database_url, SCHEMA, service.max_db_connections).await?;
    let dispatcher = delivery::spawn(
        sending_pool,
        secrets.clone(),
        outbox,
        config.delivery.clone(),
        shutdown.clone(),
    )?;
    consumer::spawn(
        pool.clone(),
        dispatcher,
        config.amqp_url.clone(),
        config.exchange.clone(),
        shutdown.clone(),
    );
    let (router, health) = grpc_server::base_router();
    let endpoints = WebhookServiceServer::new(endpoints::Endpoints::new(pool, secrets, config.secret_grace));
    grpc_server::mark_serving::<WebhookServiceServer<endpoints::Endpoints>>(&health).await;
    tracing::info!(addr = %listener.local_addr()?, exchange = %config.exchange, "webhook-dispatcher listening");
    grpc_server::serve(router.add_service(endpoints), health, listener, shutdown).await?;
    Ok(())
}
