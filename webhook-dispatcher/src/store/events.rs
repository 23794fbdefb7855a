//! The `events` table: every event the dispatcher received (or made, for a
//! test), kept as the exact bytes that are signed and sent, so deliveries
//! can be retried and replayed long after the broker forgot them.

use chrono::{DateTime, Utc};
use event_pipeline::Envelope;
use ids::EventId;
use sqlx::PgExecutor;

use crate::error::Result;

/// Stores an event made here (a test event).
pub async fn insert<'e>(db: impl PgExecutor<'e>, envelope: &Envelope) -> Result<()> {
    sqlx::query("INSERT INTO events (id, workspace_id, event_type, body) VALUES ($1, $2, $3, $4)")
        .bind(&envelope.id)
        .bind(&envelope.workspace_id)
        .bind(&envelope.event_type)
        .bind(&envelope.body)
        .execute(db)
        .await?;
    Ok(())
}

/// The workspace's events received since `since`, oldest first: id and
/// type.
pub async fn since<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    since: DateTime<Utc>,
) -> Result<Vec<(EventId, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, event_type FROM events WHERE workspace_id = $1 AND received_at >= $2 ORDER BY received_at",
    )
    .bind(workspace_id)
    .bind(since)
    .fetch_all(db)
    .await?)
}
