//! Reading the products a workspace's own database offers: every
//! connected database with a product mapping is read on its own schedule
//! (`poll_seconds`), only the rows changed since the last read (its cursor:
//! change time, then id), in a read-only, time-limited session. Each page
//! is stored with the cursor after it in one transaction, with a
//! `product.low_stock` or `product.out_of_stock` event for each product
//! that crossed the connection's threshold, so a crash loses nothing and
//! announces nothing twice. A deleted row leaves no change time behind, so
//! every few polls the ids are read whole, and products no longer there
//! are marked deleted (and leave the linked bots' knowledge).

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use event_pipeline::Outbox;
use ids::IntegrationId;
use service_runtime::error::ServiceError;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    events,
    kinds::{
        Connection, Reach,
        database::{self, DatabaseSettings, Source},
        product_mapping::PAGE,
    },
    store::{
        db_products::{self, DueSource, StockState},
        integrations,
        sync_runs::{self, Counts},
    },
    vault::Vault,
};

const TICK: Duration = Duration::from_secs(1);
const SOURCES_PER_TICK: i64 = 10;
/// How long a replica has a database to itself for one read and sweep.
const LEASE: Duration = Duration::from_secs(120);
/// After a failed read, the next waits this long (or the poll interval).
const RETRY: Duration = Duration::from_secs(30);
/// Ids are read whole every this many polls, and at least this often.
const SWEEP_EVERY_POLLS: u32 = 5;
const SWEEP_AT_LEAST: Duration = Duration::from_secs(3600);
/// A table with more rows than this is not swept: reading its ids whole
/// every few polls would weigh on the workspace's database.
const SWEEP_MOST: usize = 200_000;

pub struct DbPolling {
    pool: PgPool,
    outbox: Outbox,
    vault: Vault,
    reach: Arc<Reach>,
}

impl DbPolling {
    pub fn new(pool: PgPool, outbox: Outbox, vault: Vault, reach: Arc<Reach>) -> Self {
        Self {
            pool,
            outbox,
            vault,
            reach,
        }
    }

    /// Reads on its own schedule; `knowledge` is woken after products changed.
    pub fn spawn(self, knowledge: Arc<Notify>, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                match self.round().await {
                    Ok(0) => {}
                    Ok(_) => knowledge.notify_one(),
                    Err(error) => tracing::warn!(%error, "reading workspaces' databases; will try again"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(TICK) => {}
                }
            }
        });
    }

    /// Reads the sources that are due; how many products it read.
    async fn round(&self) -> Result<usize, ServiceError> {
        let mut read = 0;
        for source in db_products::due(&self.pool, SOURCES_PER_TICK, LEASE).await? {
            read += self.read(&source).await?;
        }
        Ok(read)
    }

    /// Reads one page of the source's changed products and stores it; how
    /// many it read.
    async fn read(&self, source: &DueSource) -> Result<usize, ServiceError> {
        let id = IntegrationId::parse("integration_id", &source.integration_id)?;
        let (row, sealed) = integrations::with_credentials(&self.pool, &source.workspace_id, &id).await?;
        let Connection::Database { settings, credentials } =
            self.vault.connection(&row, &sealed, &source.workspace_id)?
        else {
            return Ok(0);
        };
        let cursor = (source.cursor_changed.as_str(), source.cursor_id.as_str());
        let database = Source {
            integration_id: &source.integration_id,
            settings: &settings,
            password: &credentials.password,
        };
        let guard = (&self.reach.targets, self.reach.timeout);
        let read = database::read_products(&database, &self.reach.databases, guard, cursor).await;
        let mut tx = self.pool.begin().await?;
        let mut count = 0;
        let mut caught_up = false;
        match read {
            Ok(products) => {
                count = products.len();
                caught_up = (count as i64) < PAGE;
                let mut counts = Counts::default();
                let ids: Vec<&str> = products.iter().map(|p| p.id.as_str()).collect();
                db_products::lock(&mut tx, &source.integration_id, &ids).await?;
                for product in &products {
                    match self.store(&mut tx, source, &settings, product).await? {
                        true => counts.created += 1,
                        false => counts.updated += 1,
                    }
                }
                if count > 0 {
                    sync_runs::count_database_read(&mut tx, &source.integration_id, &counts).await?;
                }
                // A full page means more are waiting: read on at once.
                let next = match products.len() as i64 == PAGE {
                    true => Utc::now(),
                    false => Utc::now() + chrono::Duration::from_std(settings.poll_every).unwrap_or_default(),
                };
                let last = products.last().map_or(cursor, |p| (p.changed.as_str(), p.id.as_str()));
                db_products::advance(&mut tx, &source.integration_id, last, next, "").await?;
            }
            Err(ServiceError::Unprocessable(reason)) => {
                tracing::warn!(integration = %id, %reason, "reading a workspace's products");
                let wait = settings.poll_every.max(RETRY);
                let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                db_products::advance(&mut tx, &source.integration_id, cursor, next, &reason).await?;
                if let Some(run) = sync_runs::fail_database(&mut tx, &source.integration_id, &reason).await? {
                    self.outbox
                        .record(&mut tx, &events::sync_failed(&source.workspace_id, &run, Some(next)))
                        .await?;
                }
            }
            Err(error) => return Err(error),
        }
        tx.commit().await?;
        if caught_up && source.sweep_due {
            count += self.sweep(source, &settings, &credentials.password).await?;
        }
        Ok(count)
    }

    /// Reads every id the database holds and marks deleted the products
    /// read before that are no longer among them; how many.
    async fn sweep(
        &self,
        source: &DueSource,
        settings: &DatabaseSettings,
        password: &str,
    ) -> Result<usize, ServiceError> {
        let started = Utc::now();
        let database = Source {
            integration_id: &source.integration_id,
            settings,
            password,
        };
        let guard = (&self.reach.targets, self.reach.timeout);
        let present = database::read_product_ids(&database, &self.reach.databases, guard, SWEEP_MOST).await;
        let mut tx = self.pool.begin().await?;
        let gone = match present {
            Ok(present) => db_products::mark_gone(&mut tx, &source.integration_id, &present, started).await?,
            Err(ServiceError::Unprocessable(reason)) => {
                tracing::warn!(integration = source.integration_id, %reason, "looking for deleted products");
                0
            }
            Err(error) => return Err(error),
        };
        let every = (settings.poll_every * SWEEP_EVERY_POLLS).min(SWEEP_AT_LEAST);
        let next = started + chrono::Duration::from_std(every).unwrap_or_default();
        db_products::sweep_next(&mut tx, &source.integration_id, next).await?;
        if let Some(run) = sync_runs::complete_database(&mut tx, &source.integration_id, gone as i32).await? {
            self.outbox
                .record(&mut tx, &events::sync_completed(&source.workspace_id, &run))
                .await?;
        }
        tx.commit().await?;
        Ok(gone as usize)
    }

    /// Stores a product as read, announcing a stock crossing; whether it
    /// is new.
    async fn store(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        source: &DueSource,
        settings: &DatabaseSettings,
        product: &database::SourceProduct,
    ) -> Result<bool, ServiceError> {
        let threshold = settings.low_stock_threshold;
        let state = StockState::of(product.stock, threshold);
        let before =
            db_products::upsert(&mut *tx, &source.workspace_id, &source.integration_id, product, state).await?;
        if let Some(out) = state.crossed_from(before) {
            let stocked = events::StockedProduct {
                id: &product.id,
                title: &product.title,
                price: product.price.as_deref(),
                stock: product.stock.unwrap_or_default(),
            };
            let event = events::stock(&source.workspace_id, &source.integration_id, stocked, out, threshold);
            self.outbox.record(tx, &event).await?;
        }
        Ok(before.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_is_low_below_the_threshold_and_out_at_zero() {
        assert_eq!(StockState::of(Some(10), 10), StockState::InStock);
        assert_eq!(StockState::of(Some(9), 10), StockState::Low);
        assert_eq!(StockState::of(Some(0), 10), StockState::Out);
        assert_eq!(StockState::of(None, 10), StockState::InStock);
    }
}
