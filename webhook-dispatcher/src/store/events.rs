//! The `events` table: every event the dispatcher received (or made, for a
//! test), kept as the exact bytes that are signed and sent, so deliveries
//! can be retried and replayed long after the broker forgot them.

use event_pipeline::Envelope;
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
