//! webhook-dispatcher: webhook endpoints, and the RabbitMQ side of delivery.
//!
//! It consumes the `events` exchange through a durable quorum queue
//! ([`consumer`]), records one delivery per interested endpoint
//! ([`store`]), and sends them as signed webhooks with retries
//! ([`delivery`]). Over gRPC it manages a workspace's endpoints and shows
//! their deliveries ([`api`]).

mod api;
mod config;
mod consumer;
pub mod delivery;
mod endpoint_rules;
mod error;
mod metrics;
pub mod replaying;
pub mod retention;
mod secrets;
mod store;

use event_pipeline::{Outbox, queue_depth::QueueDepth, relay};
use proto::webhooks::v1::webhook_service_server::WebhookServiceServer;
use service_runtime::{database, grpc_server};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use consumer::queue_name;

/// The schema's migrations, applied at start or by `<binary> migrate`.
pub static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "webhooks";

pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let service = &config.service;
    let pool = service.connect(SCHEMA, &MIGRATIONS).await?;
    let secrets = secrets::SecretBox::new(&config.secret_key);
    let outbox = Outbox::new(SCHEMA);
    relay::spawn(pool.clone(), outbox.clone(), config.events.clone(), shutdown.clone());
    retention::spawn(pool.clone(), config.retention, shutdown.clone());
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
    );
    let grpc = std::sync::Arc::new(service_runtime::grpc_metrics::GrpcMetrics::default());
    let counts = dispatcher.counts();
    let queue = std::sync::Arc::new(QueueDepth::new(
        &config.events.amqp_url,
        &consumer::queue_name(&config.events.exchange),
    ));
    let scrape = service_runtime::admin::Scrape::new(grpc.clone(), pool.clone(), service.max_db_connections)
        .with_gauges(move |pool| metrics::render(pool, counts.clone(), queue.clone()));
    service.serve_admin(scrape, shutdown.clone()).await?;
    let bound = consumer::spawn(pool.clone(), dispatcher, config.events.clone(), shutdown.clone());
    let replays = std::sync::Arc::new(tokio::sync::Notify::new());
    replaying::spawn(
        pool.clone(),
        config.replay_max_events,
        replays.clone(),
        shutdown.clone(),
    );
    let api = WebhookServiceServer::new(api::Api::new(pool, secrets, config.secret_grace, replays));
    tracing::info!(addr = %listener.local_addr()?, exchange = %config.events.exchange, "webhook-dispatcher listening");
    grpc_server::serve_one(
        api,
        listener,
        &config.service.grpc_serving(&grpc),
        bound.wait(),
        shutdown,
    )
    .await?;
    Ok(())
}
