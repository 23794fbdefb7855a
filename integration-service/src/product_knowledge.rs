//! A store's products as knowledge of the bots linked to it: each active
//! product is one document item (title, description, price, stock), kept
//! up to date as the product changes, removed with it, and all removed
//! from a bot that is unlinked or when the store disconnects. Bots that
//! ask for it are retrained and deployed once their products have been
//! quiet for a while.
//!
//! Worked by every replica from what the store records (products behind
//! their knowledge, clears, retrains due), so nothing is lost while
//! chatbot-service is away: the work waits and is done when it is back.
//! Sending an item twice changes nothing.

use std::{sync::Arc, time::Duration};

use proto::chatbot::v1::{Document, SourcedItem, SyncKnowledgeSourceRequest};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    chatbot::{Chatbot, ChatbotError},
    kinds::shopify::ShopifySettings,
    store::{
        integrations,
        knowledge_queue::{self, Clear},
        shopify_catalog::{self, Pending, ProductView},
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
            while self.push(&integration_id).await? {}
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
            source: source(&clear.integration_id),
            clear: true,
            ..Default::default()
        };
        match self.chatbot.sync(&clear.workspace_id, request).await {
            Ok(_) | Err(ChatbotError::BotGone) => Ok(knowledge_queue::cleared(&self.pool, clear).await?),
            Err(error) => Err(error.into()),
        }
    }

    /// Sends one batch of the connection's products that are behind to each
    /// linked bot; whether there may be more.
    async fn push(&self, integration_id: &str) -> Result<bool, Stop> {
        let Some((workspace_id, _, settings)) = integrations::linked(&self.pool, integration_id).await? else {
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
        let (upserts, removed) = items(&settings, &pending);
        for bot_id in &settings.bot_ids {
            let request = SyncKnowledgeSourceRequest {
                bot_id: bot_id.to_string(),
                source: source(integration_id),
                upserts: upserts.clone(),
                removed_external_ids: removed.clone(),
                clear: false,
            };
            let synced = match self.chatbot.sync(&workspace_id, request).await {
                Ok(synced) => synced,
                // Deleted with its knowledge: nothing to keep up to date.
                Err(ChatbotError::BotGone) => continue,
                Err(error) => return Err(error.into()),
            };
            let changed = synced.created + synced.updated + synced.removed > 0;
            if let Some(after) = settings.retrain_after.filter(|_| changed) {
                knowledge_queue::retrain_later(&self.pool, &workspace_id, bot_id.as_str(), after).await?;
            }
        }
        let sent: Vec<(i64, i64)> = pending
            .iter()
            .map(|p| (p.view.product_id, p.knowledge_version))
            .collect();
        shopify_catalog::knowledge_sent(&self.pool, integration_id, &sent).await?;
        Ok(pending.len() as i64 == PRODUCTS_PER_CALL)
    }
}

/// Whose items these are, in every bot.
fn source(integration_id: &str) -> String {
    format!("shopify:{integration_id}")
}

/// The products as items to upsert (active ones) and ids to remove (the
/// rest: deleted, draft or archived).
fn items(settings: &ShopifySettings, pending: &[Pending]) -> (Vec<SourcedItem>, Vec<String>) {
    let mut upserts = Vec::new();
    let mut removed = Vec::new();
    for Pending { view, .. } in pending {
        let external_id = view.product_id.to_string();
        if view.deleted || view.status != "active" {
            removed.push(external_id);
        } else {
            upserts.push(SourcedItem {
                external_id,
                document: Some(document(&settings.shop, view)),
            });
        }
    }
    (upserts, removed)
}

/// A product as a bot reads it.
fn document(shop: &str, product: &ProductView) -> Document {
    let mut text = product.title.clone();
    if !product.description.is_empty() {
        text.push_str("\n\n");
        text.push_str(&product.description);
    }
    match (&product.price_min, &product.price_max) {
        (Some(min), Some(max)) if min != max => text.push_str(&format!("\n\nPrice: from {min} to {max}.")),
        (Some(price), _) => text.push_str(&format!("\n\nPrice: {price}.")),
        _ => {}
    }
    match product.stock {
        Some(n) if n > 0 => text.push_str(&format!("\nIn stock: {n} available.")),
        Some(_) => text.push_str("\nOut of stock."),
        None => {}
    }
    let metadata = json!({
        "product_id": product.product_id.to_string(),
        "shop": shop,
        "price_min": product.price_min,
        "price_max": product.price_max,
        "stock": product.stock.map(|n| n.to_string()),
    });
    Document {
        title: product.title.clone(),
        text,
        source_url: format!("https://{shop}/products/{}", product.handle),
        metadata: Some(service_runtime::proto_json::json_to_struct(strip_nulls(metadata))),
    }
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(stock: Option<i64>, prices: (&str, &str)) -> ProductView {
        ProductView {
            product_id: 9_007_199_254_740_993,
            title: "Blue mug".into(),
            description: "Holds tea.".into(),
            handle: "blue-mug".into(),
            status: "active".into(),
            price_min: Some(prices.0.into()),
            price_max: Some(prices.1.into()),
            stock,
            deleted: false,
        }
    }

    #[test]
    fn a_product_reads_as_its_title_description_price_and_stock() {
        let doc = document("acme.myshopify.com", &product(Some(21), ("12.50", "99.00")));
        assert_eq!(doc.title, "Blue mug");
        assert_eq!(
            doc.text,
            "Blue mug\n\nHolds tea.\n\nPrice: from 12.50 to 99.00.\nIn stock: 21 available."
        );
        assert_eq!(doc.source_url, "https://acme.myshopify.com/products/blue-mug");
        let sold_out = document("acme.myshopify.com", &product(Some(0), ("5.00", "5.00")));
        assert!(
            sold_out.text.ends_with("Price: 5.00.\nOut of stock."),
            "{}",
            sold_out.text
        );
    }
}
