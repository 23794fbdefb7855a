//! Working stored deliveries, on every replica: at once when this replica
//! stored one, every few seconds for the others'. A batch commits once,
//! each delivery in a savepoint of its own; one that fails for a reason of
//! ours (the database) is tried again later, one that can never apply (a
//! body that is not what its topic says) is set aside with its reason.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use event_pipeline::Outbox;
use service_runtime::error::ServiceError;
use sqlx::{Acquire, PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::applying::{self, Failure};
use crate::store::shopify_deliveries::{self, Claimed};

const BATCH: i64 = 32;
const POLL: Duration = Duration::from_secs(2);
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Attempts before a delivery that keeps failing is set aside.
const MAX_ATTEMPTS: i32 = 10;

#[derive(Clone)]
pub struct Processor {
    pool: PgPool,
    outbox: Outbox,
    wake: Arc<Notify>,
    /// Told when deliveries were applied, so linked bots learn of them.
    applied: Arc<Notify>,
}

impl Processor {
    pub fn new(pool: PgPool, outbox: Outbox, applied: Arc<Notify>) -> Self {
        Self {
            pool,
            outbox,
            wake: Arc::new(Notify::new()),
            applied,
        }
    }

    /// What a receiver on this replica notifies when it stored a delivery.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn spawn(self, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut purged = Instant::now();
            loop {
                while self.work_batch().await == BATCH as usize {}
                if purged.elapsed() > PURGE_EVERY {
                    purged = Instant::now();
                    if let Err(error) = shopify_deliveries::purge(&self.pool).await {
                        tracing::warn!(%error, "purging processed Shopify deliveries");
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// Claims and works one batch; how many deliveries it held. The batch
    /// commits once (one WAL flush rather than one per delivery); each
    /// delivery applies in a savepoint of its own, so one that fails
    /// leaves the others applied.
    async fn work_batch(&self) -> usize {
        let claimed = match shopify_deliveries::claim(&self.pool, BATCH).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "claiming Shopify deliveries");
                return 0;
            }
        };
        if claimed.is_empty() {
            return 0;
        }
        // On failure the batch's leases run out and any replica claims it again.
        if let Err(error) = self.work_all(&claimed).await {
            tracing::warn!(%error, "applying a batch of Shopify deliveries; it will be claimed again");
        }
        self.applied.notify_one();
        claimed.len()
    }

    async fn work_all(&self, claimed: &[Claimed]) -> Result<(), ServiceError> {
        let mut tx = self.pool.begin().await?;
        for delivery in claimed {
            let mut savepoint = Acquire::begin(&mut *tx).await?;
            match applying::apply(&mut savepoint, &self.outbox, delivery).await {
                Ok(()) => {
                    savepoint.commit().await?;
                    shopify_deliveries::finish(&mut tx, delivery, "").await?;
                }
                Err(failure) => {
                    savepoint.rollback().await?;
                    failed(&mut tx, delivery, failure).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Sets a delivery that cannot apply aside with its reason, or schedules
/// one that failed for a reason of ours to be tried again.
async fn failed(conn: &mut PgConnection, delivery: &Claimed, failure: Failure) -> Result<(), ServiceError> {
    let reason = match failure {
        Failure::Unusable(reason) => reason,
        Failure::Ours(error) if delivery.attempts >= MAX_ATTEMPTS => error.to_string(),
        Failure::Ours(error) => {
            let wait = chrono::Duration::seconds(2i64.pow(delivery.attempts.clamp(1, 12) as u32));
            tracing::warn!(%error, webhook = delivery.webhook_id, topic = delivery.topic, "applying a Shopify delivery; it will be retried");
            return shopify_deliveries::retry(conn, delivery, &error.to_string(), Utc::now() + wait).await;
        }
    };
    tracing::warn!(
        webhook = delivery.webhook_id,
        topic = delivery.topic,
        reason,
        "a Shopify delivery could not be applied"
    );
    shopify_deliveries::finish(conn, delivery, &reason).await
}
