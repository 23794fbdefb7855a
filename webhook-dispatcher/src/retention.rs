//! Forgetting what is older than `WEBHOOKS_RETENTION_DAYS` (30): finished
//! deliveries with their attempts, then events no delivery refers to any
//! more. Hourly, in batches of [`BATCH`] rows, each its own short
//! statement, so a large backlog never holds locks the consumer or the
//! senders wait on. Pending deliveries stay whatever their age.

use std::time::Duration;

use service_runtime::shutdown::slept;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(3600);
pub const BATCH: i64 = 1000;
/// A pause between batches, so pruning never competes with delivery for
/// the database.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);

pub fn spawn(pool: PgPool, retention: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            match prune(&pool, retention, &shutdown).await {
                Ok(removed) if removed.any() => tracing::info!(
                    deliveries = removed.deliveries,
                    events = removed.events,
                    "pruned webhook history"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "pruning webhook history failed; trying again in an hour"),
            }
            if !slept(EVERY, &shutdown).await {
                return;
            }
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
    let seconds = retention.as_secs_f64();
    let mut removed = Removed::default();
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
    for (statement, count) in [(DELIVERIES, &mut removed.deliveries), (EVENTS, &mut removed.events)] {
        loop {
            let batch = sqlx::query(statement)
                .bind(seconds)
                .bind(BATCH)
                .execute(pool)
                .await?
                .rows_affected();
            *count += batch;
            if batch < BATCH as u64 || shutdown.is_cancelled() {
                break;
            }
            tokio::time::sleep(BETWEEN_BATCHES).await;
        }
    }
    Ok(removed)
}
