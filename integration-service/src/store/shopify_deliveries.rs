//! The `shopify_deliveries` table: Shopify's webhook deliveries, stored
//! once per webhook id before they are answered and worked afterwards by
//! any replica. A claimed delivery's `next_attempt_at` is its lease, a
//! failed one's its retry time.

use chrono::{DateTime, Utc};
use service_runtime::error::ServiceError;
use sqlx::{PgConnection, PgPool};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// How long a worker may take over a delivery before another may.
const LEASE: &str = "1 minute";
/// Processed deliveries are kept this long, so a late retry of one is still
/// recognised as a duplicate (Shopify retries for 48 hours).
const KEEP: &str = "7 days";

pub struct NewDelivery<'a> {
    pub integration_id: &'a str,
    pub webhook_id: &'a str,
    pub workspace_id: &'a str,
    pub topic: &'a str,
    pub triggered_at: DateTime<Utc>,
    pub body: &'a [u8],
}

/// Stores a delivery; false when its webhook id was stored before.
pub async fn insert(pool: &PgPool, new: NewDelivery<'_>) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO shopify_deliveries (integration_id, webhook_id, workspace_id, topic, triggered_at, body)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (integration_id, webhook_id) DO NOTHING",
    )
    .bind(new.integration_id)
    .bind(new.webhook_id)
    .bind(new.workspace_id)
    .bind(new.topic)
    .bind(new.triggered_at)
    .bind(new.body)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A delivery taken up by a worker.
#[derive(Debug, sqlx::FromRow)]
pub struct Claimed {
    pub integration_id: String,
    pub webhook_id: String,
    pub workspace_id: String,
    pub topic: String,
    pub triggered_at: DateTime<Utc>,
    pub body: Vec<u8>,
    pub attempts: i32,
}

/// Claims up to `limit` due deliveries, oldest news first.
pub async fn claim(pool: &PgPool, limit: i64) -> Result<Vec<Claimed>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE shopify_deliveries d
         SET next_attempt_at = now() + interval '{LEASE}', attempts = attempts + 1
         FROM (SELECT integration_id, webhook_id FROM shopify_deliveries
               WHERE processed_at IS NULL AND next_attempt_at <= now()
               ORDER BY triggered_at
               LIMIT $1
               FOR UPDATE SKIP LOCKED) due
         WHERE d.integration_id = due.integration_id AND d.webhook_id = due.webhook_id
         RETURNING d.integration_id, d.webhook_id, d.workspace_id, d.topic, d.triggered_at, d.body, d.attempts"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Marks a delivery done, with why it could not be applied if it could not
/// (a permanent failure is done too: retrying cannot help).
pub async fn finish(conn: &mut PgConnection, delivery: &Claimed, error: &str) -> Result<()> {
    sqlx::query(
        "UPDATE shopify_deliveries SET processed_at = now(), last_error = $3
         WHERE integration_id = $1 AND webhook_id = $2",
    )
    .bind(&delivery.integration_id)
    .bind(&delivery.webhook_id)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Schedules another attempt at `retry_at`.
pub async fn retry(conn: &mut PgConnection, delivery: &Claimed, error: &str, retry_at: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE shopify_deliveries SET next_attempt_at = $3, last_error = $4
         WHERE integration_id = $1 AND webhook_id = $2",
    )
    .bind(&delivery.integration_id)
    .bind(&delivery.webhook_id)
    .bind(retry_at)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets deliveries processed long enough ago; how many.
pub async fn purge(pool: &PgPool) -> Result<u64> {
    Ok(sqlx::query(&format!(
        "DELETE FROM shopify_deliveries WHERE processed_at < now() - interval '{KEEP}'"
    ))
    .execute(pool)
    .await?
    .rows_affected())
}
