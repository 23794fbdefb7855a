//! What bots must still be told: the `knowledge_clears` of connections
//! whose items must all go, and the `bot_retrains` due once a bot's
//! products have been quiet. Both are worked by any replica.

use std::time::Duration;

use ids::BotId;
use service_runtime::error::ServiceError;
use sqlx::{PgConnection, PgExecutor, PgPool};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A bot whose items of a connection must all go.
#[derive(Debug, sqlx::FromRow)]
pub struct Clear {
    pub workspace_id: String,
    pub integration_id: String,
    pub bot_id: String,
    /// Whose items go: [`source`] of the connection.
    pub source: String,
}

/// Whose items a connection's are, in every bot: its kind and id.
pub fn source(kind: &str, integration_id: &str) -> String {
    format!("{kind}:{integration_id}")
}

pub async fn clear_later(
    conn: &mut PgConnection,
    workspace_id: &str,
    (kind, integration_id): (&str, &str),
    bots: &[BotId],
) -> Result<()> {
    if bots.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO knowledge_clears (workspace_id, integration_id, bot_id, source)
         SELECT $1, $2, bot, $4 FROM UNNEST($3::text[]) AS bot
         ON CONFLICT (integration_id, bot_id) DO NOTHING",
    )
    .bind(workspace_id)
    .bind(integration_id)
    .bind(bots)
    .bind(source(kind, integration_id))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn clears<'e>(db: impl PgExecutor<'e>, limit: i64) -> Result<Vec<Clear>> {
    Ok(sqlx::query_as(
        "SELECT workspace_id, integration_id, bot_id, source FROM knowledge_clears ORDER BY created_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

pub async fn cleared<'e>(db: impl PgExecutor<'e>, clear: &Clear) -> Result<()> {
    sqlx::query("DELETE FROM knowledge_clears WHERE integration_id = $1 AND bot_id = $2")
        .bind(&clear.integration_id)
        .bind(&clear.bot_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Retrains the bot once `after` has passed with no further change.
pub async fn retrain_later<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    bot_id: &str,
    after: Duration,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO bot_retrains (workspace_id, bot_id, due_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (workspace_id, bot_id) DO UPDATE SET due_at = EXCLUDED.due_at",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(after.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// Takes the retrains that are due, up to `limit`: (workspace, bot).
pub async fn due_retrains(pool: &PgPool, limit: i64) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "DELETE FROM bot_retrains r USING (
             SELECT workspace_id, bot_id FROM bot_retrains WHERE due_at <= now()
             ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
         WHERE r.workspace_id = due.workspace_id AND r.bot_id = due.bot_id
         RETURNING r.workspace_id, r.bot_id",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Puts a retrain that could not be started back, unless a newer change
/// already scheduled one.
pub async fn retry_retrain<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    bot_id: &str,
    after: Duration,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO bot_retrains (workspace_id, bot_id, due_at)
         VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (workspace_id, bot_id) DO NOTHING",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(after.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}
