//! Reconciliation: reading a whole store through the GraphQL Admin API and
//! bringing what is stored in line with it, to catch up what webhooks
//! missed while they were down. Runs are queued on request or on schedule
//! and worked by any replica, one page per transaction: each page's rows
//! and the cursor after it commit together, so a failed run goes on from
//! where it stopped and nothing is read twice or lost.
//!
//! What a run writes is dated its snapshot, the moment it started reading:
//! a webhook Shopify produced later still wins, one from before loses. A
//! product stored before the snapshot that the complete pass did not see
//! is gone from the store and is removed. Orders are never removed this
//! way, because the API lists only recent orders without `read_all_orders`.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use event_pipeline::Outbox;
use ids::IntegrationId;
use serde_json::Value;
use service_runtime::error::ServiceError;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    events,
    kinds::{
        Connection,
        shopify::{
            Page, ShopifyCredentials, ShopifySettings,
            payloads::{Order, Product},
        },
    },
    order_notices,
    shopify_access::{AccessError, ShopifyAccess, Store},
    store::{
        db_products, integrations,
        shopify_catalog::{self, Source, Stored},
        sync_runs::{self, Counts, Progress, SyncRunRow},
    },
    vault::Vault,
};

/// A worker's hold on a run, renewed with every page.
const LEASE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_secs(1);
/// Attempts of one run before it is given up until the next schedule.
const MAX_ATTEMPTS: i32 = 5;

const PRODUCTS: &str = "products";
const ORDERS: &str = "orders";
const DONE: &str = "done";

/// When runs happen.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Every connected store is reconciled this often (and first when it
    /// connects); `None`: only on request.
    pub every: Option<Duration>,
    /// The wait before a failed run's first retry, doubling after.
    pub retry_after: Duration,
}

/// Why a run stopped short.
#[derive(Debug, thiserror::Error)]
enum Stop {
    /// Shopify (or reaching it) failed: worth another attempt later.
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Ours(#[from] ServiceError),
    /// Another worker holds the run now.
    #[error("the run was taken over by another worker")]
    LeaseLost,
}

#[derive(Clone)]
pub struct Reconciler {
    pool: PgPool,
    outbox: Outbox,
    vault: Vault,
    access: ShopifyAccess,
    schedule: Schedule,
    wake: Arc<Notify>,
    /// Told when products changed, so linked bots learn of them.
    changed: Arc<Notify>,
}

impl Reconciler {
    pub fn new(
        pool: PgPool,
        outbox: Outbox,
        vault: Vault,
        access: ShopifyAccess,
        schedule: Schedule,
        changed: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            outbox,
            vault,
            access,
            schedule,
            wake: Arc::new(Notify::new()),
            changed,
        }
    }

    pub fn spawn(self, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.round().await {
                    tracing::warn!(%error, "reconciling stores; will try again");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// Queues a run of the workspace's connection `id` (or finds the one
    /// open), to be worked at once.
    pub async fn request(&self, workspace_id: &str, id: &IntegrationId) -> Result<SyncRunRow, ServiceError> {
        let row = integrations::get(&self.pool, workspace_id, id).await?;
        let database = matches!(row.kind.as_str(), "postgres" | "mysql");
        let has_products = row.settings.get("products").is_some_and(Value::is_object);
        if !(row.kind == "shopify" || database && has_products) {
            return Err(ServiceError::FailedPrecondition(format!(
                "this {} connection has nothing to sync: Shopify stores and databases with a products mapping do",
                row.kind
            )));
        }
        if row.status == "disconnected" {
            return Err(ServiceError::FailedPrecondition(
                "the connection is disconnected: connect it again to sync it".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        let run = sync_runs::request(&mut tx, workspace_id, id.as_str()).await?;
        if database {
            // Worked by the database reader: its changed rows at once, then
            // its ids whole for deleted ones.
            db_products::poll_now(&mut tx, id.as_str()).await?;
        }
        tx.commit().await?;
        self.wake.notify_one();
        Ok(run)
    }

    /// Queues what the schedule says is due, then works every due run.
    async fn round(&self) -> Result<(), ServiceError> {
        if let Some(every) = self.schedule.every {
            sync_runs::schedule_due(&mut *self.pool.acquire().await?, every).await?;
        }
        while let Some(run) = sync_runs::claim(&self.pool, LEASE).await? {
            self.work(run).await?;
        }
        Ok(())
    }

    async fn work(&self, run: SyncRunRow) -> Result<(), ServiceError> {
        let lease = run.lease.clone().unwrap_or_default();
        let Some((settings, credentials, scopes)) = self.connection(&run).await? else {
            return sync_runs::drop_run(&self.pool, &run.id, "the connection is gone or disconnected").await;
        };
        let outcome = self.pages(&run, &lease, &settings, credentials, &scopes).await;
        let mut tx = self.pool.begin().await?;
        let event = match outcome {
            Ok(()) => sync_runs::complete(&mut tx, &run.id, &lease)
                .await?
                .map(|done| events::sync_completed(&run.workspace_id, &done)),
            Err(Stop::LeaseLost) => None,
            Err(Stop::Ours(error)) => return Err(error),
            Err(Stop::Access(AccessError::Ours(error))) => return Err(error),
            Err(Stop::Access(AccessError::Shopify(error))) => {
                let reason = error.to_string();
                let retry_at = self.retry_at(run.attempts);
                tracing::warn!(run = %run.id, %reason, ?retry_at, "a store's sync failed");
                let failed = sync_runs::fail(&mut tx, &run.id, &lease, &reason, retry_at).await?;
                let next = retry_at.or_else(|| self.next_scheduled());
                failed.map(|run| events::sync_failed(&run.workspace_id, &run, next))
            }
        };
        if let Some(event) = event {
            self.outbox.record(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When a run that failed its `attempts`th time is tried again; `None`
    /// once it has had all its attempts.
    fn retry_at(&self, attempts: i32) -> Option<DateTime<Utc>> {
        (attempts < MAX_ATTEMPTS).then(|| {
            let wait = self.schedule.retry_after * 2u32.pow(attempts.clamp(1, 10) as u32 - 1);
            Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
        })
    }

    fn next_scheduled(&self) -> Option<DateTime<Utc>> {
        let every = chrono::Duration::from_std(self.schedule.every?).ok()?;
        Some(Utc::now() + every)
    }

    /// The run's store, its credentials and the scopes it granted; `None`
    /// when it is gone or no longer connected.
    async fn connection(
        &self,
        run: &SyncRunRow,
    ) -> Result<Option<(ShopifySettings, ShopifyCredentials, Vec<String>)>, ServiceError> {
        let id = IntegrationId::parse("integration_id", &run.integration_id)?;
        let (row, sealed) = match integrations::with_credentials(&self.pool, &run.workspace_id, &id).await {
            Ok(found) => found,
            Err(ServiceError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        if row.status == "disconnected" {
            return Ok(None);
        }
        match self.vault.connection(&row, &sealed, &run.workspace_id)? {
            Connection::Shopify { settings, credentials } => Ok(Some((settings, credentials, row.scopes))),
            Connection::Database { .. } | Connection::Salesforce { .. } => Ok(None),
        }
    }

    /// Reads the store page by page from where the run stands.
    async fn pages(
        &self,
        run: &SyncRunRow,
        lease: &str,
        settings: &ShopifySettings,
        mut credentials: ShopifyCredentials,
        scopes: &[String],
    ) -> Result<(), Stop> {
        let id = IntegrationId::parse("integration_id", &run.integration_id).map_err(ServiceError::from)?;
        let store = Store {
            workspace_id: &run.workspace_id,
            id: &id,
            settings,
        };
        let snapshot = run.snapshot_at.unwrap_or_else(Utc::now);
        let (mut phase, mut cursor) = (run.phase.clone(), run.cursor.clone());
        while phase != DONE {
            if !granted(scopes, &phase) {
                (phase, cursor) = (next_phase(&phase).to_owned(), None);
                continue;
            }
            let shopify = self.access.shopify();
            let (store, after) = (&store, cursor.as_deref());
            let step = match phase.as_str() {
                PRODUCTS => {
                    let page = self
                        .access
                        .call(store, &mut credentials, |token| async move {
                            shopify.products_page(&store.caller(&token), after).await
                        })
                        .await?;
                    self.store_page(run, lease, snapshot, &phase, page).await?
                }
                _ => {
                    let page = self
                        .access
                        .call(store, &mut credentials, |token| async move {
                            shopify.orders_page(&store.caller(&token), after).await
                        })
                        .await?;
                    self.store_page(run, lease, snapshot, &phase, page).await?
                }
            };
            if let Some(pause) = step.pause {
                tokio::time::sleep(pause).await;
            }
            (phase, cursor) = (step.phase, step.cursor);
        }
        Ok(())
    }

    /// Stores a page's items and the run's progress in one transaction.
    async fn store_page<T: Item + Send>(
        &self,
        run: &SyncRunRow,
        lease: &str,
        snapshot: DateTime<Utc>,
        phase: &str,
        page: Page<T>,
    ) -> Result<Step, Stop> {
        let source = Source {
            workspace_id: &run.workspace_id,
            integration_id: &run.integration_id,
            triggered_at: snapshot,
        };
        let mut tx = self.pool.begin().await.map_err(ServiceError::from)?;
        let mut counts = Counts::default();
        for item in page.items {
            match item {
                Ok(item) => counts += item.store(&mut tx, &source).await?,
                Err(reason) => {
                    tracing::warn!(run = %run.id, %reason, "an item of the store does not read");
                    counts.failed += 1;
                }
            }
        }
        let finished = page.next.is_none();
        if finished && phase == PRODUCTS {
            counts.removed += shopify_catalog::remove_unseen(&mut tx, &run.integration_id, snapshot).await? as i32;
        }
        let (phase, cursor) = match page.next {
            Some(cursor) => (phase.to_owned(), Some(cursor)),
            None => (next_phase(phase).to_owned(), None),
        };
        let progress = Progress {
            phase: &phase,
            cursor: cursor.as_deref(),
            snapshot_at: snapshot,
            counts,
        };
        if !sync_runs::record_progress(&mut tx, &run.id, lease, LEASE, &progress).await? {
            return Err(Stop::LeaseLost);
        }
        tx.commit().await.map_err(ServiceError::from)?;
        if counts != Counts::default() {
            self.changed.notify_one();
        }
        Ok(Step {
            phase,
            cursor,
            pause: page.pause,
        })
    }
}

/// Where a run stands after a page, and the pause before the next.
struct Step {
    phase: String,
    cursor: Option<String>,
    pause: Option<Duration>,
}

/// A resource a run reads: how one item is stored.
trait Item: Sized {
    fn store<'a>(
        self,
        conn: &'a mut PgConnection,
        source: &'a Source<'a>,
    ) -> impl Future<Output = Result<Counts, ServiceError>> + Send + 'a;
}

impl Item for Product {
    async fn store<'a>(self, conn: &'a mut PgConnection, source: &'a Source<'a>) -> Result<Counts, ServiceError> {
        let stored = shopify_catalog::upsert_product(conn, source, &self, Some(source.triggered_at)).await?;
        if stored.written() {
            let items: Vec<i64> = self.variants.iter().filter_map(|v| v.inventory_item_id).collect();
            shopify_catalog::settle_stock(conn, source.integration_id, &items, source.triggered_at).await?;
        }
        Ok(count(stored))
    }
}

impl Item for Order {
    async fn store<'a>(self, conn: &'a mut PgConnection, source: &'a Source<'a>) -> Result<Counts, ServiceError> {
        Ok(count(order_notices::store_order(conn, source, &self).await?))
    }
}

fn count(stored: Stored) -> Counts {
    Counts {
        created: (stored == Stored::Created) as i32,
        updated: (stored == Stored::Updated) as i32,
        ..Counts::default()
    }
}

fn next_phase(phase: &str) -> &'static str {
    match phase {
        PRODUCTS => ORDERS,
        _ => DONE,
    }
}

/// Whether the token may read the phase's resource; a connection whose
/// scopes are unknown tries.
fn granted(scopes: &[String], phase: &str) -> bool {
    scopes.is_empty()
        || scopes
            .iter()
            .any(|s| s == &format!("read_{phase}") || s == &format!("write_{phase}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_reads_only_what_its_token_may() {
        let scopes = vec!["read_products".to_owned(), "write_orders".to_owned()];
        assert!(granted(&scopes, PRODUCTS) && granted(&scopes, ORDERS));
        assert!(!granted(&["read_products".to_owned()], ORDERS));
        assert!(granted(&[], ORDERS));
        assert_eq!((next_phase(PRODUCTS), next_phase(ORDERS)), (ORDERS, DONE));
    }
}
