//! The shared budget: one GCRA step per request as a single Redis script
//! call, so concurrent requests on different replicas can never both read
//! the old state and both pass (the read-then-write race that makes some
//! gateways overshoot their limits).
//!
//! Every call has a short timeout; the caller falls back when Redis is slow
//! or gone, so a request never waits on Redis for long.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use redis::{Script, aio::ConnectionManager};

use super::{Decision, Quota};

/// GCRA with the theoretical arrival time (TAT) in milliseconds of Redis's
/// own clock, so replicas with skewed clocks still agree. Returns
/// {allowed, remaining, retry_after_ms, reset_ms}. The key expires when the
/// bucket is full again, so idle keys cost nothing.
const GCRA: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - tolerance > now then
  return {0, 0, new_tat - tolerance - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now}
"#;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("not connected to Redis yet")]
    NotConnected,
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Command(#[from] redis::RedisError),
}

pub struct RedisLimiter {
    connection: Arc<OnceLock<ConnectionManager>>,
    script: Script,
    prefix: String,
    timeout: Duration,
    /// Unix seconds of the last failure logged, to log at most every 10 s.
    last_logged: AtomicI64,
}

impl RedisLimiter {
    /// Connects in the background (retrying until Redis answers), so the
    /// gateway starts and limits locally even while Redis is down.
    pub fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection = Arc::new(OnceLock::new());
        let slot = Arc::clone(&connection);
        tokio::spawn(async move {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(timeout))
                .set_max_delay(Duration::from_secs(2));
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        let _ = slot.set(manager);
                        tracing::info!("connected to Redis for shared rate limits");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Redis unreachable; limiting locally until it answers");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Self {
            connection,
            script: Script::new(GCRA),
            prefix: prefix.to_owned(),
            timeout,
            last_logged: AtomicI64::new(0),
        })
    }

    pub async fn take(&self, key: &str, quota: Quota) -> Result<Decision, RedisError> {
        let mut connection = self.connection.get().cloned().ok_or(RedisError::NotConnected)?;
        let interval_ms = (quota.interval().as_secs_f64() * 1000.0).ceil().max(1.0) as u64;
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation.arg(interval_ms).arg(quota.burst);
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut connection);
        let (allowed, remaining, retry_ms, reset_ms) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| RedisError::Timeout(self.timeout))??;
        Ok(Decision {
            allowed: allowed == 1,
            limit: quota.burst,
            remaining: remaining.max(0) as u32,
            reset: Duration::from_millis(reset_ms.max(0) as u64),
            retry_after: Duration::from_millis(retry_ms.max(0) as u64),
        })
    }

    pub fn log_failure(&self, error: &RedisError) {
        let now = chrono::Utc::now().timestamp();
        let last = self.last_logged.load(Ordering::Relaxed);
        if now - last >= 10
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, "shared rate limit unavailable; applying the configured fallback");
        }
    }
}
