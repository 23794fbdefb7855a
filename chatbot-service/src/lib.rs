//! chatbot-service: conversations, messages and bots over gRPC.
//!
//! [`serve`] runs the service on a bound listener until shutdown; the binary
//! in `main.rs` only reads the config and calls it, so tests start the same
//! code in-process.

mod bot_config;
mod bots;
mod config;
mod conversations;
mod error;
mod events;
mod ids;
mod messages;
mod model;
mod proto_convert;

use proto::chatbot::v1::{
    bot_service_server::BotServiceServer, conversation_service_server::ConversationServiceServer,
    message_service_server::MessageServiceServer,
};
use service_runtime::{
    database, grpc_server,
    outbox::{self, Outbox},
};
use sqlx::{PgPool, migrate::Migrator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

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
    serve_with_pool(pool, outbox, listener, shutdown).await
}

async fn serve_with_pool(
    pool: PgPool,
    outbox: Outbox,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (router, health) = grpc_server::base_router();
    let conversations = ConversationServiceServer::new(conversations::Conversations::new(pool.clone(), outbox.clone()));
    let messages = MessageServiceServer::new(messages::Messages::new(pool.clone(), outbox));
    let bots = BotServiceServer::new(bots::Bots::new(pool));
    grpc_server::mark_serving::<ConversationServiceServer<conversations::Conversations>>(&health).await;
    grpc_server::mark_serving::<MessageServiceServer<messages::Messages>>(&health).await;
    grpc_server::mark_serving::<BotServiceServer<bots::Bots>>(&health).await;
    let router = router
        .add_service(conversations)
        .add_service(messages)
        .add_service(bots);
    tracing::info!(addr = %listener.local_addr()?, "chatbot-service listening");
    grpc_server::serve(router, health, listener, shutdown).await?;
    Ok(())
}
