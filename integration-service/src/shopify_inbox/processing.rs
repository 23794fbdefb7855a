//! Working stored deliveries, on every replica: at once when this replica
//! stored one, every few seconds for the others'. Each is applied in a
//! transaction of its own; one that fails for a reason of ours (the
//! database) is tried again later, one that can never apply (a body that is
//! not what its topic says) is set aside with its reason.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use event_pipeline::Outbox;
use sqlx::PgPool;
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

    /// Claims and works one batch; how many deliveries it held.
    async fn work_batch(&self) -> usize {
        let claimed = match shopify_deliveries::claim(&self.pool, BATCH).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "claiming Shopify deliveries");
                return 0;
            }
        };
        let count = claimed.len();
        for delivery in claimed {
            self.work(delivery).await;
        }
        if count > 0 {
            self.applied.notify_one();
        }
        count
    }

    async fn work(&self, delivery: Claimed) {
        let outcome = match self.pool.begin().await {
            Ok(mut tx) => match applying::apply(&mut tx, &self.outbox, &delivery).await {
                Ok(()) => shopify_deliveries::finish(&mut tx, &delivery, "")
                    .await
                    .map_err(Failure::Ours)
                    .map(|()| tx),
                Err(failure) => Err(failure),
            },
            Err(error) => Err(Failure::Ours(error.into())),
        };
        let result = match outcome {
            Ok(tx) => tx.commit().await.map_err(|e| Failure::Ours(e.into())),
            Err(failure) => Err(failure),
        };
        match result {
            Ok(()) => {}
            Err(Failure::Unusable(reason)) => self.set_aside(&delivery, &reason).await,
            Err(Failure::Ours(error)) if delivery.attempts >= MAX_ATTEMPTS => {
                self.set_aside(&delivery, &error.to_string()).await;
            }
            Err(Failure::Ours(error)) => {
                let wait = chrono::Duration::seconds(2i64.pow(delivery.attempts.clamp(1, 12) as u32));
                tracing::warn!(%error, webhook = delivery.webhook_id, topic = delivery.topic, "applying a Shopify delivery; it will be retried");
                if let Err(error) =
                    shopify_deliveries::retry(&self.pool, &delivery, &error.to_string(), Utc::now() + wait).await
                {
                    tracing::warn!(%error, "scheduling a Shopify delivery's retry");
                }
            }
        }
    }

    async fn set_aside(&self, delivery: &Claimed, reason: &str) {
        tracing::warn!(
            webhook = delivery.webhook_id,
            topic = delivery.topic,
            reason,
            "a Shopify delivery could not be applied"
        );
        let finished = match self.pool.acquire().await {
            Ok(mut conn) => shopify_deliveries::finish(&mut conn, delivery, reason).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = finished {
            tracing::warn!(%error, "setting a Shopify delivery aside");
        }
    }
}
