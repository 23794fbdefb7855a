//! The `replays` table: each replay's range, progress and counts.

use chrono::{DateTime, Utc};
use ids::{EndpointId, EventId, ReplayId};
use proto::webhooks::v1::Replay;
use service_runtime::time::timestamp;
use sqlx::{PgConnection, PgExecutor};

use crate::error::{Error, Result};

#[derive(Debug, sqlx::FromRow)]
pub struct ReplayRow {
    pub id: ReplayId,
    pub workspace_id: String,
    pub endpoint_id: EndpointId,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub status: String,
    pub after_received: Option<DateTime<Utc>>,
    pub after_event: Option<String>,
    pub examined: i64,
    pub replayed: i64,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, workspace_id, endpoint_id, since, until, status, after_received, after_event, \
                       examined, replayed, created_at, finished_at";

impl From<ReplayRow> for Replay {
    fn from(row: ReplayRow) -> Self {
        let capped = row.status == "capped";
        Replay {
            id: row.id.into_string(),
            endpoint_id: row.endpoint_id.into_string(),
            since: Some(timestamp(row.since)),
            until: Some(timestamp(row.until)),
            status: row.status,
            examined: row.examined,
            replayed: row.replayed,
            resume_since: row.after_received.filter(|_| capped).map(timestamp),
            created_at: Some(timestamp(row.created_at)),
            finished_at: row.finished_at.map(timestamp),
        }
    }
}

/// A new running replay of the endpoint's events from `since` to now.
pub async fn start<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    endpoint_id: &EndpointId,
    since: DateTime<Utc>,
) -> Result<ReplayRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO replays (id, workspace_id, endpoint_id, since, until, status)
         VALUES ($1, $2, $3, $4, now(), 'running') RETURNING {COLUMNS}"
    ))
    .bind(ReplayId::generate())
    .bind(workspace_id)
    .bind(endpoint_id)
    .bind(since)
    .fetch_one(db)
    .await?)
}

pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    endpoint_id: &EndpointId,
    id: &ReplayId,
) -> Result<ReplayRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM replays WHERE workspace_id = $1 AND endpoint_id = $2 AND id = $3"
    ))
    .bind(workspace_id)
    .bind(endpoint_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(ReplayId::KIND, id.as_str()))
}

/// The running replay that waited longest, locked for this transaction;
/// replicas working at once each take another.
pub async fn claim(conn: &mut PgConnection) -> Result<Option<ReplayRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM replays WHERE status = 'running'
         ORDER BY updated_at LIMIT 1 FOR UPDATE SKIP LOCKED"
    ))
    .fetch_optional(conn)
    .await?)
}

/// The next `limit` events of the replay's range after its position:
/// (received_at, id, type), in order.
pub async fn next_events(
    conn: &mut PgConnection,
    replay: &ReplayRow,
    limit: i64,
) -> Result<Vec<(DateTime<Utc>, EventId, String)>> {
    Ok(sqlx::query_as(
        "SELECT received_at, id, event_type FROM events
         WHERE workspace_id = $1 AND received_at >= $2 AND received_at <= $3
           AND ($4::timestamptz IS NULL OR (received_at, id) > ($4, $5))
         ORDER BY received_at, id LIMIT $6",
    )
    .bind(&replay.workspace_id)
    .bind(replay.since)
    .bind(replay.until)
    .bind(replay.after_received)
    .bind(replay.after_event.as_deref().unwrap_or(""))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Where a page left the replay.
pub struct Progress<'a> {
    pub after: Option<(DateTime<Utc>, &'a EventId)>,
    pub examined: i64,
    pub replayed: i64,
    /// running, done or capped.
    pub status: &'static str,
}

pub async fn advance(conn: &mut PgConnection, id: &ReplayId, progress: &Progress<'_>) -> Result<()> {
    sqlx::query(
        "UPDATE replays SET
             after_received = coalesce($2, after_received), after_event = coalesce($3, after_event),
             examined = examined + $4, replayed = replayed + $5, status = $6, updated_at = now(),
             finished_at = CASE WHEN $6 = 'running' THEN NULL ELSE now() END
         WHERE id = $1",
    )
    .bind(id)
    .bind(progress.after.map(|(at, _)| at))
    .bind(progress.after.map(|(_, event)| event.as_str()))
    .bind(progress.examined)
    .bind(progress.replayed)
    .bind(progress.status)
    .execute(conn)
    .await?;
    Ok(())
}
