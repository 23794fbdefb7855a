//! Verified credentials, remembered briefly so a busy client costs neither a
//! database lookup (API keys) nor a signature check (JWTs) per request.
//!
//! Revocation still takes effect at once on every replica: revoking a key
//! sends a PostgreSQL NOTIFY that every gateway LISTENs for, and each then
//! drops its cached credentials. While the LISTEN connection is down the
//! cache is not trusted and every request goes to the database, so a missed
//! notification can never keep a revoked key alive.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use moka::sync::Cache;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;

use super::Principal;

pub const REVOCATION_CHANNEL: &str = "gateway_api_key_revoked";
/// Upper bound on how long a verified credential is reused.
const MAX_AGE: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Entry {
    principal: Principal,
    /// When the credential itself stops being valid (a JWT's `exp`).
    valid_until: Option<Instant>,
}

pub struct CredentialCache {
    entries: Cache<[u8; 32], Entry>,
    /// Whether revocations are being heard; without them nothing is cached.
    listening: Arc<AtomicBool>,
}

impl CredentialCache {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            entries: Cache::builder().max_capacity(100_000).time_to_live(MAX_AGE).build(),
            listening: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Principal> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.entries.get(key)?;
        match entry.valid_until {
            Some(until) if until <= Instant::now() => {
                self.entries.invalidate(key);
                None
            }
            _ => Some(entry.principal),
        }
    }

    pub fn put(&self, key: [u8; 32], principal: Principal, valid_for: Option<Duration>) {
        if self.listening.load(Ordering::Acquire) {
            let valid_until = valid_for.map(|d| Instant::now() + d);
            self.entries.insert(key, Entry { principal, valid_until });
        }
    }

    pub fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// Listens for revocations until shutdown, reconnecting as needed.
    pub fn spawn_listener(self: &Arc<Self>, pool: PgPool, shutdown: CancellationToken) {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = cache.listen(&pool) => {}
                }
                cache.listening.store(false, Ordering::Release);
                cache.clear();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    /// One LISTEN session; returns when its connection is lost.
    async fn listen(&self, pool: &PgPool) {
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN for key revocations; not caching credentials");
                return;
            }
        };
        if let Err(error) = listener.listen(REVOCATION_CHANNEL).await {
            tracing::warn!(%error, "cannot LISTEN for key revocations; not caching credentials");
            return;
        }
        self.clear();
        self.listening.store(true, Ordering::Release);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => self.clear(),
                Ok(None) | Err(_) => {
                    tracing::warn!("lost the key revocation LISTEN connection; not caching until it is back");
                    return;
                }
            }
        }
    }
}
