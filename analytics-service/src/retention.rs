//! Forgetting what is older than the retention, hourly, so every table
//! stays bounded however long the platform runs.

use std::time::Duration;

use service_runtime::shutdown::slept;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(3600);

/// (table, time column): rows older than the retention go.
const KEPT_FOR_RETENTION: &[(&str, &str)] = &[
    ("counts", "slot"),
    ("questions", "asked_at"),
    ("conversations", "started_at"),
    ("api_requests", "minute"),
    ("api_latency", "minute"),
    ("slow_requests", "at"),
    ("readiness", "minute"),
];

/// (table, time column): kept a week, long enough for any duplicate.
const KEPT_A_WEEK: &[(&str, &str)] = &[("counted_events", "counted_at"), ("usage_reports", "received_at")];

pub fn spawn(pool: PgPool, retention_days: u32, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            if let Err(error) = prune(&pool, retention_days).await {
                tracing::warn!(%error, "pruning old statistics failed; trying again in an hour");
            }
            if !slept(EVERY, &shutdown).await {
                return;
            }
        }
    });
}

async fn prune(pool: &PgPool, retention_days: u32) -> Result<(), sqlx::Error> {
    let tables = KEPT_FOR_RETENTION
        .iter()
        .map(|t| (t, retention_days))
        .chain(KEPT_A_WEEK.iter().map(|t| (t, 7)));
    for ((table, column), days) in tables {
        // Table and column names are this file's constants, never input.
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE {column} < now() - make_interval(days => $1)"
        ))
        .bind(days as i32)
        .execute(pool)
        .await?;
    }
    Ok(())
}
