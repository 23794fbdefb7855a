//! chatbot-service: conversations, messages and bots over gRPC.
//!
//! [`serve`] runs the service on a bound listener until shutdown; the binary
//! in `main.rs` only reads the config and calls it, so tests start the same
//! code in-process.

mod bot_config;
mod chunking;
mod config;
pub mod drafting;
mod error;
mod events;
mod grpc;
mod model;
mod proto_convert;
mod replying;
pub mod retention;
mod retrieval;
pub mod secrets;
mod sending;
mod store;
mod training;

use event_pipeline::{Outbox, relay};
use proto::chatbot::v1::{
    bot_service_server::BotServiceServer, conversation_service_server::ConversationServiceServer,
    knowledge_service_server::KnowledgeServiceServer, message_service_server::MessageServiceServer,
    secret_service_server::SecretServiceServer,
};
use service_runtime::grpc_metrics::GrpcMetrics;
use service_runtime::grpc_server;
use sqlx::{PgPool, migrate::Migrator};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use drafting::{Drafter, model_server::ModelClient, orders::OrderDesk};
use grpc::{bots::Bots, conversations::Conversations, knowledge::Knowledge, messages::Messages, secrets::SecretsApi};
use replying::Replying;
use retrieval::Indexes;
use secrets::Secrets;
use sending::Sending;
use training::Trainer;

/// The schema's migrations, applied at start or by `<binary> migrate`.
pub static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "chatbot";

/// Connects to PostgreSQL, migrates schema `chatbot`, and serves gRPC on
/// `listener` until `shutdown` is cancelled.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = config.service.connect(SCHEMA, &MIGRATIONS).await?;
    let outbox = Outbox::new(SCHEMA);
    relay::spawn(pool.clone(), outbox.clone(), config.events, shutdown.clone());
    retention::spawn(pool.clone(), config.retention, shutdown.clone());
    let grpc = Arc::new(GrpcMetrics::default());
    let scrape = event_pipeline::outbox::producer_scrape(&grpc, &pool, config.service.max_db_connections);
    config.service.serve_admin(scrape, shutdown.clone()).await?;
    let indexes = Indexes::new(pool.clone(), load_embedder(config.embedding_model_dir).await?);
    let trainer = Trainer::new(pool.clone(), outbox.clone(), indexes.clone());
    trainer.spawn(shutdown.clone());
    let secrets = Secrets::new(pool.clone(), config.secret_keys, config.secrets);
    let drafter = Drafter::new(
        pool.clone(),
        indexes.clone(),
        ModelClient::new(config.model),
        secrets.clone(),
        OrderDesk::new(&config.integration_url, &config.service)?,
    );
    let parts = Parts {
        serving: config.service.grpc_serving(&grpc),
        pool,
        outbox,
        indexes,
        trainer,
        drafter,
        secrets,
    };
    serve_parts(parts, listener, shutdown).await
}

/// Loads the sentence-embedding model in `dir` and keeps it for the
/// process, so services started in it afterwards (test stacks start many)
/// begin serving without loading it themselves.
pub fn preload_embedding_model(dir: &std::path::Path) -> anyhow::Result<()> {
    retrieval::embedder::shared(dir)?;
    Ok(())
}

/// The configured sentence embedder; a configured model that does not load
/// stops start-up rather than quietly matching by words alone.
async fn load_embedder(dir: Option<std::path::PathBuf>) -> anyhow::Result<Option<std::sync::Arc<retrieval::Embedder>>> {
    let Some(dir) = dir else {
        tracing::info!("no CHATBOT_EMBEDDING_MODEL_DIR: questions are matched by their words alone");
        return Ok(None);
    };
    let embedder = tokio::task::spawn_blocking(move || retrieval::embedder::shared(&dir)).await??;
    tracing::info!(
        model = embedder.id(),
        dimensions = embedder.dimensions(),
        "loaded the embedding model"
    );
    Ok(Some(embedder))
}

/// What the gRPC services share.
struct Parts {
    /// Metrics, call keys and reflection.
    serving: grpc_server::GrpcServing,
    pool: PgPool,
    outbox: Outbox,
    indexes: Indexes,
    trainer: Trainer,
    drafter: Drafter,
    secrets: Secrets,
}

async fn serve_parts(parts: Parts, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Parts {
        serving,
        pool,
        outbox,
        indexes,
        trainer,
        drafter,
        secrets,
    } = parts;
    let (router, health) = grpc_server::base_router(&serving)?;
    let sending = Sending::new(pool.clone(), outbox.clone());
    let replying = Replying::new(pool.clone(), outbox.clone(), drafter);
    let conversations = ConversationServiceServer::new(Conversations::new(pool.clone(), outbox.clone()));
    let messages = MessageServiceServer::new(Messages::new(pool.clone(), sending, replying));
    let bots = BotServiceServer::new(Bots::new(pool.clone(), outbox, trainer, indexes, secrets.clone()));
    let secrets = SecretServiceServer::new(SecretsApi::new(pool.clone(), secrets));
    let knowledge = KnowledgeServiceServer::new(Knowledge::new(pool));
    grpc_server::mark_serving::<ConversationServiceServer<Conversations>>(&health).await;
    grpc_server::mark_serving::<MessageServiceServer<Messages>>(&health).await;
    grpc_server::mark_serving::<BotServiceServer<Bots>>(&health).await;
    grpc_server::mark_serving::<KnowledgeServiceServer<Knowledge>>(&health).await;
    grpc_server::mark_serving::<SecretServiceServer<SecretsApi>>(&health).await;
    let router = router
        .add_service(conversations)
        .add_service(messages)
        .add_service(bots)
        .add_service(knowledge)
        .add_service(secrets);
    tracing::info!(addr = %listener.local_addr()?, "chatbot-service listening");
    // The model loaded before this: nothing else to wait for.
    let ready = std::future::ready(());
    grpc_server::serve(router, health, listener, &serving, ready, shutdown).await?;
    Ok(())
}
