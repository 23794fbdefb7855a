//! A store's or a database's products as knowledge of the bots linked to
//! it: each active product is one document item (title, description,
//! price, stock), kept up to date as the product changes, removed with it,
//! and all removed from a bot that is unlinked or when the connection goes. Bots that
//! ask for it are retrained and deployed once their products have been
//! quiet for a while.
//!
//! Worked by every replica from what the store records (products behind
//! their knowledge, clears, retrains due), so nothing is lost while
//! chatbot-service is away: the work waits and is done when it is back.
//! Sending an item twice changes nothing.

use std::{sync::Arc, time::Duration};

use ids::BotId;
use proto::chatbot::v1::{SourcedItem, SyncKnowledgeSourceRequest};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    chatbot::{Chatbot, ChatbotError},
    kinds::{
        database::{DatabaseSettings, Engine},
        shopify::ShopifySettings,
    },
    product_documents,
    store::{
        db_products, integrations,
        knowledge_queue::{self, Clear},
        shopify_catalog,
    },
};

const POLL: Duration = Duration::from_secs(2);
/// The longest pause after chatbot-service could not be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const CONNECTIONS_PER_ROUND: i64 = 20;
const PRODUCTS_PER_CALL: i64 = 200;
const RETRAINS_PER_ROUND: i64 = 20;
const RETRY_RETRAIN: Duration = Duration::from_secs(30);

/// Why a round stopped short.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error(transparent)]
    Chatbot(#[from] ChatbotError),
    #[error(transparent)]
    Store(#[from] service_runtime::error::ServiceError),
}

#[derive(Clone)]
pub struct ProductKnowledge {
    pool: PgPool,
    chatbot: Chatbot,
    wake: Arc<Notify>,
}

impl ProductKnowledge {
    pub fn new(pool: PgPool, chatbot: Chatbot) -> Self {
        Self {
            pool,
            chatbot,
            wake: Arc::new(Notify::new()),
        }
    }

    /// What to notify when products changed here.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn spawn(self, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut pause = POLL;
            loop {
                pause = match self.round().await {
                    Ok(()) => POLL,
                    Err(stop) => {
                        tracing::warn!(error = %stop, "bringing bots' product knowledge up to date; will try again");
                        (pause * 2).min(MAX_BACKOFF)
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        });
    }

    async fn round(&self) -> Result<(), Stop> {
        for clear in knowledge_queue::clears(&self.pool, CONNECTIONS_PER_ROUND).await? {
            self.clear(&clear).await?;
        }
        for integration_id in shopify_catalog::connections_behind(&self.pool, CONNECTIONS_PER_ROUND).await? {
            while self.push_store(&integration_id).await? {}
        }
        for integration_id in db_products::connections_behind(&self.pool, CONNECTIONS_PER_ROUND).await? {
            while self.push_database(&integration_id).await? {}
        }
        for (workspace_id, bot_id) in knowledge_queue::due_retrains(&self.pool, RETRAINS_PER_ROUND).await? {
            match self.chatbot.retrain(&workspace_id, &bot_id).await {
                Ok(()) | Err(ChatbotError::BotGone) => {}
                Err(error) => {
                    knowledge_queue::retry_retrain(&self.pool, &workspace_id, &bot_id, RETRY_RETRAIN).await?;
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }

    async fn clear(&self, clear: &Clear) -> Result<(), Stop> {
        let request = SyncKnowledgeSourceRequest {
            bot_id: clear.bot_id.clone(),
            source: clear.source.clone(),
            clear: true,
            ..Default::default()
        };
        match self.chatbot.sync(&clear.workspace_id, request).await {
            Ok(_) | Err(ChatbotError::BotGone) => Ok(knowledge_queue::cleared(&self.pool, clear).await?),
            Err(error) => Err(error.into()),
        }
    }

    /// Sends one batch of the store's products that are behind to each
    /// linked bot; whether there may be more.
    async fn push_store(&self, integration_id: &str) -> Result<bool, Stop> {
        let Some((workspace_id, kind, settings)) = integrations::linked(&self.pool, integration_id).await? else {
            // Disconnected meanwhile: its products are being forgotten.
            return Ok(false);
        };
        let Ok(settings) = ShopifySettings::parse(settings.as_object().unwrap_or(&Default::default())) else {
            tracing::error!(integration = integration_id, "stored Shopify settings do not read");
            return Ok(false);
        };
        let pending = shopify_catalog::behind(&self.pool, integration_id, PRODUCTS_PER_CALL).await?;
        if pending.is_empty() {
            return Ok(false);
        }
        let (upserts, removed) = product_documents::store_items(&settings, &pending);
        let links = Links {
            workspace_id: &workspace_id,
            source: knowledge_queue::source(&kind, integration_id),
            bot_ids: &settings.bot_ids,
            retrain_after: settings.retrain_after,
        };
        self.teach(&links, upserts, removed).await?;
        let sent: Vec<(i64, i64)> = pending
            .iter()
            .map(|p| (p.view.product_id, p.knowledge_version))
            .collect();
        shopify_catalog::knowledge_sent(&self.pool, integration_id, &sent).await?;
        Ok(pending.len() as i64 == PRODUCTS_PER_CALL)
    }

    /// Sends one batch of the database's products that are behind to each
    /// linked bot; whether there may be more.
    async fn push_database(&self, integration_id: &str) -> Result<bool, Stop> {
        let Some((workspace_id, kind, settings)) = integrations::linked(&self.pool, integration_id).await? else {
            return Ok(false);
        };
        let parsed =
            Engine::of_kind(&kind).and_then(|engine| DatabaseSettings::parse(engine, settings.as_object()?).ok());
        let Some(settings) = parsed else {
            tracing::error!(integration = integration_id, "stored database settings do not read");
            return Ok(false);
        };
        let pending = db_products::behind(&self.pool, integration_id, PRODUCTS_PER_CALL).await?;
        if pending.is_empty() {
            return Ok(false);
        }
        let (upserts, removed) = product_documents::database_items(&settings, &pending);
        let links = Links {
            workspace_id: &workspace_id,
            source: knowledge_queue::source(&kind, integration_id),
            bot_ids: &settings.bot_ids,
            retrain_after: settings.retrain_after,
        };
        self.teach(&links, upserts, removed).await?;
        let sent: Vec<(String, i64)> = pending
            .into_iter()
            .map(|p| (p.view.external_id, p.knowledge_version))
            .collect();
        db_products::knowledge_sent(&self.pool, integration_id, &sent).await?;
        Ok(sent.len() as i64 == PRODUCTS_PER_CALL)
    }

    /// Gives every linked bot the items, and schedules the retrains asked for.
    async fn teach(&self, links: &Links<'_>, upserts: Vec<SourcedItem>, removed: Vec<String>) -> Result<(), Stop> {
        for bot_id in links.bot_ids {
            let request = SyncKnowledgeSourceRequest {
                bot_id: bot_id.to_string(),
                source: links.source.clone(),
                upserts: upserts.clone(),
                removed_external_ids: removed.clone(),
                clear: false,
            };
            let synced = match self.chatbot.sync(links.workspace_id, request).await {
                Ok(synced) => synced,
                // Deleted with its knowledge: nothing to keep up to date.
                Err(ChatbotError::BotGone) => continue,
                Err(error) => return Err(error.into()),
            };
            let changed = synced.created + synced.updated + synced.removed > 0;
            if let Some(after) = links.retrain_after.filter(|_| changed) {
                knowledge_queue::retrain_later(&self.pool, links.workspace_id, bot_id.as_str(), after).await?;
            }
        }
        Ok(())
    }
}

/// Who learns a connection's products, and under which source.
struct Links<'a> {
    workspace_id: &'a str,
    source: String,
    bot_ids: &'a [BotId],
    retrain_after: Option<Duration>,
}
