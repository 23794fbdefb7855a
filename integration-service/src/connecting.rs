//! Connecting a workspace to another system, changing the connection and
//! disconnecting it: each tried against the other side first, what it
//! registers there (Shopify's webhooks) kept with the row so disconnecting
//! can remove it, and each change saved with its event.

use std::{collections::HashMap, sync::Arc};

use event_pipeline::Outbox;
use ids::IntegrationId;
use service_runtime::error::ServiceError;
use sqlx::PgPool;

use crate::{
    chatbot::Chatbot,
    events,
    kinds::{Connection, Reach},
    store::{
        self, db_products,
        integrations::{self, IntegrationRow, NewIntegration, Subscription, Update},
        knowledge_queue, shopify_catalog, shopify_orders,
    },
    vault::Vault,
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

pub struct Connector {
    pool: PgPool,
    outbox: Outbox,
    vault: Vault,
    reach: Arc<Reach>,
    chatbot: Chatbot,
}

/// What a change of a connection asks for.
pub struct Change {
    pub name: Option<String>,
    pub credentials: HashMap<String, String>,
    pub settings: Option<prost_types::Struct>,
}

impl Connector {
    pub fn new(pool: PgPool, outbox: Outbox, vault: Vault, reach: Arc<Reach>, chatbot: Chatbot) -> Self {
        Self {
            pool,
            outbox,
            vault,
            reach,
            chatbot,
        }
    }

    /// Every bot the connection would teach is one of the workspace's.
    async fn check_bots(&self, workspace_id: &str, connection: &Connection) -> Result<()> {
        for bot in connection.linked_bots() {
            let exists = self
                .chatbot
                .bot_exists(workspace_id, bot.as_str())
                .await
                .map_err(|error| ServiceError::Unavailable(format!("checking the linked bots: {error}")))?;
            if !exists {
                return Err(ServiceError::invalid(
                    "settings.bot_ids",
                    format!("{bot} is not a bot of this workspace"),
                ));
            }
        }
        Ok(())
    }

    /// Tries the connection, registers its webhooks, then saves it with its
    /// event. Emits `integration.connected`.
    pub async fn connect(&self, workspace_id: &str, name: &str, mut connection: Connection) -> Result<IntegrationRow> {
        self.check_bots(workspace_id, &connection).await?;
        let id = IntegrationId::generate();
        let scopes = connection.try_new(id.as_str(), &self.reach).await?;
        let subscriptions = connection.subscribe(id.as_str(), &self.reach).await?;
        let sealed = self.vault.seal(&connection, workspace_id, &id);
        let settings = connection.settings();
        let new = NewIntegration {
            id: &id,
            kind: connection.kind(),
            name,
            settings: &settings,
            scopes: &scopes,
            credentials_sealed: &sealed,
            subscriptions: &subscriptions,
        };
        let saved = self.save_new(workspace_id, new).await;
        if saved.is_err() {
            let _ = connection.unsubscribe(id.as_str(), &self.reach, &subscriptions).await;
        }
        let row = saved?;
        tracing::info!(integration = %row.id, kind = row.kind, webhooks = subscriptions.len(), "integration connected");
        Ok(row)
    }

    async fn save_new(&self, workspace_id: &str, new: NewIntegration<'_>) -> Result<IntegrationRow> {
        let mut tx = self.pool.begin().await?;
        let row = integrations::insert(&mut tx, workspace_id, new).await?;
        self.outbox
            .record(&mut tx, &events::connected(workspace_id, &row))
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Renames the connection, changes its settings or replaces some of its
    /// credentials (tried first, as are a database's new mappings). A connection that can now verify
    /// webhooks and had none registers them; bots newly linked learn every
    /// product, bots unlinked forget them.
    pub async fn change(&self, workspace_id: &str, id: &IntegrationId, change: Change) -> Result<IntegrationRow> {
        let (row, sealed) = integrations::with_credentials(&self.pool, workspace_id, id).await?;
        let stored = self.vault.connection(&row, &sealed, workspace_id)?;
        let before = stored.linked_bots().to_vec();
        let new_credentials = !change.credentials.is_empty();
        // A database's new mappings are tried as its first ones were.
        let new_reads = change
            .settings
            .as_ref()
            .is_some_and(|s| s.fields.contains_key("products") || s.fields.contains_key("orders"));
        let mut connection = stored.with_settings(change.settings)?.replaced(change.credentials)?;
        self.check_bots(workspace_id, &connection).await?;
        let mut subscriptions = Vec::new();
        if new_credentials || new_reads {
            connection.try_new(id.as_str(), &self.reach).await?;
        }
        if new_credentials && row.webhook_topics.is_empty() {
            subscriptions = connection.subscribe(id.as_str(), &self.reach).await?;
        }
        let sealed = new_credentials.then(|| self.vault.seal(&connection, workspace_id, id));
        let settings = connection.settings();
        let after = connection.linked_bots();
        let unlinked: Vec<_> = before.iter().filter(|b| !after.contains(b)).cloned().collect();
        let mut tx = self.pool.begin().await?;
        let update = Update {
            name: change.name.as_deref(),
            settings: Some(&settings),
            sealed: sealed.as_deref(),
        };
        let mut row = integrations::update(&mut tx, workspace_id, id, update).await?;
        if !subscriptions.is_empty() {
            row = integrations::set_subscriptions(&mut tx, workspace_id, id, &subscriptions).await?;
        }
        let link = (connection.kind(), id.as_str());
        knowledge_queue::clear_later(&mut tx, workspace_id, link, &unlinked).await?;
        if after.iter().any(|b| !before.contains(b)) {
            shopify_catalog::resend_all(&mut tx, id.as_str()).await?;
            db_products::resend_all(&mut tx, id.as_str()).await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Removes what the connection registered on the other side, then
    /// forgets it with everything it brought in. Emits
    /// `integration.disconnected`.
    pub async fn disconnect(&self, workspace_id: &str, id: &IntegrationId) -> Result<IntegrationRow> {
        let subscriptions: Vec<Subscription> = integrations::subscriptions(&self.pool, workspace_id, id).await?;
        let (row, sealed) = integrations::with_credentials(&self.pool, workspace_id, id).await?;
        let connection = self.vault.connection(&row, &sealed, workspace_id)?;
        if !subscriptions.is_empty() {
            connection.unsubscribe(id.as_str(), &self.reach, &subscriptions).await?;
        }
        let mut tx = self.pool.begin().await?;
        let row = integrations::delete(&mut tx, workspace_id, id).await?;
        let link = (connection.kind(), id.as_str());
        knowledge_queue::clear_later(&mut tx, workspace_id, link, connection.linked_bots()).await?;
        shopify_catalog::forget(&mut tx, id.as_str()).await?;
        shopify_orders::forget(&mut tx, id.as_str()).await?;
        let logs = [
            "shopify_deliveries",
            "sync_runs",
            "salesforce_leads",
            "db_products",
            "db_sources",
            "db_inventory_deliveries",
        ];
        store::forget(&mut tx, &logs, id.as_str()).await?;
        self.outbox
            .record(&mut tx, &events::disconnected(workspace_id, &row))
            .await?;
        tx.commit().await?;
        Ok(row)
    }
}
