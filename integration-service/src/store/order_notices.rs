//! The `order_notices` table: shipping news waiting to be told to
//! customers, worked by any replica.

use service_runtime::error::ServiceError;
use sqlx::{PgConnection, PgExecutor};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Notice {
    pub workspace_id: String,
    pub integration_id: String,
    pub order_id: i64,
    pub tracking_number: String,
    pub customer_email: String,
    pub customer_id: Option<i64>,
    pub content: String,
}

impl Notice {
    /// The same for every attempt, so a retry never posts twice.
    pub fn idempotency_key(&self) -> String {
        format!(
            "shopify-shipped:{}:{}:{}",
            self.integration_id, self.order_id, self.tracking_number
        )
    }
}

/// Queues a notice unless this tracking number was already told.
pub async fn queue(conn: &mut PgConnection, notice: &Notice) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_notices
             (integration_id, order_id, tracking_number, workspace_id, customer_email, customer_id, content)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING",
    )
    .bind(&notice.integration_id)
    .bind(notice.order_id)
    .bind(&notice.tracking_number)
    .bind(&notice.workspace_id)
    .bind(&notice.customer_email)
    .bind(notice.customer_id)
    .bind(&notice.content)
    .execute(conn)
    .await?;
    Ok(())
}

/// Notices due now, each leased for a minute to the caller.
pub async fn due<'e>(db: impl PgExecutor<'e>, limit: i64) -> Result<Vec<Notice>> {
    Ok(sqlx::query_as(
        "UPDATE order_notices SET next_attempt_at = now() + interval '1 minute', attempts = attempts + 1
         WHERE (integration_id, order_id, tracking_number) IN (
             SELECT integration_id, order_id, tracking_number FROM order_notices
             WHERE next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING workspace_id, integration_id, order_id, tracking_number, customer_email, customer_id, content",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

pub async fn done<'e>(db: impl PgExecutor<'e>, notice: &Notice) -> Result<()> {
    sqlx::query("DELETE FROM order_notices WHERE integration_id = $1 AND order_id = $2 AND tracking_number = $3")
        .bind(&notice.integration_id)
        .bind(notice.order_id)
        .bind(&notice.tracking_number)
        .execute(db)
        .await?;
    Ok(())
}

/// Tries the notice again after a wait that doubles with each attempt;
/// drops it after `max_attempts`.
pub async fn retry_later<'e>(db: impl PgExecutor<'e>, notice: &Notice, max_attempts: i32) -> Result<()> {
    sqlx::query(
        "WITH given_up AS (
             DELETE FROM order_notices
             WHERE integration_id = $1 AND order_id = $2 AND tracking_number = $3 AND attempts >= $4)
         UPDATE order_notices SET next_attempt_at = now() + make_interval(secs => 5 * 2 ^ least(attempts, 14))
         WHERE integration_id = $1 AND order_id = $2 AND tracking_number = $3 AND attempts < $4",
    )
    .bind(&notice.integration_id)
    .bind(notice.order_id)
    .bind(&notice.tracking_number)
    .bind(max_attempts)
    .execute(db)
    .await?;
    Ok(())
}
