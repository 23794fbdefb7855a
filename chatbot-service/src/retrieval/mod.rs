//! The built-in retrieval engine: trained versions are indexed in memory
//! (BM25, see [`index`]) and kept in a bounded cache, loaded from their
//! stored passages on first use by any replica.

pub mod analyzer;
pub mod embedder;
pub mod index;
mod mpnet;
mod thesaurus;
mod wordpiece;

use std::sync::Arc;

use ids::BotId;
use moka::future::Cache;
use sqlx::PgPool;

use crate::{
    error::{Error, Result},
    store::{passages, training_jobs},
};
pub use embedder::Embedder;
pub use index::{Index, Kind, Passage, Vectors};

/// Which index: one trained version of one bot, analysed in one language.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionKey {
    pub workspace_id: String,
    pub bot_id: BotId,
    pub version: i32,
    pub language: String,
}

/// Loaded indexes, weighed by passages so memory stays bounded, and the
/// sentence embedder when one is configured.
#[derive(Clone)]
pub struct Indexes {
    pool: PgPool,
    cache: Cache<VersionKey, Arc<Index>>,
    embedder: Option<Arc<Embedder>>,
    /// Vectors of questions recently asked, by their exact text. Customers
    /// repeat themselves (and chat widgets send suggested questions
    /// verbatim), and running the model is the costliest part of a reply.
    asked: Cache<String, Arc<[f32]>>,
}

/// Questions whose vectors are kept: about 3 KiB each with all-mpnet-base-v2.
const ASKED_CACHED: u64 = 10_000;

/// In units of about 1 KiB (a passage; an FAQ's two 768-dimension vectors
/// are 6 KiB more, see [`Index::weight`]): about 2 GiB of indexes at most.
const MAX_CACHED_WEIGHT: u64 = 2_000_000;

impl Indexes {
    pub fn new(pool: PgPool, embedder: Option<Arc<Embedder>>) -> Self {
        let cache = Cache::builder()
            .max_capacity(MAX_CACHED_WEIGHT)
            .weigher(|_, index: &Arc<Index>| u32::try_from(index.weight().max(1)).unwrap_or(u32::MAX))
            .time_to_idle(std::time::Duration::from_secs(3600))
            .build();
        Self {
            pool,
            cache,
            embedder,
            asked: Cache::builder()
                .max_capacity(ASKED_CACHED)
                .time_to_idle(std::time::Duration::from_secs(3600))
                .build(),
        }
    }

    pub fn embedder(&self) -> Option<&Arc<Embedder>> {
        self.embedder.as_ref()
    }

    /// The index of `key`, loading it once however many callers ask at once.
    pub async fn get(&self, key: &VersionKey) -> Result<Arc<Index>> {
        self.cache
            .try_get_with_by_ref(key, self.load(key))
            .await
            .map_err(|error| match Arc::try_unwrap(error) {
                Ok(error) => error,
                Err(shared) => Error::Internal(shared.to_string()),
            })
    }

    /// Keeps an index just built by training, so a deploy needs no reload.
    pub async fn insert(&self, key: VersionKey, index: Arc<Index>) {
        self.cache.insert(key, index).await;
    }

    /// The question's vector, when `index` can use one. A failing model
    /// costs the reply its vector, not the reply.
    pub async fn question_vector(&self, index: &Index, question: &str) -> Option<Arc<[f32]>> {
        let embedder = self.embedder.clone().filter(|_| index.has_vectors())?;
        if let Some(vector) = self.asked.get(question).await {
            return Some(vector);
        }
        let text = question.to_owned();
        let embedded = tokio::task::spawn_blocking(move || embedder.embed(&[&text])).await;
        let vectors = embedded
            .map_err(|e| e.to_string())
            .and_then(|result| result.map_err(|e| e.to_string()));
        match vectors {
            Ok(mut vectors) => {
                let vector: Arc<[f32]> = vectors.pop()?.into();
                self.asked.insert(question.to_owned(), vector.clone()).await;
                Some(vector)
            }
            Err(error) => {
                tracing::warn!(%error, "embedding a question; answering from words alone");
                None
            }
        }
    }

    async fn load(&self, key: &VersionKey) -> Result<Arc<Index>> {
        let started = std::time::Instant::now();
        let rows = passages::of_version(&self.pool, &key.workspace_id, &key.bot_id, key.version).await?;
        let usable = self.vectors_usable(key).await?;
        let passages = rows
            .into_iter()
            .map(|row| Passage {
                item_id: row.item_id,
                kind: Kind::parse(&row.kind),
                title: row.title,
                body: row.body,
                vectors: match (row.embedding, row.pair_embedding) {
                    (Some(question), Some(pair)) if usable => Some(Vectors {
                        question: vector_from_bytes(&question),
                        pair: vector_from_bytes(&pair),
                    }),
                    _ => None,
                },
            })
            .collect();
        let language = key.language.clone();
        let index = tokio::task::spawn_blocking(move || Index::build(&language, passages))
            .await
            .map_err(|e| Error::Internal(format!("building an index: {e}")))?;
        tracing::info!(
            bot_id = %key.bot_id,
            version = key.version,
            passages = index.len(),
            vectors = index.has_vectors(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded a knowledge index"
        );
        Ok(Arc::new(index))
    }

    /// Whether the version's vectors came from the model loaded here.
    async fn vectors_usable(&self, key: &VersionKey) -> Result<bool> {
        let Some(embedder) = &self.embedder else {
            return Ok(false);
        };
        let trained_with =
            training_jobs::embedding_model(&self.pool, &key.workspace_id, &key.bot_id, key.version).await?;
        let usable = trained_with.as_deref() == Some(embedder.id());
        if trained_with.is_some() && !usable {
            tracing::warn!(
                bot_id = %key.bot_id, version = key.version,
                "the version was trained with another embedding model; retrain it to match questions by meaning"
            );
        }
        Ok(usable)
    }
}

/// Vectors are stored as little-endian f32s.
pub fn vector_to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn vector_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_repeated_question_reuses_its_vector_and_it_is_the_models() {
        let dir = std::env::var("CHATBOT_EMBEDDING_MODEL_DIR")
            .expect("CHATBOT_EMBEDDING_MODEL_DIR must name the embedding model; deploy/test.sh sets it");
        let embedder = embedder::shared(std::path::Path::new(&dir)).expect("the embedding model loads");
        // Asking never touches the database; the pool never connects.
        let pool = PgPool::connect_lazy("postgres://unused@127.0.0.1:1/unused").expect("a lazy pool");
        let indexes = Indexes::new(pool, Some(embedder.clone()));
        let vectors = Vectors {
            question: vec![0.0; embedder.dimensions()],
            pair: vec![0.0; embedder.dimensions()],
        };
        let passage = Passage {
            item_id: "kn_1".into(),
            kind: Kind::Faq,
            title: "Where is my order?".into(),
            body: "See Orders.".into(),
            vectors: Some(vectors),
        };
        let index = Index::build("en", vec![passage]);
        let question = "Where's my parcel?";
        let first = indexes.question_vector(&index, question).await.expect("a vector");
        let again = indexes.question_vector(&index, question).await.expect("a vector");
        assert!(Arc::ptr_eq(&first, &again), "the second ask was embedded again");
        let fresh = embedder.embed(&[question]).expect("the question embeds");
        assert_eq!(&*first, fresh[0].as_slice());
        let other = indexes
            .question_vector(&index, "Do you ship abroad?")
            .await
            .expect("a vector");
        assert!(!Arc::ptr_eq(&first, &other) && *first != *other);
    }

    #[test]
    fn a_vector_survives_storage_exactly() {
        let vector = vec![0.25, -1.5, f32::MIN_POSITIVE, 0.1];
        assert_eq!(vector_from_bytes(&vector_to_bytes(&vector)), vector);
    }
}
