//! The `training_jobs` table: a queue in PostgreSQL that every replica
//! works. A running job's worker holds a lease (`lease_until`) renewed with
//! every batch it writes; `attempts` doubles as the lease's token, so a
//! worker whose lease passed to another can no longer record anything.

use chrono::{DateTime, Utc};
use ids::{BotId, TrainingJobId};
use proto::chatbot::v1::TrainingJob;
use service_runtime::pagination::NewestFirst;
use service_runtime::telemetry::spans;
use sqlx::{PgConnection, PgExecutor, PgPool};
use tracing::Instrument;

use super::bots;
use crate::{
    chunking,
    error::{Error, Result},
    proto_convert::timestamp,
};

/// How long a worker's claim lasts without news from it.
pub const LEASE: &str = "30 seconds";

#[derive(Debug, sqlx::FromRow)]
pub struct JobRow {
    pub id: TrainingJobId,
    pub bot_id: BotId,
    pub status: String,
    pub version: i32,
    pub passages_indexed: i64,
    pub passages_total: i64,
    pub error: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, bot_id, status, version, passages_indexed, passages_total, error, created_at, started_at, finished_at";

impl From<JobRow> for TrainingJob {
    fn from(row: JobRow) -> Self {
        TrainingJob {
            id: row.id.into_string(),
            bot_id: row.bot_id.into_string(),
            status: row.status,
            version: row.version,
            passages_indexed: row.passages_indexed,
            passages_total: row.passages_total,
            error: row.error,
            created_at: Some(timestamp(row.created_at)),
            started_at: row.started_at.map(timestamp),
            finished_at: row.finished_at.map(timestamp),
        }
    }
}

/// A job a worker has claimed.
#[derive(Debug, sqlx::FromRow)]
pub struct Claimed {
    pub workspace_id: String,
    pub id: TrainingJobId,
    pub bot_id: BotId,
    pub version: i32,
    /// This claim's number: the lease's token.
    pub attempts: i32,
    pub deploy_when_trained: bool,
}

/// Queues a job for the bot's next version, which it deploys once trained
/// when `deploy_when_trained`.
pub async fn queue(
    conn: &mut PgConnection,
    workspace_id: &str,
    bot_id: &BotId,
    deploy_when_trained: bool,
) -> Result<JobRow> {
    let version = bots::next_version(&mut *conn, workspace_id, bot_id).await?;
    Ok(sqlx::query_as(&format!(
        "INSERT INTO training_jobs (workspace_id, id, bot_id, status, version, deploy_when_trained)
         VALUES ($1, $2, $3, 'queued', $4, $5)
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(TrainingJobId::generate())
    .bind(bot_id)
    .bind(version)
    .bind(deploy_when_trained)
    .fetch_one(conn)
    .instrument(spans::sql("INSERT", "training_jobs"))
    .await?)
}

pub async fn list(pool: &PgPool, workspace_id: &str, bot_id: &BotId, page: &NewestFirst) -> Result<Vec<JobRow>> {
    bots::page_of(
        pool,
        workspace_id,
        bot_id,
        page,
        &format!("SELECT {COLUMNS} FROM training_jobs"),
    )
    .await
}

pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    bot_id: &BotId,
    id: &TrainingJobId,
) -> Result<JobRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM training_jobs WHERE workspace_id = $1 AND bot_id = $2 AND id = $3"
    ))
    .bind(workspace_id)
    .bind(bot_id)
    .bind(id)
    .fetch_optional(db)
    .instrument(spans::sql("SELECT", "training_jobs"))
    .await?
    .ok_or_else(|| Error::not_found(TrainingJobId::KIND, id.as_str()))
}

/// The newest successfully trained version, or `requested` if it trained
/// successfully (0 asks for the newest).
pub async fn trained_version(
    conn: &mut PgConnection,
    workspace_id: &str,
    bot_id: &BotId,
    requested: i32,
) -> Result<Option<i32>> {
    Ok(sqlx::query_scalar(
        "SELECT max(version) FROM training_jobs
         WHERE workspace_id = $1 AND bot_id = $2 AND status = 'succeeded' AND ($3 = 0 OR version = $3)",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(requested)
    .fetch_one(conn)
    .instrument(spans::sql("SELECT", "training_jobs"))
    .await?)
}

/// The digest of the embedding model a succeeded version was trained with.
pub async fn embedding_model<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    bot_id: &BotId,
    version: i32,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar::<_, Option<String>>(
        "SELECT embedding_model FROM training_jobs
         WHERE workspace_id = $1 AND bot_id = $2 AND version = $3 AND status = 'succeeded'",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(version)
    .fetch_optional(db)
    .instrument(spans::sql("SELECT", "training_jobs"))
    .await?
    .flatten())
}

/// Claims the oldest queued job, or a running one whose lease lapsed.
pub async fn claim(pool: &PgPool) -> Result<Option<Claimed>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE training_jobs j
         SET status = 'running', started_at = coalesce(started_at, now()),
             lease_until = now() + interval '{LEASE}', attempts = attempts + 1
         FROM (SELECT workspace_id, id FROM training_jobs
               WHERE status IN ('queued', 'running')
                 AND (status = 'queued' OR lease_until < now())
               ORDER BY created_at
               LIMIT 1
               FOR UPDATE SKIP LOCKED) next
         WHERE j.workspace_id = next.workspace_id AND j.id = next.id
         RETURNING j.workspace_id, j.id, j.bot_id, j.version, j.attempts, j.deploy_when_trained"
    ))
    .fetch_optional(pool)
    .instrument(spans::sql("UPDATE", "training_jobs"))
    .await?)
}

/// Sets the job's expected passage count from the bot's knowledge.
pub async fn estimate_total(pool: &PgPool, job: &Claimed) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE training_jobs SET passages_total = (
             SELECT coalesce(sum(CASE WHEN kind = 'faq' THEN 1
                                 ELSE greatest(1, ceil(length(body) / {}.0)) END), 0)
             FROM knowledge_items WHERE workspace_id = $1 AND bot_id = $2)
         WHERE workspace_id = $1 AND id = $3",
        chunking::MAX_PASSAGE_CHARS
    ))
    .bind(&job.workspace_id)
    .bind(&job.bot_id)
    .bind(&job.id)
    .execute(pool)
    .instrument(spans::sql("UPDATE", "training_jobs"))
    .await?;
    Ok(())
}

/// Records progress and renews the lease, inside the transaction that
/// wrote the passages; fails if the lease passed to another worker.
pub async fn progress(conn: &mut PgConnection, job: &Claimed, indexed: i64) -> Result<()> {
    let owned = sqlx::query(&format!(
        "UPDATE training_jobs
         SET passages_indexed = $4, passages_total = greatest(passages_total, $4),
             lease_until = now() + interval '{LEASE}'
         WHERE workspace_id = $1 AND id = $2 AND status = 'running' AND attempts = $3"
    ))
    .bind(&job.workspace_id)
    .bind(&job.id)
    .bind(job.attempts)
    .bind(indexed)
    .execute(conn)
    .instrument(spans::sql("UPDATE", "training_jobs"))
    .await?
    .rows_affected();
    if owned == 0 {
        return Err(Error::Internal("the job's lease passed to another worker".into()));
    }
    Ok(())
}

/// How a job ended.
pub enum Outcome<'a> {
    Succeeded {
        passages: i64,
        embedding_model: Option<&'a str>,
    },
    Failed {
        reason: &'a str,
    },
}

/// Records the outcome; false when this worker no longer owns the job.
pub async fn finish(conn: &mut PgConnection, job: &Claimed, outcome: &Outcome<'_>) -> Result<bool> {
    let (status, passages, reason, model) = match outcome {
        Outcome::Succeeded {
            passages,
            embedding_model,
        } => ("succeeded", *passages, "", *embedding_model),
        Outcome::Failed { reason } => ("failed", 0, *reason, None),
    };
    let owned = sqlx::query(
        "UPDATE training_jobs
         SET status = $4, passages_indexed = $5, passages_total = $5, error = $6,
             finished_at = now(), lease_until = NULL, embedding_model = $7
         WHERE workspace_id = $1 AND id = $2 AND status = 'running' AND attempts = $3",
    )
    .bind(&job.workspace_id)
    .bind(&job.id)
    .bind(job.attempts)
    .bind(status)
    .bind(passages)
    .bind(reason)
    .bind(model)
    .execute(conn)
    .instrument(spans::sql("UPDATE", "training_jobs"))
    .await?
    .rows_affected();
    Ok(owned == 1)
}
