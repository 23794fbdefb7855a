//! Training jobs: a queue in PostgreSQL, worked by every replica.
//!
//! A job snapshots the bot's knowledge into the passages of a new version,
//! in batches that each commit on their own (no long transaction; the
//! version is invisible until its job succeeds), then builds the version's
//! index. A job's worker holds a lease it renews with every batch; a job
//! whose worker died is taken up again by any replica once the lease lapses.
//! With an embedder configured, each FAQ is stored with two sentence
//! vectors (its question's, and its question's with its answer), so
//! replies can match it by meaning. An FAQ the bot's previous version
//! embedded with the same model keeps its vectors, so a retrain after a few
//! edits embeds only those.

use std::{collections::HashMap, sync::Arc, time::Duration};

use prost::Message as _;
use proto::chatbot::v1::BotConfig;
use serde_json::json;
use service_runtime::{events::Envelope, outbox::Outbox};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    chunking,
    error::{Error, Result},
    retrieval::{Index, Indexes, Kind, Passage, Vectors, VersionKey, vector_from_bytes, vector_to_bytes},
};

pub const BOT_TRAINED: &str = "bot.trained";
pub const BOT_ERROR: &str = "bot.error";

const BATCH: i64 = 1000;
/// Texts embedded in one forward pass of the model.
const EMBED_BATCH: usize = 32;
const LEASE: &str = "30 seconds";
const MAX_ATTEMPTS: i32 = 3;
const POLL: Duration = Duration::from_secs(5);

/// An FAQ by its question and answer, for reusing its vectors.
type FaqText = (String, String);

#[derive(Clone)]
pub struct Trainer {
    pool: PgPool,
    outbox: Outbox,
    indexes: Indexes,
    wake: Arc<Notify>,
}

/// A knowledge item as training reads it.
#[derive(sqlx::FromRow)]
struct Item {
    id: String,
    kind: String,
    title: String,
    body: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// A claimed job.
#[derive(sqlx::FromRow)]
struct Job {
    workspace_id: String,
    id: String,
    bot_id: String,
    version: i32,
    attempts: i32,
}

impl Trainer {
    pub fn new(pool: PgPool, outbox: Outbox, indexes: Indexes) -> Self {
        Self {
            pool,
            outbox,
            indexes,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Works jobs until shutdown: at once when woken, and every few
    /// seconds for jobs other replicas queued or abandoned.
    pub fn spawn(&self, shutdown: CancellationToken) {
        let trainer = self.clone();
        tokio::spawn(async move {
            loop {
                while let Some(job) = trainer.claim().await {
                    trainer.run(job).await;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = trainer.wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// Tells the worker a job was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn claim(&self) -> Option<Job> {
        let claimed = sqlx::query_as(&format!(
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
             RETURNING j.workspace_id, j.id, j.bot_id, j.version, j.attempts"
        ))
        .fetch_optional(&self.pool)
        .await;
        match claimed {
            Ok(job) => job,
            Err(error) => {
                tracing::warn!(%error, "claiming a training job");
                None
            }
        }
    }

    async fn run(&self, job: Job) {
        let started = std::time::Instant::now();
        let outcome = if job.attempts > MAX_ATTEMPTS {
            Err(Error::FailedPrecondition(format!(
                "training was interrupted {MAX_ATTEMPTS} times; start a new training"
            )))
        } else {
            self.index(&job).await
        };
        let finished = match outcome {
            Ok(passages) => {
                tracing::info!(
                    bot_id = %job.bot_id, version = job.version, passages,
                    elapsed_ms = started.elapsed().as_millis() as u64, "training succeeded"
                );
                self.finish(&job, Ok(passages)).await
            }
            Err(Error::FailedPrecondition(reason)) => self.finish(&job, Err(reason)).await,
            Err(error) => {
                // A fault of ours (database, say): the lease lapses and the
                // job is tried again, up to MAX_ATTEMPTS.
                tracing::warn!(%error, job_id = %job.id, "training attempt failed; it will be retried");
                Ok(())
            }
        };
        if let Err(error) = finished {
            tracing::warn!(%error, job_id = %job.id, "recording a training outcome");
        }
    }

    /// Writes the version's passages and builds its index; the count.
    async fn index(&self, job: &Job) -> Result<i64> {
        let language = bot_language(&self.pool, &job.workspace_id, &job.bot_id).await?;
        sqlx::query("DELETE FROM passages WHERE workspace_id = $1 AND bot_id = $2 AND version = $3")
            .bind(&job.workspace_id)
            .bind(&job.bot_id)
            .bind(job.version)
            .execute(&self.pool)
            .await?;
        self.estimate_total(job).await?;
        let embedding = embeds(&language);
        let known = if embedding {
            self.known_vectors(job).await?
        } else {
            HashMap::new()
        };
        let mut passages: Vec<Passage> = Vec::new();
        let mut after: Option<(chrono::DateTime<chrono::Utc>, String)> = None;
        loop {
            let items = self.items_page(job, after.as_ref()).await?;
            let Some(last) = items.last() else { break };
            after = Some((last.created_at, last.id.clone()));
            let first_new = passages.len();
            for Item {
                id: item_id,
                kind,
                title,
                body,
                ..
            } in items
            {
                let kind = Kind::parse(&kind);
                let bodies = match kind {
                    Kind::Faq => vec![body],
                    Kind::Document => chunking::split(&body),
                };
                passages.extend(bodies.into_iter().map(|body| Passage {
                    item_id: item_id.clone(),
                    kind,
                    title: title.clone(),
                    body,
                    vectors: None,
                }));
            }
            if embedding {
                self.embed_faqs(&mut passages[first_new..], &known).await?;
            }
            self.write_batch(job, first_new, &passages[first_new..]).await?;
        }
        if passages.is_empty() {
            return Err(Error::FailedPrecondition(
                "the bot has no knowledge items to train on; add documents or FAQ pairs first".into(),
            ));
        }
        let count = passages.len() as i64;
        let index = tokio::task::spawn_blocking({
            let language = language.clone();
            move || Index::build(&language, passages)
        })
        .await
        .map_err(|e| Error::Internal(format!("building an index: {e}")))?;
        let key = VersionKey {
            workspace_id: job.workspace_id.clone(),
            bot_id: job.bot_id.clone(),
            version: job.version,
            language,
        };
        self.indexes.insert(key, Arc::new(index)).await;
        Ok(count)
    }

    /// The FAQ vectors of the bot's newest version trained with the loaded
    /// model, by question and answer: a retrain embeds only the FAQs that
    /// are new or changed, which is what makes it quick.
    async fn known_vectors(&self, job: &Job) -> Result<HashMap<FaqText, Vectors>> {
        let Some(embedder) = self.indexes.embedder() else {
            return Ok(HashMap::new());
        };
        let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT title, body, embedding, pair_embedding FROM passages
             WHERE workspace_id = $1 AND bot_id = $2 AND kind = 'faq'
               AND embedding IS NOT NULL AND pair_embedding IS NOT NULL
               AND version = (SELECT max(version) FROM training_jobs
                              WHERE workspace_id = $1 AND bot_id = $2 AND status = 'succeeded'
                                AND embedding_model = $3 AND version < $4)",
        )
        .bind(&job.workspace_id)
        .bind(&job.bot_id)
        .bind(embedder.id())
        .bind(job.version)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(question, answer, q, pair)| {
                let vectors = Vectors {
                    question: vector_from_bytes(&q),
                    pair: vector_from_bytes(&pair),
                };
                ((question, answer), vectors)
            })
            .collect())
    }

    /// Gives each FAQ passage its vectors: `known` ones, or ones embedded
    /// off the async threads.
    async fn embed_faqs(&self, batch: &mut [Passage], known: &HashMap<FaqText, Vectors>) -> Result<()> {
        let Some(embedder) = self.indexes.embedder().cloned() else {
            return Ok(());
        };
        let mut texts: Vec<(usize, String)> = Vec::new();
        for (at, passage) in batch.iter_mut().enumerate().filter(|(_, p)| p.kind == Kind::Faq) {
            match known.get(&(passage.title.clone(), passage.body.clone())) {
                Some(vectors) => passage.vectors = Some(vectors.clone()),
                None => {
                    texts.push((2 * at, passage.title.clone()));
                    texts.push((2 * at + 1, format!("{} {}", passage.title, passage.body)));
                }
            }
        }
        // A forward pass pads every text to its longest: batching texts of
        // like length wastes less of it.
        texts.sort_by_key(|(_, text)| text.len());
        let mut vectors = tokio::task::spawn_blocking(move || {
            let mut vectors = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(EMBED_BATCH) {
                let batch: Vec<&str> = chunk.iter().map(|(_, text)| text.as_str()).collect();
                let embedded = embedder.embed(&batch)?;
                vectors.extend(chunk.iter().map(|(slot, _)| *slot).zip(embedded));
            }
            Ok::<_, crate::retrieval::embedder::EmbedderError>(vectors)
        })
        .await
        .map_err(|e| Error::Internal(format!("embedding FAQs: {e}")))?
        .map_err(|e| Error::Internal(e.to_string()))?;
        // Slot 2n is passage n's question, 2n + 1 its pair.
        vectors.sort_unstable_by_key(|(slot, _)| *slot);
        for pair in vectors.chunks_exact_mut(2) {
            let at = pair[0].0 / 2;
            batch[at].vectors = Some(Vectors {
                question: std::mem::take(&mut pair[0].1),
                pair: std::mem::take(&mut pair[1].1),
            });
        }
        Ok(())
    }

    async fn estimate_total(&self, job: &Job) -> Result<()> {
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn items_page(
        &self,
        job: &Job,
        after: Option<&(chrono::DateTime<chrono::Utc>, String)>,
    ) -> Result<Vec<Item>> {
        Ok(sqlx::query_as(
            "SELECT id, kind, title, body, created_at FROM knowledge_items
             WHERE workspace_id = $1 AND bot_id = $2
               AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4))
             ORDER BY created_at, id
             LIMIT $5",
        )
        .bind(&job.workspace_id)
        .bind(&job.bot_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1.as_str()))
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One batch of passages, committed with the job's progress and a
    /// renewed lease.
    async fn write_batch(&self, job: &Job, first_ordinal: usize, batch: &[Passage]) -> Result<()> {
        let ordinals: Vec<i32> = (first_ordinal..first_ordinal + batch.len()).map(|n| n as i32).collect();
        let item_ids: Vec<&str> = batch.iter().map(|p| p.item_id.as_str()).collect();
        let kinds: Vec<&str> = batch.iter().map(|p| p.kind.as_str()).collect();
        let titles: Vec<&str> = batch.iter().map(|p| p.title.as_str()).collect();
        let bodies: Vec<&str> = batch.iter().map(|p| p.body.as_str()).collect();
        let questions: Vec<Option<Vec<u8>>> = batch
            .iter()
            .map(|p| p.vectors.as_ref().map(|v| vector_to_bytes(&v.question)))
            .collect();
        let pairs: Vec<Option<Vec<u8>>> = batch
            .iter()
            .map(|p| p.vectors.as_ref().map(|v| vector_to_bytes(&v.pair)))
            .collect();
        let mut tx = self.pool.begin().await?;
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
        .await?;
        let owned = sqlx::query(&format!(
            "UPDATE training_jobs
             SET passages_indexed = $4, passages_total = greatest(passages_total, $4),
                 lease_until = now() + interval '{LEASE}'
             WHERE workspace_id = $1 AND id = $2 AND status = 'running' AND attempts = $3"
        ))
        .bind(&job.workspace_id)
        .bind(&job.id)
        .bind(job.attempts)
        .bind((first_ordinal + batch.len()) as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if owned == 0 {
            return Err(Error::Internal("the job's lease passed to another worker".into()));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the outcome and its event together, if this worker still
    /// owns the job.
    async fn finish(&self, job: &Job, outcome: std::result::Result<i64, String>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let (status, passages, reason) = match &outcome {
            Ok(n) => ("succeeded", *n, ""),
            Err(reason) => ("failed", 0, reason.as_str()),
        };
        let embedding_model = self.indexes.embedder().map(|e| e.id().to_owned());
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
        .bind(embedding_model)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if owned == 0 {
            return Ok(());
        }
        let event = match &outcome {
            Ok(passages) => Envelope::new(
                BOT_TRAINED,
                &job.workspace_id,
                json!({ "bot_id": job.bot_id, "job_id": job.id, "version": job.version, "passages": passages }),
            ),
            Err(reason) => Envelope::new(
                BOT_ERROR,
                &job.workspace_id,
                json!({ "bot_id": job.bot_id, "job_id": job.id, "version": job.version, "reason": reason }),
            ),
        };
        self.outbox.record(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Whether FAQs in `language` get vectors. The bundled model
/// (all-mpnet-base-v2) learnt English; other languages are matched by their
/// stemmed words, which serves them better than a model that does not know
/// them.
fn embeds(language: &str) -> bool {
    let primary = language.split('-').next().unwrap_or_default();
    primary.eq_ignore_ascii_case("en")
}

/// The language the bot's replies (and so its index) are in.
pub async fn bot_language(pool: &PgPool, workspace_id: &str, bot_id: &str) -> Result<String> {
    let config: Vec<u8> = sqlx::query_scalar("SELECT config FROM bots WHERE workspace_id = $1 AND id = $2")
        .bind(workspace_id)
        .bind(bot_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| Error::FailedPrecondition("the bot was deleted".into()))?;
    let config = BotConfig::decode(config.as_slice()).map_err(|e| Error::Internal(format!("bot config: {e}")))?;
    Ok(config.language)
}

#[cfg(test)]
mod tests {
    use super::embeds;

    #[test]
    fn only_english_questions_are_embedded() {
        assert!(embeds("en") && embeds("en-GB") && embeds("EN-us"));
        assert!(!embeds("de") && !embeds("fr-CA") && !embeds("eng"));
    }
}
