//! Sending deliveries: claim due ones, sign and POST them, record the
//! attempt, and schedule a retry or finish.
//!
//! A claim is a lease (the row's next attempt moves past the request
//! timeout), so no transaction stays open during HTTP and a dispatcher that
//! dies mid-request leaves the delivery to be claimed again. Scheduled
//! retries are rows in PostgreSQL: they survive restarts of the dispatcher
//! and of RabbitMQ. A per-endpoint limit keeps a slow endpoint from holding
//! every worker.
//!
//! The common path is two statements per batch, not per delivery: the claim
//! returns what sending needs (endpoint and event body), and successes are
//! recorded by one writer that takes whatever has finished since its last
//! write. When one or a few endpoints hold the backlog (a claim had to hand
//! their deliveries back), their lanes drain them: each finished lane
//! leases its endpoint's next due delivery by an index rather than waiting
//! for the shared claim, most of whose rows would be handed back. When
//! many endpoints are backlogged, the shared claim's batches fill the lanes
//! with fewer statements, so lanes leave it to them. A 2xx not yet recorded when the dispatcher dies is sent again
//! once its lease lapses: delivery is at least once either way.

use std::{
    collections::{HashMap, HashSet},
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
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
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
/// Lanes drain their own endpoint only while at most this many are
/// backlogged.
const DRAINED_ENDPOINTS: usize = 4;
/// Successes recorded in one statement at most, and waiting at most.
const SUCCESS_BATCH: usize = 500;
const SUCCESS_QUEUE: usize = 4096;

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
    let (successes, finished_ok) = mpsc::channel(SUCCESS_QUEUE);
    tokio::spawn(record_successes(pool.clone(), finished_ok));
    let sender = Arc::new(Sender {
        pool,
        successes,
        secrets,
        outbox,
        http,
        settings,
        lanes: Mutex::new(HashMap::new()),
        rate_limits: Mutex::new(HashMap::new()),
        finished: Notify::new(),
        backlogged: Mutex::new(HashSet::new()),
        shutdown,
    });
    tokio::spawn(async move { sender.run().await });
    Ok(())
}

struct Sender {
    pool: PgPool,
    /// To the writer that records successful attempts in batches.
    successes: mpsc::Sender<Success>,
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
    /// Endpoints whose last shared claim found more due deliveries than
    /// free lanes: their lanes lease the next ones themselves.
    backlogged: Mutex<HashSet<String>>,
    shutdown: CancellationToken,
}

/// A leased delivery with what sending it needs.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: String,
    endpoint_id: String,
    event_id: String,
    attempts: i32,
    #[sqlx(flatten)]
    target: Target,
}

/// A successful attempt waiting to be recorded.
struct Success {
    delivery_id: String,
    endpoint_id: String,
    attempts: i32,
    http_status: i32,
    latency_ms: i32,
    excerpt: String,
}

impl Sender {
    async fn run(self: Arc<Self>) {
        let mut listener = PgListener::connect_with(&self.pool).await.ok();
        if let Some(l) = listener.as_mut() {
            let _ = l.listen(WAKE_CHANNEL).await;
        }
        loop {
            let saturated = self.saturated();
            match self.claim(&saturated).await {
                Ok(claimed) => self.dispatch(claimed, saturated).await,
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
                _ = self.shutdown.cancelled() => return,
                _ = wake => {}
                _ = self.finished.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    /// Starts each claimed delivery in a free lane of its endpoint and hands
    /// back the rest; notes which endpoints are backlogged.
    async fn dispatch(self: &Arc<Self>, claimed: Vec<Claimed>, saturated: Vec<String>) {
        let mut over_limit = Vec::new();
        let mut handed_back = HashSet::new();
        for delivery in claimed {
            let Some(permit) = self.lane(&delivery.endpoint_id) else {
                handed_back.insert(delivery.endpoint_id.clone());
                over_limit.push(delivery.id);
                continue;
            };
            let sender = Arc::clone(self);
            tokio::spawn(async move {
                sender.drain_lane(delivery).await;
                drop(permit);
                sender.finished.notify_one();
            });
        }
        {
            // Endpoints this claim skipped as saturated keep their mark;
            // the others are backlogged exactly when rows went back.
            let saturated: HashSet<String> = saturated.into_iter().collect();
            let mut backlogged = self.backlogged.lock().unwrap_or_else(|e| e.into_inner());
            backlogged.retain(|endpoint| saturated.contains(endpoint));
            backlogged.extend(handed_back);
        }
        if !over_limit.is_empty()
            && let Err(error) = self.release(&over_limit).await
        {
            tracing::warn!(%error, "releasing deliveries; their leases will lapse");
        }
    }

    /// Delivers `first`, then, while its endpoint is backlogged, that
    /// endpoint's next due deliveries, holding the caller's lane.
    async fn drain_lane(&self, first: Claimed) {
        let endpoint_id = first.endpoint_id.clone();
        // A rate-limited endpoint's deliveries are postponed rather than
        // sent; draining would only postpone them all.
        let mut drain = first.target.rate_limit_per_second.is_none();
        self.deliver(first).await;
        while drain && self.should_drain(&endpoint_id) && !self.shutdown.is_cancelled() {
            match self.claim_next(&endpoint_id).await {
                Ok(Some(delivery)) => {
                    drain = delivery.target.rate_limit_per_second.is_none();
                    self.deliver(delivery).await;
                }
                Ok(None) => {
                    let mut backlogged = self.backlogged.lock().unwrap_or_else(|e| e.into_inner());
                    backlogged.remove(&endpoint_id);
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, endpoint = %endpoint_id, "claiming an endpoint's next delivery");
                    break;
                }
            }
        }
    }

    fn should_drain(&self, endpoint_id: &str) -> bool {
        let backlogged = self.backlogged.lock().unwrap_or_else(|e| e.into_inner());
        backlogged.len() <= DRAINED_ENDPOINTS && backlogged.contains(endpoint_id)
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
    async fn claim(&self, saturated: &[String]) -> Result<Vec<Claimed>, sqlx::Error> {
        sqlx::query_as(&claim_sql("d.endpoint_id <> ALL($3)", "$2"))
            .bind(self.lease_seconds())
            .bind(CLAIM_BATCH)
            .bind(saturated)
            .fetch_all(&self.pool)
            .await
    }

    /// Leases one endpoint's next due delivery.
    async fn claim_next(&self, endpoint_id: &str) -> Result<Option<Claimed>, sqlx::Error> {
        sqlx::query_as(&claim_sql("d.endpoint_id = $2", "1"))
            .bind(self.lease_seconds())
            .bind(endpoint_id)
            .fetch_optional(&self.pool)
            .await
    }

    fn lease_seconds(&self) -> f64 {
        (self.settings.timeout + Duration::from_secs(5)).as_secs_f64()
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
        let target = &delivery.target;
        if !target.enabled {
            return self.finish(delivery, "failed").await;
        }
        if let Some(wait) = target
            .rate_limit_per_second
            .and_then(|limit| self.throttle(&delivery.endpoint_id, limit))
        {
            // Over the endpoint's rate: not an attempt, just later.
            return self.postpone(&delivery.id, wait).await;
        }
        let outcome = self.send(delivery, target).await?;
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

    /// Hands a success to the batch writer; waits only when it is behind.
    async fn record_success(&self, delivery: &Claimed, outcome: &Outcome) -> anyhow::Result<()> {
        let success = Success {
            delivery_id: delivery.id.clone(),
            endpoint_id: delivery.endpoint_id.clone(),
            attempts: delivery.attempts + 1,
            http_status: outcome.status.map_or(0, |s| i32::from(s.as_u16())),
            latency_ms: outcome.latency.as_millis().min(i32::MAX as u128) as i32,
            excerpt: outcome.excerpt.clone(),
        };
        self.successes
            .send(success)
            .await
            .map_err(|_| anyhow::anyhow!("the success writer has stopped"))
    }

    /// Records the attempt, then finishes the delivery or schedules the
    /// next attempt. 410 Gone disables the endpoint.
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
        self.track_failure(&mut tx, &delivery.endpoint_id).await?;
        let (status, next) = match outcome.status {
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

    /// Starts the endpoint's failing streak (successes end it, see
    /// [`write_successes`]), and disables the endpoint once the streak has
    /// lasted `disable_after`, telling the workspace with a
    /// `webhook.endpoint.disabled` event.
    async fn track_failure(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        endpoint_id: &str,
    ) -> anyhow::Result<()> {
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

/// The claim statement: lease up to `limit` due deliveries matching
/// `filter` (`$1` is the lease in seconds), and return them with their
/// endpoint and event body.
fn claim_sql(filter: &str, limit: &str) -> String {
    format!(
        "WITH claimed AS (
         UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $1)
         WHERE id IN (SELECT d.id FROM deliveries d
                      WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND {filter}
                        -- Ordered deliveries wait for every earlier pending
                        -- one of the same conversation (in flight included).
                        AND (d.ordering_key IS NULL OR NOT EXISTS (
                            SELECT 1 FROM deliveries earlier
                            WHERE earlier.endpoint_id = d.endpoint_id
                              AND earlier.ordering_key = d.ordering_key
                              AND earlier.status = 'pending'
                              AND earlier.sequence < d.sequence))
                      ORDER BY d.next_attempt_at LIMIT {limit} FOR UPDATE SKIP LOCKED)
         RETURNING id, endpoint_id, event_id, attempts)
         SELECT c.id, c.endpoint_id, c.event_id, c.attempts,
                e.url, e.enabled, e.secret_sealed, e.previous_secret_sealed, e.previous_secret_expires_at,
                e.rate_limit_per_second, ev.body
         FROM claimed c JOIN endpoints e ON e.id = c.endpoint_id JOIN events ev ON ev.id = c.event_id"
    )
}

/// Records successes as they come, each write taking every one that
/// finished during the previous write: one statement and one commit for
/// many deliveries when the dispatcher is busy.
async fn record_successes(pool: PgPool, mut finished: mpsc::Receiver<Success>) {
    let mut batch = Vec::with_capacity(SUCCESS_BATCH);
    while finished.recv_many(&mut batch, SUCCESS_BATCH).await > 0 {
        if let Err(error) = write_successes(&pool, &batch).await {
            tracing::warn!(
                %error, deliveries = batch.len(),
                "recording successful deliveries failed; they will be sent again when their leases lapse"
            );
        }
        batch.clear();
    }
}

/// The attempts, the deliveries done, and their endpoints' failure streaks
/// over, in one statement.
async fn write_successes(pool: &PgPool, batch: &[Success]) -> Result<(), sqlx::Error> {
    let column = |f: fn(&Success) -> &str| batch.iter().map(f).collect::<Vec<&str>>();
    let number = |f: fn(&Success) -> i32| batch.iter().map(f).collect::<Vec<i32>>();
    sqlx::query(
        "WITH done AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::text[])
                 AS t(delivery_id, endpoint_id, attempts, http_status, latency_ms, excerpt)
         ), attempt AS (
             INSERT INTO attempts (delivery_id, http_status, error, latency_ms, response_excerpt)
             SELECT delivery_id, http_status, '', latency_ms, excerpt FROM done
         ), healthy AS (
             UPDATE endpoints SET failing_since = NULL
             WHERE id IN (SELECT endpoint_id FROM done) AND failing_since IS NOT NULL
         )
         UPDATE deliveries d SET status = 'succeeded', attempts = done.attempts, updated_at = now()
         FROM done WHERE d.id = done.delivery_id",
    )
    .bind(column(|s| &s.delivery_id))
    .bind(column(|s| &s.endpoint_id))
    .bind(number(|s| s.attempts))
    .bind(number(|s| s.http_status))
    .bind(number(|s| s.latency_ms))
    .bind(column(|s| &s.excerpt))
    .execute(pool)
    .await
    .map(|_| ())
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
