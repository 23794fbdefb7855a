//! chatbot-service: conversations, messages and bots over gRPC.
//!
//! [`serve`] runs the service on a bound listener until shutdown; the binary
//! in `main.rs` only reads the config and calls it, so tests start the same
//! code in-process.

mod bot_config;
mod bots;
mod chunking;
mod config;
mod conversations;
mod error;
mod events;
mod ids;
mod knowledge;
mod messages;
mod model;
mod proto_convert;
pub mod replies;
mod retrieval;
pub mod secrets;
mod training;

use proto::chatbot::v1::{
    bot_service_server::BotServiceServer, conversation_service_server::ConversationServiceServer,
    knowledge_service_server::KnowledgeServiceServer, message_service_server::MessageServiceServer,
};
use service_runtime::{
    database, grpc_server,
    outbox::{self, Outbox},
};
use sqlx::{PgPool, migrate::Migrator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use replies::{Replier, model_server::ModelClient};
use retrieval::Indexes;
use secrets::Secrets;
use training::Trainer;

static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "chatbot";

/// Connects to PostgreSQL, migrates schema `chatbot`, and serves gRPC on
/// `listener` until `shutdown` is cancelled.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = database::connect_and_migrate(
        &config.service.database_url,
        SCHEMA,
        config.service.max_db_connections,
        &MIGRATIONS,
    )
    .await?;
    let outbox = Outbox::new(SCHEMA);
    outbox::spawn_relay(pool.clone(), outbox.clone(), config.events, shutdown.clone());
    let indexes = Indexes::new(pool.clone(), load_embedder(config.embedding_model_dir).await?);
    let trainer = Trainer::new(pool.clone(), outbox.clone(), indexes.clone());
    trainer.spawn(shutdown.clone());
    let replier = Replier::new(
        pool.clone(),
        indexes.clone(),
        ModelClient::new(config.model),
        config.secrets.clone(),
    );
    let parts = Parts {
        pool,
        outbox,
        indexes,
        trainer,
        replier,
        secrets: config.secrets,
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
    pool: PgPool,
    outbox: Outbox,
    indexes: Indexes,
    trainer: Trainer,
    replier: Replier,
    secrets: Secrets,
}

async fn serve_parts(parts: Parts, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Parts {
        pool,
        outbox,
        indexes,
        trainer,
        replier,
        secrets,
    } = parts;
    let (router, health) = grpc_server::base_router();
    let conversations = ConversationServiceServer::new(conversations::Conversations::new(pool.clone(), outbox.clone()));
    let messages = MessageServiceServer::new(messages::Messages::new(pool.clone(), outbox.clone(), replier));
    let bots = BotServiceServer::new(bots::Bots::new(pool.clone(), outbox, trainer, indexes, secrets));
    let knowledge = KnowledgeServiceServer::new(knowledge::Knowledge::new(pool));
    grpc_server::mark_serving::<ConversationServiceServer<conversations::Conversations>>(&health).await;
    grpc_server::mark_serving::<MessageServiceServer<messages::Messages>>(&health).await;
    grpc_server::mark_serving::<BotServiceServer<bots::Bots>>(&health).await;
    grpc_server::mark_serving::<KnowledgeServiceServer<knowledge::Knowledge>>(&health).await;
    let router = router
        .add_service(conversations)
        .add_service(messages)
        .add_service(bots)
        .add_service(knowledge);
    tracing::info!(addr = %listener.local_addr()?, "chatbot-service listening");
    grpc_server::serve(router, health, listener, shutdown).await?;
    Ok(())
}
