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
    events,
    kinds::{Connection, Reach},
    store::{
        integrations::{self, IntegrationRow, NewIntegration, Subscription},
        shopify_catalog, shopify_deliveries, shopify_orders,
    },
    vault::Vault,
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

pub struct Connector {
    pool: PgPool,
    outbox: Outbox,
    vault: Vault,
    reach: Arc<Reach>,
}

/// What a change of a connection asks for.
pub struct Change {
    pub name: Option<String>,
    pub credentials: HashMap<String, String>,
}

impl Connector {
    pub fn new(pool: PgPool, outbox: Outbox, vault: Vault, reach: Arc<Reach>) -> Self {
        Self {
            pool,
            outbox,
            vault,
            reach,
        }
    }

    /// Tries the connection, registers its webhooks, then saves it with its
    /// event. Emits `integration.connected`.
    pub async fn connect(&self, workspace_id: &str, name: &str, mut connection: Connection) -> Result<IntegrationRow> {
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

    /// Renames the connection or replaces some of its credentials, which
    /// are tried first; a connection that can now verify webhooks and had
    /// none registers them.
    pub async fn change(&self, workspace_id: &str, id: &IntegrationId, change: Change) -> Result<IntegrationRow> {
        if change.credentials.is_empty() {
            let mut conn = self.pool.acquire().await?;
            return integrations::update(&mut conn, workspace_id, id, change.name.as_deref(), None).await;
        }
        let (row, sealed) = integrations::with_credentials(&self.pool, workspace_id, id).await?;
        let stored = self.vault.connection(&row, &sealed, workspace_id)?;
        let mut connection = stored.replaced(change.credentials)?;
        connection.try_new(id.as_str(), &self.reach).await?;
        let subscriptions = match row.webhook_topics.is_empty() {
            true => connection.subscribe(id.as_str(), &self.reach).await?,
            false => Vec::new(),
        };
        let sealed = self.vault.seal(&connection, workspace_id, id);
        let mut tx = self.pool.begin().await?;
        let row = integrations::update(&mut tx, workspace_id, id, change.name.as_deref(), Some(&sealed)).await?;
        let row = match subscriptions.is_empty() {
            true => row,
            false => integrations::set_subscriptions(&mut tx, workspace_id, id, &subscriptions).await?,
        };
        tx.commit().await?;
        Ok(row)
    }

    /// Removes what the connection registered on the other side, then
    /// forgets it with everything it brought in. Emits
    /// `integration.disconnected`.
    pub async fn disconnect(&self, workspace_id: &str, id: &IntegrationId) -> Result<IntegrationRow> {
        let subscriptions: Vec<Subscription> = integrations::subscriptions(&self.pool, workspace_id, id).await?;
        if !subscriptions.is_empty() {
            let (row, sealed) = integrations::with_credentials(&self.pool, workspace_id, id).await?;
            let connection = self.vault.connection(&row, &sealed, workspace_id)?;
            connection.unsubscribe(id.as_str(), &self.reach, &subscriptions).await?;
        }
        let mut tx = self.pool.begin().await?;
        let row = integrations::delete(&mut tx, workspace_id, id).await?;
        shopify_catalog::forget(&mut tx, id.as_str()).await?;
        shopify_orders::forget(&mut tx, id.as_str()).await?;
        shopify_deliveries::forget(&mut tx, id.as_str()).await?;
        self.outbox
            .record(&mut tx, &events::disconnected(workspace_id, &row))
            .await?;
        tx.commit().await?;
        Ok(row)
    }
}
