//! The `sync_runs` table: reconciliations of a connection with its store,
//! queued on request or on schedule and worked by any replica under a
//! lease. A run keeps the cursor after its last stored page, so it goes on
//! from there after a failure or a replica's death.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ids::SyncRunId;
use serde::Serialize;
use service_runtime::{error::ServiceError, pagination::NewestFirst};
use sqlx::{PgConnection, PgExecutor};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct SyncRunRow {
    pub id: String,
    #[serde(skip)]
    pub workspace_id: String,
    pub integration_id: String,
    pub trigger: String,
    pub status: String,
    pub phase: String,
    #[serde(skip)]
    pub cursor: Option<String>,
    #[serde(skip)]
    pub snapshot_at: Option<DateTime<Utc>>,
    pub pages: i32,
    #[sqlx(flatten)]
    pub counts: Counts,
    pub attempts: i32,
    pub last_error: String,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    /// The claim of the worker holding a running run.
    #[serde(skip)]
    pub lease: Option<String>,
}

/// What a run did to the rows it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow, Serialize)]
pub struct Counts {
    pub created: i32,
    pub updated: i32,
    pub removed: i32,
    pub failed: i32,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.created += other.created;
        self.updated += other.updated;
        self.removed += other.removed;
        self.failed += other.failed;
    }
}

const COLUMNS: &str = "id, workspace_id, integration_id, trigger, status, phase, cursor, snapshot_at, pages, \
    created, updated, removed, failed, attempts, last_error, queued_at, started_at, finished_at, next_attempt_at, lease";

/// Queues a run on request; the run already open when there is one.
pub async fn request(conn: &mut PgConnection, workspace_id: &str, integration_id: &str) -> Result<SyncRunRow> {
    let queued: Option<SyncRunRow> = sqlx::query_as(&format!(
        "INSERT INTO sync_runs (id, workspace_id, integration_id, trigger, status)
         VALUES ($1, $2, $3, 'request', 'queued')
         ON CONFLICT (integration_id) WHERE status IN ('queued', 'running') DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(SyncRunId::generate().as_str())
    .bind(workspace_id)
    .bind(integration_id)
    .fetch_optional(&mut *conn)
    .await?;
    match queued {
        Some(run) => Ok(run),
        None => Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sync_runs
             WHERE workspace_id = $1 AND integration_id = $2 AND status IN ('queued', 'running')"
        ))
        .bind(workspace_id)
        .bind(integration_id)
        .fetch_one(conn)
        .await?),
    }
}

/// Queues a run for every connected store whose last run finished more
/// than `every` ago, or that never ran; how many were queued.
pub async fn schedule_due(conn: &mut PgConnection, every: Duration) -> Result<u64> {
    let due: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.workspace_id, i.id FROM integrations i
         WHERE i.kind = 'shopify' AND i.status = 'connected'
           AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.integration_id = i.id
                           AND (r.status IN ('queued', 'running') OR r.finished_at > now() - $1::interval))
         LIMIT 100",
    )
    .bind(every)
    .fetch_all(&mut *conn)
    .await?;
    let mut queued = 0;
    for (workspace_id, integration_id) in due {
        queued += sqlx::query(
            "INSERT INTO sync_runs (id, workspace_id, integration_id, trigger, status)
             VALUES ($1, $2, $3, 'schedule', 'queued')
             ON CONFLICT (integration_id) WHERE status IN ('queued', 'running') DO NOTHING",
        )
        .bind(SyncRunId::generate().as_str())
        .bind(workspace_id)
        .bind(integration_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(queued)
}

/// Takes the run due first, or one whose worker's lease ran out, under a
/// new lease.
pub async fn claim<'e>(db: impl PgExecutor<'e>, lease_for: Duration) -> Result<Option<SyncRunRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE sync_runs SET status = 'running', lease = gen_random_uuid()::text,
                              lease_until = now() + $1::interval,
                              attempts = attempts + 1, started_at = coalesce(started_at, now())
         WHERE id = (SELECT r.id FROM sync_runs r JOIN integrations i ON i.id = r.integration_id
                     WHERE ((r.status = 'queued' AND r.next_attempt_at <= now())
                            OR (r.status = 'running' AND r.lease_until < now()))
                       AND i.kind = 'shopify'
                     ORDER BY r.next_attempt_at LIMIT 1 FOR UPDATE OF r SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(lease_for)
    .fetch_optional(db)
    .await?)
}

/// The run's state after one more stored page: where the next page starts
/// and what the pages did. False when the lease was lost to another worker
/// (the transaction must then be rolled back).
pub struct Progress<'a> {
    pub phase: &'a str,
    pub cursor: Option<&'a str>,
    pub snapshot_at: DateTime<Utc>,
    pub counts: Counts,
}

pub async fn record_progress(
    conn: &mut PgConnection,
    run_id: &str,
    lease: &str,
    lease_for: Duration,
    progress: &Progress<'_>,
) -> Result<bool> {
    let counts = progress.counts;
    Ok(sqlx::query(
        "UPDATE sync_runs SET phase = $3, cursor = $4, snapshot_at = $5, pages = pages + 1,
             created = created + $6, updated = updated + $7, removed = removed + $8, failed = failed + $9,
             lease_until = now() + $10::interval
         WHERE id = $1 AND lease = $2 AND status = 'running'",
    )
    .bind(run_id)
    .bind(lease)
    .bind(progress.phase)
    .bind(progress.cursor)
    .bind(progress.snapshot_at)
    .bind(counts.created)
    .bind(counts.updated)
    .bind(counts.removed)
    .bind(counts.failed)
    .bind(lease_for)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Marks the run completed (if the lease is still ours) and the
/// connection synced; the finished run.
pub async fn complete(conn: &mut PgConnection, run_id: &str, lease: &str) -> Result<Option<SyncRunRow>> {
    let run: Option<SyncRunRow> = sqlx::query_as(&format!(
        "UPDATE sync_runs SET status = 'completed', finished_at = now(), lease = NULL, last_error = ''
         WHERE id = $1 AND lease = $2 AND status = 'running'
         RETURNING {COLUMNS}"
    ))
    .bind(run_id)
    .bind(lease)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(run) = &run {
        sqlx::query("UPDATE integrations SET last_sync_at = $2, last_error = '' WHERE id = $1")
            .bind(&run.integration_id)
            .bind(run.finished_at)
            .execute(conn)
            .await?;
    }
    Ok(run)
}

/// Records why the attempt failed: the run waits until `retry_at` and goes
/// on from its last stored page, or (`retry_at` None) is given up. The
/// connection shows the reason either way.
pub async fn fail(
    conn: &mut PgConnection,
    run_id: &str,
    lease: &str,
    reason: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<Option<SyncRunRow>> {
    let run: Option<SyncRunRow> = sqlx::query_as(&format!(
        "UPDATE sync_runs SET last_error = $3, lease = NULL,
             status = CASE WHEN $4::timestamptz IS NULL THEN 'failed' ELSE 'queued' END,
             next_attempt_at = coalesce($4, next_attempt_at),
             finished_at = CASE WHEN $4::timestamptz IS NULL THEN now() END
         WHERE id = $1 AND lease = $2 AND status = 'running'
         RETURNING {COLUMNS}"
    ))
    .bind(run_id)
    .bind(lease)
    .bind(reason)
    .bind(retry_at)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(run) = &run {
        sqlx::query("UPDATE integrations SET last_error = $2 WHERE id = $1")
            .bind(&run.integration_id)
            .bind(reason)
            .execute(conn)
            .await?;
    }
    Ok(run)
}

/// Adds what one read of a workspace's database did to its open run, if
/// one was asked for.
pub async fn count_database_read(conn: &mut PgConnection, integration_id: &str, counts: &Counts) -> Result<()> {
    sqlx::query(
        "UPDATE sync_runs SET status = 'running', started_at = coalesce(started_at, now()), pages = pages + 1,
             created = created + $2, updated = updated + $3
         WHERE integration_id = $1 AND status IN ('queued', 'running')",
    )
    .bind(integration_id)
    .bind(counts.created)
    .bind(counts.updated)
    .execute(conn)
    .await?;
    Ok(())
}

/// Completes a database's open run once its reads caught up and its ids
/// were compared (`removed` rows gone); the finished run, if one was open.
pub async fn complete_database(
    conn: &mut PgConnection,
    integration_id: &str,
    removed: i32,
) -> Result<Option<SyncRunRow>> {
    let run: Option<SyncRunRow> = sqlx::query_as(&format!(
        "UPDATE sync_runs SET status = 'completed', finished_at = now(), removed = removed + $2, last_error = '',
             started_at = coalesce(started_at, now())
         WHERE integration_id = $1 AND status IN ('queued', 'running')
         RETURNING {COLUMNS}"
    ))
    .bind(integration_id)
    .bind(removed)
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query("UPDATE integrations SET last_sync_at = now(), last_error = '' WHERE id = $1")
        .bind(integration_id)
        .execute(conn)
        .await?;
    Ok(run)
}

/// Fails a database's open run with the reason its read failed.
pub async fn fail_database(conn: &mut PgConnection, integration_id: &str, reason: &str) -> Result<Option<SyncRunRow>> {
    let run: Option<SyncRunRow> = sqlx::query_as(&format!(
        "UPDATE sync_runs SET status = 'failed', finished_at = now(), last_error = $2
         WHERE integration_id = $1 AND status IN ('queued', 'running')
         RETURNING {COLUMNS}"
    ))
    .bind(integration_id)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query("UPDATE integrations SET last_error = $2 WHERE id = $1")
        .bind(integration_id)
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(run)
}

/// Ends a run whose connection is gone or no longer connected.
pub async fn drop_run<'e>(db: impl PgExecutor<'e>, run_id: &str, reason: &str) -> Result<()> {
    sqlx::query(
        "UPDATE sync_runs SET status = 'failed', last_error = $2, lease = NULL, finished_at = now()
         WHERE id = $1 AND status = 'running'",
    )
    .bind(run_id)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(())
}

/// A connection's runs, newest first.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    integration_id: &str,
    page: &NewestFirst,
) -> Result<Vec<SyncRunRow>> {
    let select = format!("SELECT * FROM (SELECT {COLUMNS}, queued_at AS created_at FROM sync_runs) r");
    super::connection_page(db, &select, workspace_id, integration_id, page).await
}
