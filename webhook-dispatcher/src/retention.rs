//! Forgetting what is older than `WEBHOOKS_RETENTION_DAYS` (30): finished
//! deliveries with their attempts, then events no delivery refers to any
//! more. Hourly, in batches of 1000 rows, each its own short
//! statement, so a large backlog never holds locks the consumer or the
//! senders wait on. Pending deliveries stay whatever their age.

use std::time::Duration;

use service_runtime::retention::{in_batches, spawn_hourly};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub fn spawn(pool: PgPool, retention: Duration, shutdown: CancellationToken) {
    let stop = shutdown.clone();
    spawn_hourly("webhook history", shutdown, move || {
        let (pool, stop) = (pool.clone(), stop.clone());
        async move {
            let removed = prune(&pool, retention, &stop).await?;
            if removed.any() {
                tracing::info!(
                    deliveries = removed.deliveries,
                    events = removed.events,
                    "pruned webhook history"
                );
            }
            Ok(())
        }
    });
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub deliveries: u64,
    pub events: u64,
}

impl Removed {
    fn any(&self) -> bool {
        self.deliveries > 0 || self.events > 0
    }
}

/// Removes everything older than `retention`, batch by batch, until none
/// is left or `shutdown`.
pub async fn prune(pool: &PgPool, retention: Duration, shutdown: &CancellationToken) -> Result<Removed, sqlx::Error> {
    // Attempts go with their deliveries (ON DELETE CASCADE).
    const DELIVERIES: &str = "DELETE FROM deliveries WHERE id IN (
             SELECT id FROM deliveries
             WHERE status <> 'pending' AND updated_at < now() - make_interval(secs => $1)
             LIMIT $2)";
    const EVENTS: &str = "DELETE FROM events WHERE id IN (
             SELECT e.id FROM events e
             WHERE e.received_at < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
             LIMIT $2)";
    Ok(Removed {
        deliveries: in_batches(pool, DELIVERIES, retention, shutdown).await?,
        events: in_batches(pool, EVENTS, retention, shutdown).await?,
    })
}
