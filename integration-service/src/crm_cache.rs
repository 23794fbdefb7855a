//! Customer lookups in a workspace's CRM, cached in Redis for a while so a
//! busy bot does not spend the org's API requests, and invalidated when a
//! sync changes what the org holds: every key carries the org's
//! generation, which a sync bumps, so stale entries are never read again
//! (and expire on their own). Redis going away only means cache misses.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use redis::{AsyncCommands, aio::ConnectionManager};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long one cache call may take before it counts as a miss.
const TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct CrmCache {
    connection: Arc<OnceLock<ConnectionManager>>,
    prefix: String,
    ttl: Duration,
}

impl CrmCache {
    /// Connects in the background, retrying until Redis answers.
    pub fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection = Arc::new(OnceLock::new());
        let slot = Arc::clone(&connection);
        tokio::spawn(async move {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(TIMEOUT));
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        let _ = slot.set(manager);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Redis unreachable; CRM lookups are not cached until it answers");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            ttl,
        })
    }

    fn generation_key(&self, org: &str) -> String {
        format!("{}crm:{org}:generation", self.prefix)
    }

    /// The key of `question` asked of `org`, at the org's generation.
    async fn key(&self, connection: &mut ConnectionManager, org: &str, question: &str) -> Option<String> {
        let generation: Option<u64> = connection.get(self.generation_key(org)).await.ok()?;
        let digest = hex(&Sha256::digest(question.as_bytes()));
        Some(format!("{}crm:{org}:{}:{digest}", self.prefix, generation.unwrap_or(0)))
    }

    pub async fn get(&self, org: &str, question: &str) -> Option<Value> {
        let mut connection = self.connection.get()?.clone();
        let read = async {
            let key = self.key(&mut connection, org, question).await?;
            let text: Option<String> = connection.get(key).await.ok()?;
            serde_json::from_str(&text?).ok()
        };
        tokio::time::timeout(TIMEOUT, read).await.ok().flatten()
    }

    pub async fn put(&self, org: &str, question: &str, answer: &Value) {
        let Some(mut connection) = self.connection.get().cloned() else {
            return;
        };
        let write = async {
            let key = self.key(&mut connection, org, question).await?;
            let stored: Result<(), _> = connection
                .set_ex(key, answer.to_string(), self.ttl.as_secs().max(1))
                .await;
            stored.ok()
        };
        let _ = tokio::time::timeout(TIMEOUT, write).await;
    }

    /// Every cached answer of `org` is stale from now on.
    pub async fn invalidate(&self, org: &str) {
        let Some(mut connection) = self.connection.get().cloned() else {
            return;
        };
        let bump = connection.incr::<_, _, u64>(self.generation_key(org), 1);
        if !matches!(tokio::time::timeout(TIMEOUT, bump).await, Ok(Ok(_))) {
            tracing::warn!(org, "could not invalidate cached CRM lookups; they expire on their own");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
