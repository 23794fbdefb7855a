//! The `passages` table: the immutable snapshot of a bot's knowledge that
//! one trained version answers from, FAQ vectors included. Training writes
//! a version's passages; replicas load them into their indexes.

use ids::BotId;
use service_runtime::telemetry::spans;
use sqlx::{PgExecutor, PgPool};
use tracing::Instrument;

use super::training_jobs::{self, Claimed};
use crate::error::Result;

/// A passage as stored. Vectors are little-endian f32s. The retrieval
/// index treats the item id as an opaque citation.
#[derive(sqlx::FromRow)]
pub struct PassageRow {
    pub item_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// An FAQ question's sentence vector.
    pub embedding: Option<Vec<u8>>,
    /// The vector of an FAQ question read with its answer.
    pub pair_embedding: Option<Vec<u8>>,
}

/// Removes what an earlier, interrupted attempt wrote for the job's version.
pub async fn clear_version(pool: &PgPool, job: &Claimed) -> Result<()> {
    sqlx::query("DELETE FROM passages WHERE workspace_id = $1 AND bot_id = $2 AND version = $3")
        .bind(&job.workspace_id)
        .bind(&job.bot_id)
        .bind(job.version)
        .execute(pool)
        .instrument(spans::sql("DELETE", "passages"))
        .await?;
    Ok(())
}

/// A passage to write, borrowed from training's own.
pub struct NewPassage<'a> {
    pub item_id: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub embedding: Option<Vec<u8>>,
    pub pair_embedding: Option<Vec<u8>>,
}

/// Writes one batch of the job's passages, numbered from `first_ordinal`,
/// and commits it with the job's progress and a renewed lease.
pub async fn write_batch(pool: &PgPool, job: &Claimed, first_ordinal: usize, batch: &[NewPassage<'_>]) -> Result<()> {
    let ordinals: Vec<i32> = (first_ordinal..first_ordinal + batch.len()).map(|n| n as i32).collect();
    let item_ids: Vec<&str> = batch.iter().map(|p| p.item_id).collect();
    let kinds: Vec<&str> = batch.iter().map(|p| p.kind).collect();
    let titles: Vec<&str> = batch.iter().map(|p| p.title).collect();
    let bodies: Vec<&str> = batch.iter().map(|p| p.body).collect();
    let questions: Vec<Option<&[u8]>> = batch.iter().map(|p| p.embedding.as_deref()).collect();
    let pairs: Vec<Option<&[u8]>> = batch.iter().map(|p| p.pair_embedding.as_deref()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO passages (workspace_id, bot_id, version, ordinal, item_id, kind, title, body,
                               embedding, pair_embedding)
         SELECT $1, $2, $3, t.*
         FROM UNNEST($4::int[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[], $10::bytea[]) AS t",
    )
    .bind(&job.workspace_id)
    .bind(&job.bot_id)
    .bind(job.version)
    .bind(&ordinals)
    .bind(&item_ids)
    .bind(&kinds)
    .bind(&titles)
    .bind(&bodies)
    .bind(&questions)
    .bind(&pairs)
    .execute(&mut *tx)
    .instrument(spans::sql("INSERT", "passages"))
    .await?;
    training_jobs::progress(&mut tx, job, (first_ordinal + batch.len()) as i64).await?;
    tx.commit().await?;
    Ok(())
}

/// A trained version's passages, in order.
pub async fn of_version<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    bot_id: &BotId,
    version: i32,
) -> Result<Vec<PassageRow>> {
    Ok(sqlx::query_as(
        "SELECT item_id, kind, title, body, embedding, pair_embedding FROM passages
         WHERE workspace_id = $1 AND bot_id = $2 AND version = $3
         ORDER BY ordinal",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(version)
    .fetch_all(db)
    .await?)
}

/// The FAQ passages, vectors included, of the bot's newest version before
/// the job's that was trained with `embedding_model`: what a retrain can
/// reuse instead of embedding again.
pub async fn embedded_faqs<'e>(
    db: impl PgExecutor<'e>,
    job: &Claimed,
    embedding_model: &str,
) -> Result<Vec<PassageRow>> {
    Ok(sqlx::query_as(
        "SELECT item_id, kind, title, body, embedding, pair_embedding FROM passages
         WHERE workspace_id = $1 AND bot_id = $2 AND kind = 'faq'
           AND embedding IS NOT NULL AND pair_embedding IS NOT NULL
           AND version = (SELECT max(version) FROM training_jobs
                          WHERE workspace_id = $1 AND bot_id = $2 AND status = 'succeeded'
                            AND embedding_model = $3 AND version < $4)",
    )
    .bind(&job.workspace_id)
    .bind(&job.bot_id)
    .bind(embedding_model)
    .bind(job.version)
    .fetch_all(db)
    .instrument(spans::sql("SELECT", "passages"))
    .await?)
}
