//! Training jobs, worked by every replica (the queue is
//! [`store::training_jobs`]).
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

use chrono::{DateTime, Utc};
use event_pipeline::Outbox;
use ids::KnowledgeItemId;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    chunking,
    error::{Error, Result},
    events,
    retrieval::{Index, Indexes, Kind, Passage, Vectors, VersionKey, vector_from_bytes, vector_to_bytes},
    store::{
        bots, knowledge,
        passages::{self, NewPassage},
        training_jobs::{self, Claimed, Outcome},
    },
};

/// Knowledge items read, and passages written, per batch.
const BATCH: i64 = 1000;
/// Texts embedded in one forward pass of the model.
const EMBED_BATCH: usize = 32;
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

    async fn claim(&self) -> Option<Claimed> {
        match training_jobs::claim(&self.pool).await {
            Ok(job) => job,
            Err(error) => {
                tracing::warn!(%error, "claiming a training job");
                None
            }
        }
    }

    async fn run(&self, job: Claimed) {
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
    async fn index(&self, job: &Claimed) -> Result<i64> {
        let language = bots::find(&self.pool, &job.workspace_id, &job.bot_id)
            .await?
            .ok_or_else(|| Error::FailedPrecondition("the bot was deleted".into()))?
            .config()?
            .language;
        passages::clear_version(&self.pool, job).await?;
        training_jobs::estimate_total(&self.pool, job).await?;
        let passages = self.write_passages(job, embeds(&language)).await?;
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

    /// Splits the bot's knowledge into passages, embedding FAQs when
    /// `embedding`, and writes them a batch at a time.
    async fn write_passages(&self, job: &Claimed, embedding: bool) -> Result<Vec<Passage>> {
        let known = if embedding {
            self.known_vectors(job).await?
        } else {
            HashMap::new()
        };
        let mut passages: Vec<Passage> = Vec::new();
        let mut after: Option<(DateTime<Utc>, KnowledgeItemId)> = None;
        loop {
            let items =
                knowledge::page_for_training(&self.pool, &job.workspace_id, &job.bot_id, after.as_ref(), BATCH).await?;
            let Some(last) = items.last() else { break };
            after = Some((last.created_at, last.id.clone()));
            let first_new = passages.len();
            passages.extend(items.into_iter().flat_map(split));
            if embedding {
                self.embed_faqs(&mut passages[first_new..], &known).await?;
            }
            let batch: Vec<NewPassage> = passages[first_new..].iter().map(to_row).collect();
            passages::write_batch(&self.pool, job, first_new, &batch).await?;
        }
        Ok(passages)
    }

    /// The FAQ vectors of the bot's newest version trained with the loaded
    /// model, by question and answer: a retrain embeds only the FAQs that
    /// are new or changed, which is what makes it quick.
    async fn known_vectors(&self, job: &Claimed) -> Result<HashMap<FaqText, Vectors>> {
        let Some(embedder) = self.indexes.embedder() else {
            return Ok(HashMap::new());
        };
        let rows = passages::embedded_faqs(&self.pool, job, embedder.id()).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let vectors = Vectors {
                    question: vector_from_bytes(row.embedding.as_deref()?),
                    pair: vector_from_bytes(row.pair_embedding.as_deref()?),
                };
                Some(((row.title, row.body), vectors))
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

    /// Records the outcome and its event together, if this worker still
    /// owns the job.
    async fn finish(&self, job: &Claimed, outcome: std::result::Result<i64, String>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let (recorded, event) = match &outcome {
            Ok(passages) => (
                Outcome::Succeeded {
                    passages: *passages,
                    embedding_model: self.indexes.embedder().map(|e| e.id()),
                },
                events::bot_trained(&job.workspace_id, &job.bot_id, &job.id, job.version, *passages),
            ),
            Err(reason) => (
                Outcome::Failed { reason },
                events::bot_error(&job.workspace_id, &job.bot_id, &job.id, job.version, reason),
            ),
        };
        if !training_jobs::finish(&mut tx, job, &recorded).await? {
            return Ok(());
        }
        self.outbox.record(&mut tx, &event).await?;
        if outcome.is_ok() && job.deploy_when_trained {
            self.deploy(&mut tx, job).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deploys the job's version, unless a newer one is deployed already,
    /// with its event.
    async fn deploy(&self, tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, job: &Claimed) -> Result<()> {
        let previous = bots::lock_deployed_version(tx, &job.workspace_id, &job.bot_id).await?;
        if previous >= job.version {
            return Ok(());
        }
        bots::set_deployed_version(tx, &job.workspace_id, &job.bot_id, job.version).await?;
        let event = events::bot_deployed(&job.workspace_id, &job.bot_id, job.version, previous);
        self.outbox.record(tx, &event).await?;
        tracing::info!(bot_id = %job.bot_id, version = job.version, "deployed a version once trained");
        Ok(())
    }
}

/// A knowledge item's passages: an FAQ is one, a document is cut into
/// several.
fn split(item: knowledge::TrainingItem) -> Vec<Passage> {
    let kind = Kind::parse(&item.kind);
    let bodies = match kind {
        Kind::Faq => vec![item.body],
        Kind::Document => chunking::split(&item.body),
    };
    let item_id = item.id.into_string();
    bodies
        .into_iter()
        .map(|body| Passage {
            item_id: item_id.clone(),
            kind,
            title: item.title.clone(),
            body,
            vectors: None,
        })
        .collect()
}

fn to_row(passage: &Passage) -> NewPassage<'_> {
    NewPassage {
        item_id: &passage.item_id,
        kind: passage.kind.as_str(),
        title: &passage.title,
        body: &passage.body,
        embedding: passage.vectors.as_ref().map(|v| vector_to_bytes(&v.question)),
        pair_embedding: passage.vectors.as_ref().map(|v| vector_to_bytes(&v.pair)),
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

#[cfg(test)]
mod tests {
    use super::embeds;

    #[test]
    fn only_english_questions_are_embedded() {
        assert!(embeds("en") && embeds("en-GB") && embeds("EN-us"));
        assert!(!embeds("de") && !embeds("fr-CA") && !embeds("eng"));
    }
}
