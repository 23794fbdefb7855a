//! Sending deliveries: claim due ones, sign and POST them, record the
//! attempt, and schedule a retry or finish.
//!
//! A claim is a lease (the row's next attempt moves past the request
//! timeout), so no transaction stays open during HTTP and a dispatcher that
//! dies mid-request leaves the delivery to be claimed again. Scheduled
//! retries are rows in PostgreSQL: they survive restarts of the dispatcher
//! and of RabbitMQ. A per-endpoint limit keeps a slow endpoint from holding
//! every worker.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use governor::{
    DefaultDirectRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use chrono::Utc;
use reqwest::{StatusCode, header::HeaderMap, redirect::Policy};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use service_runtime::outbox::Outbox;

use crate::{
    consumer::WAKE_CHANNEL, retry_schedule::RetrySchedule, secrets::SecretBox, signing, target_guard::TargetGuard,
};

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub schedule: RetrySchedule,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Deliveries in flight to one endpoint at once.
    pub per_endpoint: usize,
    pub guard: TargetGuard,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after: Duration,
}

pub const ENDPOINT_DISABLED: &str = "webhook.endpoint.disabled";

const USER_AGENT: &str = concat!("chatbot-platform-webhooks/", env!("CARGO_PKG_VERSION"));
const EXCERPT_BYTES: usize = 512;
const CLAIM_BATCH: i64 = 100;

pub fn spawn(
    pool: PgPool,
    secrets: SecretBox,
    outbox: Outbox,
    settings: DeliverySettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    service_runtime::tls::install();
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.connect_timeout)
        .redirect(Policy::none())
        .dns_resolver(Arc::new(settings.guard.clone()))
        .user_agent(USER_AGENT)
        .build()?;
    let sender = Arc::new(Sender {
        pool,
        secrets,
        outbox,
        http,
        settings,
        lanes: Mutex::new(HashMap::new()),
        rate_limits: Mutex::new(HashMap::new()),
        finished: Notify::new(),
    });
    tokio::spawn(async move { sender.run(shutdown).await });
    Ok(())
}

struct Sender {
    pool: PgPool,
    secrets: SecretBox,
    outbox: Outbox,
    http: reqwest::Client,
    settings: DeliverySettings,
    /// One semaphore per endpoint: its in-flight limit.
    lanes: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Token buckets of endpoints with a rate limit, with the rate they
    /// were made for (a changed limit replaces the bucket).
    rate_limits: Mutex<HashMap<String, (i32, Arc<DefaultDirectRateLimiter>)>>,
    /// Rung when a delivery finishes: its endpoint may take another now.
    finished: Notify,
}

#[derive(sqlx::FromRow)]
struct Claimed {
    id: String,
    endpoint_id: String,
    event_id: String,
    attempts: i32,
}

impl Sender {
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut listener = PgListener::connect_with(&self.pool).await.ok();
        if let Some(l) = listener.as_mut() {
            let _ = l.listen(WAKE_CHANNEL).await;
        }
        loop {
            match self.claim(self.saturated()).await {
                Ok(claimed) => {
                    let mut over_limit = Vec::new();
                    for delivery in claimed {
                        let Some(permit) = self.lane(&delivery.endpoint_id) else {
                            over_limit.push(delivery.id);
                            continue;
                        };
                        let sender = Arc::clone(&self);
                        tokio::spawn(async move {
                            sender.deliver(delivery).await;
                            drop(permit);
                            sender.finished.notify_one();
                        });
                    }
                    // Endpoints at their limit: hand those leases back.
                    if !over_limit.is_empty()
                        && let Err(error) = self.release(&over_limit).await
                    {
                        tracing::warn!(%error, "releasing deliveries; their leases will lapse");
                    }
                }
                Err(error) => tracing::warn!(%error, "claiming deliveries"),
            }
            let wake = async {
                match listener.as_mut() {
                    Some(l) => {
                        let _ = l.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake => {}
                _ = self.finished.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// Endpoints with every lane busy: claiming their deliveries now would
    /// only hand them back.
    fn saturated(&self) -> Vec<String> {
        let lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes
            .iter()
            .filter(|(_, lane)| lane.available_permits() == 0)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn lane(&self, endpoint_id: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                lanes
                    .entry(endpoint_id.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_endpoint))),
            )
        };
        semaphore.try_acquire_owned().ok()
    }

    /// Leases due deliveries: their next attempt moves past the request
    /// timeout, so nobody else claims them while this attempt runs.
    async fn claim(&self, saturated: Vec<String>) -> Result<Vec<Claimed>, sqlx::Error> {
        let lease = (self.settings.timeout + Duration::from_secs(5)).as_secs_f64();
        sqlx::query_as(
            "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $1)
             WHERE id IN (SELECT d.id FROM deliveries d
                          WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                            AND d.endpoint_id <> ALL($3)
                            -- Ordered deliveries wait for every earlier pending
                            -- one of the same conversation (in flight included).
                            AND (d.ordering_key IS NULL OR NOT EXISTS (
                                SELECT 1 FROM deliveries earlier
                                WHERE earlier.endpoint_id = d.endpoint_id
                                  AND earlier.ordering_key = d.ordering_key
                                  AND earlier.status = 'pending'
                                  AND earlier.sequence < d.sequence))
                          ORDER BY d.next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id, endpoint_id, event_id, attempts",
        )
        .bind(lease)
        .bind(CLAIM_BATCH)
        .bind(saturated)
        .fetch_all(&self.pool)
        .await
    }

    async fn release(&self, delivery_ids: &[String]) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE deliveries SET next_attempt_at = now() WHERE id = ANY($1)")
            .bind(delivery_ids)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    async fn deliver(&self, delivery: Claimed) {
        if let Err(error) = self.try_deliver(&delivery).await {
            tracing::warn!(%error, delivery = %delivery.id, "delivery bookkeeping failed; the lease will expire and retry");
        }
    }

    async fn try_deliver(&self, delivery: &Claimed) -> anyhow::Result<()> {
        let target: Option<Target> = sqlx::query_as(
            "SELECT e.url, e.enabled, e.secret_sealed, e.previous_secret_sealed, e.previous_secret_expires_at,
                    e.rate_limit_per_second, ev.body
             FROM endpoints e JOIN events ev ON ev.id = $2
             WHERE e.id = $1",
        )
        .bind(&delivery.endpoint_id)
        .bind(&delivery.event_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(target) = target.filter(|t| t.enabled) else {
            return self.finish(delivery, "failed").await;
        };
        if let Some(wait) = target
            .rate_limit_per_second
            .and_then(|limit| self.throttle(&delivery.endpoint_id, limit))
        {
            // Over the endpoint's rate: not an attempt, just later.
            return self.postpone(&delivery.id, wait).await;
        }
        let outcome = self.send(delivery, &target).await?;
        self.record(delivery, &outcome).await
    }

    async fn send(&self, delivery: &Claimed, target: &Target) -> anyhow::Result<Outcome> {
        if let Some(refusal) = self.settings.guard.refuse_literal(&target.url) {
            return Ok(Outcome::network(refusal, Duration::ZERO));
        }
        let timestamp = Utc::now().timestamp();
        let keys = target.signing_keys(&self.secrets)?;
        let signatures: Vec<String> = keys
            .iter()
            .map(|k| signing::standard_signature(k, &delivery.event_id, timestamp, &target.body))
            .collect();
        let started = Instant::now();
        let sent = self
            .http
            .post(&target.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .header("x-signature", signing::body_signature(&keys[0], &target.body))
            .header("x-idempotency-key", &delivery.id)
            .header("x-attempt", (delivery.attempts + 1).to_string())
            .body(target.body.clone())
            .send()
            .await;
        Ok(match sent {
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(response.headers());
                let bytes = response.bytes().await.unwrap_or_default();
                let excerpt = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]).into_owned();
                Outcome {
                    status: Some(status),
                    error: String::new(),
                    latency: started.elapsed(),
                    excerpt,
                    retry_after,
                }
            }
            Err(error) => Outcome::network(describe(&error), started.elapsed()),
        })
    }

    /// Records the attempt, then finishes the delivery or schedules the
    /// next attempt. 410 Gone disables the endpoint.
    /// The common case in one statement (one round trip, one commit): the
    /// attempt, the delivery done, and the endpoint's failure streak over.
    async fn record_success(&self, delivery: &Claimed, outcome: &Outcome) -> anyhow::Result<()> {
        sqlx::query(
            "WITH attempt AS (
                 INSERT INTO attempts (delivery_id, http_status, error, latency_ms, response_excerpt)
                 VALUES ($1, $2, '', $3, $4)
             ), healthy AS (
                 UPDATE endpoints SET failing_since = NULL WHERE id = $5 AND failing_since IS NOT NULL
             )
             UPDATE deliveries SET status = 'succeeded', attempts = $6, updated_at = now() WHERE id = $1",
        )
        .bind(&delivery.id)
        .bind(outcome.status.map(|s| i32::from(s.as_u16())))
        .bind(outcome.latency.as_millis().min(i32::MAX as u128) as i32)
        .bind(&outcome.excerpt)
        .bind(&delivery.endpoint_id)
        .bind(delivery.attempts + 1)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record(&self, delivery: &Claimed, outcome: &Outcome) -> anyhow::Result<()> {
        if outcome.status.is_some_and(|s| s.is_success()) {
            return self.record_success(delivery, outcome).await;
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO attempts (delivery_id, http_status, error, latency_ms, response_excerpt) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&delivery.id)
        .bind(outcome.status.map(|s| i32::from(s.as_u16())))
        .bind(&outcome.error)
        .bind(outcome.latency.as_millis().min(i32::MAX as u128) as i32)
        .bind(&outcome.excerpt)
        .execute(&mut *tx)
        .await?;
        let attempts = delivery.attempts + 1;
        let succeeded = outcome.status.is_some_and(|s| s.is_success());
        self.track_health(&mut tx, &delivery.endpoint_id, succeeded).await?;
        let (status, next) = match outcome.status {
            Some(s) if s.is_success() => ("succeeded", None),
            Some(StatusCode::GONE) => {
                sqlx::query("UPDATE endpoints SET enabled = false, disabled_reason = 'the endpoint answered 410 Gone', updated_at = now() WHERE id = $1")
                    .bind(&delivery.endpoint_id)
                    .execute(&mut *tx)
                    .await?;
                ("failed", None)
            }
            _ => match self
                .settings
                .schedule
                .next_delay(attempts as usize, outcome.retry_after)
            {
                Some(delay) => ("pending", Some(delay)),
                None => ("failed", None),
            },
        };
        sqlx::query(
            "UPDATE deliveries SET status = $2, attempts = $3,
                 next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
             WHERE id = $1",
        )
        .bind(&delivery.id)
        .bind(status)
        .bind(attempts)
        .bind(next.unwrap_or_default().as_secs_f64())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Clears the endpoint's failing streak on success; on failure starts
    /// it, and disables the endpoint once it has lasted `disable_after`,
    /// telling the workspace with a `webhook.endpoint.disabled` event.
    async fn track_health(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        endpoint_id: &str,
        succeeded: bool,
    ) -> anyhow::Result<()> {
        if succeeded {
            sqlx::query("UPDATE endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
                .bind(endpoint_id)
                .execute(&mut **tx)
                .await?;
            return Ok(());
        }
        let streak: Option<(String, chrono::DateTime<Utc>)> = sqlx::query_as(
            "UPDATE endpoints SET failing_since = COALESCE(failing_since, now())
             WHERE id = $1 AND enabled
             RETURNING workspace_id, failing_since",
        )
        .bind(endpoint_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((workspace_id, since)) = streak else {
            return Ok(());
        };
        let failing_for = (Utc::now() - since).to_std().unwrap_or_default();
        if failing_for < self.settings.disable_after {
            return Ok(());
        }
        let reason = format!(
            "failing continuously since {}",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        sqlx::query("UPDATE endpoints SET enabled = false, disabled_reason = $2, updated_at = now() WHERE id = $1")
            .bind(endpoint_id)
            .bind(&reason)
            .execute(&mut **tx)
            .await?;
        tracing::warn!(endpoint = endpoint_id, reason, "endpoint disabled");
        let event = service_runtime::events::Envelope::new(
            ENDPOINT_DISABLED,
            &workspace_id,
            serde_json::json!({"endpoint_id": endpoint_id, "reason": reason}),
        );
        self.outbox.record(tx, &event).await?;
        Ok(())
    }

    /// How long to wait when the endpoint's rate limit is used up.
    fn throttle(&self, endpoint_id: &str, per_second: i32) -> Option<Duration> {
        let limiter = {
            let mut limits = self.rate_limits.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = || {
                let rate = NonZeroU32::new(per_second.max(1) as u32).expect("max(1) is non-zero");
                (per_second, Arc::new(RateLimiter::direct(Quota::per_second(rate))))
            };
            let entry = limits.entry(endpoint_id.to_owned()).or_insert_with(fresh);
            if entry.0 != per_second {
                *entry = fresh();
            }
            Arc::clone(&entry.1)
        };
        limiter
            .check()
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    async fn postpone(&self, delivery_id: &str, wait: Duration) -> anyhow::Result<()> {
        sqlx::query("UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $2) WHERE id = $1")
            .bind(delivery_id)
            .bind(wait.as_secs_f64())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn finish(&self, delivery: &Claimed, status: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE deliveries SET status = $2, updated_at = now() WHERE id = $1")
            .bind(&delivery.id)
            .bind(status)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct Target {
    url: String,
    enabled: bool,
    secret_sealed: Vec<u8>,
    previous_secret_sealed: Option<Vec<u8>>,
    previous_secret_expires_at: Option<chrono::DateTime<Utc>>,
    rate_limit_per_second: Option<i32>,
    body: Vec<u8>,
}

impl Target {
    /// The current key, then the previous one while its grace period runs.
    fn signing_keys(&self, secrets: &SecretBox) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut keys = vec![key(&secrets.open(&self.secret_sealed)?)?];
        if let (Some(sealed), Some(until)) = (&self.previous_secret_sealed, self.previous_secret_expires_at)
            && until > Utc::now()
        {
            keys.push(key(&secrets.open(sealed)?)?);
        }
        Ok(keys)
    }
}

fn key(secret: &str) -> anyhow::Result<Vec<u8>> {
    signing::key_bytes(secret).ok_or_else(|| anyhow::anyhow!("a stored secret is not a whsec_ secret"))
}

struct Outcome {
    status: Option<StatusCode>,
    error: String,
    latency: Duration,
    excerpt: String,
    retry_after: Option<Duration>,
}

impl Outcome {
    fn network(error: String, latency: Duration) -> Self {
        Self {
            status: None,
            error,
            latency,
            excerpt: String::new(),
            retry_after: None,
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// What went wrong, down to the root cause (a refused target, a reset
/// connection), which is what an endpoint's owner needs to see.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut root: &dyn std::error::Error = error;
    while let Some(source) = root.source() {
        root = source;
    }
    let kind = if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{kind}: {root}")
}
