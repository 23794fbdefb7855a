//! Forgetting old rows in the background: one statement run again and
//! again over small batches, each its own short transaction, so a large
//! backlog never holds locks that requests wait on.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::shutdown::slept;

/// Rows a statement touches at most per run.
pub const BATCH: i64 = 1000;
/// How often pruning runs.
pub const EVERY: Duration = Duration::from_secs(3600);
/// A pause between batches, so pruning never competes with requests for
/// the database.
const BETWEEN_BATCHES: Duration = Duration::from_millis(50);

/// Runs `statement` (which takes the age in seconds as `$1` and the batch
/// size as `$2`, and touches at most that many rows) until a batch comes
/// back short or `shutdown`; the rows touched.
pub async fn in_batches(
    pool: &PgPool,
    statement: &str,
    older_than: Duration,
    shutdown: &CancellationToken,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let batch = sqlx::query(statement)
            .bind(older_than.as_secs_f64())
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected();
        total += batch;
        if batch < BATCH as u64 || shutdown.is_cancelled() {
            return Ok(total);
        }
        tokio::time::sleep(BETWEEN_BATCHES).await;
    }
}

/// Runs `prune` now and then every [`EVERY`] until `shutdown`, logging a
/// failure and trying again at the next turn.
pub fn spawn_hourly<F, Fut>(what: &'static str, shutdown: CancellationToken, prune: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), sqlx::Error>> + Send,
{
    tokio::spawn(async move {
        loop {
            if let Err(error) = prune().await {
                tracing::warn!(%error, what, "pruning failed; trying again in an hour");
            }
            if !slept(EVERY, &shutdown).await {
                return;
            }
        }
    });
}
