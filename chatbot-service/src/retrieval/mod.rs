//! The built-in retrieval engine: trained versions are indexed in memory
//! (BM25, see [`index`]) and kept in a bounded cache, loaded from their
//! stored passages on first use by any replica.

pub mod analyzer;
pub mod index;
mod thesaurus;

use std::sync::Arc;

use moka::future::Cache;
use sqlx::PgPool;

use crate::error::{Error, Result};
pub use index::{Index, Kind, Passage};

/// Which index: one trained version of one bot, analysed in one language.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionKey {
    pub workspace_id: String,
    pub bot_id: String,
    pub version: i32,
    pub language: String,
}

/// Loaded indexes, weighed by passages so memory stays bounded.
#[derive(Clone)]
pub struct Indexes {
    pool: PgPool,
    cache: Cache<VersionKey, Arc<Index>>,
}

/// At roughly 1 KiB a passage, about 2 GiB of indexes at most.
const MAX_CACHED_PASSAGES: u64 = 2_000_000;

impl Indexes {
    pub fn new(pool: PgPool) -> Self {
        let cache = Cache::builder()
            .max_capacity(MAX_CACHED_PASSAGES)
            .weigher(|_, index: &Arc<Index>| u32::try_from(index.len().max(1)).unwrap_or(u32::MAX))
            .time_to_idle(std::time::Duration::from_secs(3600))
            .build();
        Self { pool, cache }
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

    async fn load(&self, key: &VersionKey) -> Result<Arc<Index>> {
        let started = std::time::Instant::now();
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT item_id, kind, title, body FROM passages
             WHERE workspace_id = $1 AND bot_id = $2 AND version = $3
             ORDER BY ordinal",
        )
        .bind(&key.workspace_id)
        .bind(&key.bot_id)
        .bind(key.version)
        .fetch_all(&self.pool)
        .await?;
        let passages = rows
            .into_iter()
            .map(|(item_id, kind, title, body)| Passage {
                item_id,
                kind: Kind::parse(&kind),
                title,
                body,
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
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded a knowledge index"
        );
        Ok(Arc::new(index))
    }
}
