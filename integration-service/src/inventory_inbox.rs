//! Taking an inventory webhook: checked against the connection's secret,
//! taken once per webhook id, and applied at once (it is small) in one
//! transaction with the events of products whose stock crossed the
//! low-stock threshold or reached zero. The bots' knowledge follows from
//! the products' new versions.

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;
use event_pipeline::Outbox;
use ids::IntegrationId;
use service_runtime::error::ServiceError;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Notify;

use crate::{
    events,
    kinds::{
        Connection,
        database::DatabaseSettings,
        inventory_webhook::{self, Refusal, Signed, StockChange},
    },
    store::{
        db_products::{self, StockState},
        integrations,
    },
    vault::Vault,
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct InventoryInbox {
    pool: PgPool,
    outbox: Outbox,
    vault: Vault,
    /// Wakes the knowledge pusher.
    knowledge: Arc<Notify>,
}

/// What became of a delivery.
#[derive(Debug, Default)]
pub struct Taken {
    pub duplicate: bool,
    pub updated: usize,
    pub stale: usize,
    pub unknown: Vec<String>,
}

impl InventoryInbox {
    pub fn new(pool: PgPool, outbox: Outbox, vault: Vault, knowledge: Arc<Notify>) -> Self {
        Self {
            pool,
            outbox,
            vault,
            knowledge,
        }
    }

    pub async fn receive(&self, integration_id: &str, body: &[u8], headers: &HashMap<String, String>) -> Result<Taken> {
        let id = IntegrationId::parse("integration_id", integration_id)?;
        let signed = Signed::from_headers(headers, Utc::now()).map_err(refused)?;
        let addressed = integrations::addressed_by_webhook(&self.pool, &id).await?;
        let workspace_id = addressed.workspace_id.as_str();
        let not_verifiable = || {
            ServiceError::Unauthenticated(
                "this connection has no inventory_webhook_secret to verify webhooks with".into(),
            )
        };
        let sealed = addressed.sealed.as_deref().ok_or_else(not_verifiable)?;
        let Connection::Database { settings, credentials } =
            self.vault.connection(&addressed.row, sealed, workspace_id)?
        else {
            return Err(ServiceError::not_found(IntegrationId::KIND, id.as_str()));
        };
        let key = credentials.inventory_key().ok_or_else(not_verifiable)?;
        signed.verify(&key, body).map_err(refused)?;
        let changes = inventory_webhook::changes(body).map_err(refused)?;
        let mut tx = self.pool.begin().await?;
        if !db_products::take_delivery(&mut tx, id.as_str(), &signed.webhook_id).await? {
            return Ok(Taken {
                duplicate: true,
                ..Taken::default()
            });
        }
        let delivery = Delivery {
            workspace_id,
            integration_id: id.as_str(),
            settings: &settings,
            signed: &signed,
        };
        let taken = self.apply(&mut tx, &delivery, &changes).await?;
        tx.commit().await?;
        if taken.updated > 0 {
            self.knowledge.notify_one();
        }
        Ok(taken)
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        delivery: &Delivery<'_>,
        changes: &[StockChange],
    ) -> Result<Taken> {
        let threshold = delivery.settings.low_stock_threshold;
        let mut taken = Taken::default();
        let mut not_set = Vec::new();
        for change in changes {
            let state = StockState::of(Some(change.stock), threshold);
            let stock = (change.stock, state);
            let at = delivery.signed.at;
            let Some(stored) =
                db_products::set_stock(tx, delivery.integration_id, &change.product_id, stock, at).await?
            else {
                not_set.push(change.product_id.clone());
                continue;
            };
            taken.updated += 1;
            if let Some(out) = state.crossed_from(Some(stored.before())) {
                let stocked = events::StockedProduct {
                    id: &change.product_id,
                    title: &stored.title,
                    price: stored.price.as_deref(),
                    stock: change.stock,
                };
                let event = events::stock(delivery.workspace_id, delivery.integration_id, stocked, out, threshold);
                self.outbox.record(tx, &event).await?;
            }
        }
        if !not_set.is_empty() {
            let known = db_products::known(&mut **tx, delivery.integration_id, &not_set).await?;
            taken.stale = known.len();
            taken.unknown = not_set.into_iter().filter(|id| !known.contains(id)).collect();
        }
        Ok(taken)
    }
}

/// A verified delivery and whose it is.
struct Delivery<'a> {
    workspace_id: &'a str,
    integration_id: &'a str,
    settings: &'a DatabaseSettings,
    signed: &'a Signed,
}

fn refused(refusal: Refusal) -> ServiceError {
    let reason = refusal.to_string();
    match refusal {
        Refusal::OutOfTolerance | Refusal::BadSignature => ServiceError::Unauthenticated(reason),
        Refusal::Body(_) => ServiceError::invalid("body", reason),
        Refusal::Missing(_) | Refusal::Malformed(_) => ServiceError::invalid("headers", reason),
    }
}
