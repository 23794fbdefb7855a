//! Recording what an attempt came to: a success finishes the delivery; a
//! failure is an attempt row and either a scheduled retry or the end.
//!
//! Successes are the common case and are written in batches by one task
//! that takes whatever finished during its previous write: one statement
//! and one commit for many deliveries when the dispatcher is busy.
//! Failures are rare and each gets its own transaction, since they may
//! disable the endpoint and tell its workspace.
//!
//! Every write to a delivery is fenced by the lease the attempt ran under:
//! if the row was given a new life meanwhile (retried now, replayed, or
//! claimed again after its lease lapsed), an outcome recorded late must not
//! overwrite it. The attempt itself is still recorded.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use event_pipeline::{Envelope, Outbox, catalog};
use ids::{DeliveryId, EndpointId};
use outbound_http::RetrySchedule;
use reqwest::StatusCode;
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::{leases::Leased, request::Outcome};

/// Successes recorded in one statement at most, and waiting at most.
const SUCCESS_BATCH: usize = 500;
const SUCCESS_QUEUE: usize = 4096;
/// How long the writer gathers successes before writing a short batch.
/// Recording is off the delivery's path (the webhook has arrived), so a
/// little wait buys many fewer statements at a steady rate; a crash within
/// it only means those deliveries are sent again.
const SUCCESS_LINGER: Duration = Duration::from_millis(20);

/// How attempts have ended since the process started, for `/metrics`.
#[derive(Default)]
pub struct DeliveryCounts {
    pub succeeded: AtomicU64,
    /// Failed for good: every attempt used, 410 Gone, or the endpoint
    /// disabled meanwhile.
    pub failed: AtomicU64,
    /// Failed and scheduled again.
    pub retried: AtomicU64,
    pub endpoints_disabled: AtomicU64,
}

impl DeliveryCounts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct Recorder {
    pub counts: Arc<DeliveryCounts>,
    pool: PgPool,
    outbox: Outbox,
    schedule: RetrySchedule,
    disable_after: Duration,
    successes: mpsc::Sender<Success>,
}

/// A successful attempt waiting to be recorded.
struct Success {
    delivery_id: DeliveryId,
    lease: DateTime<Utc>,
    endpoint_id: EndpointId,
    attempts: i32,
    http_status: i32,
    latency_ms: i32,
    excerpt: String,
}

impl Recorder {
    /// Starts the success writer.
    pub fn start(pool: PgPool, outbox: Outbox, schedule: RetrySchedule, disable_after: Duration) -> Self {
        let (successes, finished) = mpsc::channel(SUCCESS_QUEUE);
        tokio::spawn(record_successes(pool.clone(), finished));
        Self {
            counts: Arc::default(),
            pool,
            outbox,
            schedule,
            disable_after,
            successes,
        }
    }

    /// Records the attempt, then finishes the delivery or schedules the
    /// next attempt. 410 Gone disables the endpoint.
    pub async fn record(&self, delivery: &Leased, outcome: &Outcome) -> anyhow::Result<()> {
        if outcome.succeeded() {
            return self.record_success(delivery, outcome).await;
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO attempts (delivery_id, http_status, error, latency_ms, response_excerpt) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&delivery.id)
        .bind(outcome.http_status())
        .bind(&outcome.error)
        .bind(outcome.latency_ms())
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
                DeliveryCounts::add(&self.counts.endpoints_disabled);
                ("failed", None)
            }
            _ => match self.schedule.next_delay(attempts as usize, outcome.retry_after) {
                Some(delay) => ("pending", Some(delay)),
                None => ("failed", None),
            },
        };
        sqlx::query(
            "UPDATE deliveries SET status = $2, attempts = $3,
                 next_attempt_at = now() + make_interval(secs => $4), updated_at = now()
             WHERE id = $1 AND next_attempt_at = $5 AND status = 'pending'",
        )
        .bind(&delivery.id)
        .bind(status)
        .bind(attempts)
        .bind(next.unwrap_or_default().as_secs_f64())
        .bind(delivery.lease)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        DeliveryCounts::add(match status {
            "failed" => &self.counts.failed,
            _ => &self.counts.retried,
        });
        Ok(())
    }

    /// Hands a success to the batch writer; waits only when it is behind.
    async fn record_success(&self, delivery: &Leased, outcome: &Outcome) -> anyhow::Result<()> {
        let success = Success {
            delivery_id: delivery.id.clone(),
            lease: delivery.lease,
            endpoint_id: delivery.endpoint_id.clone(),
            attempts: delivery.attempts + 1,
            http_status: outcome.http_status().unwrap_or_default(),
            latency_ms: outcome.latency_ms(),
            excerpt: outcome.excerpt.clone(),
        };
        self.successes
            .send(success)
            .await
            .map_err(|_| anyhow::anyhow!("the success writer has stopped"))?;
        DeliveryCounts::add(&self.counts.succeeded);
        Ok(())
    }

    /// Starts the endpoint's failing streak (successes end it, see
    /// [`write_successes`]), and disables the endpoint once the streak has
    /// lasted `disable_after`, telling the workspace with a
    /// `webhook.endpoint.disabled` event.
    async fn track_failure(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        endpoint_id: &EndpointId,
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
        if failing_for < self.disable_after {
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
        tracing::warn!(endpoint = %endpoint_id, reason, "endpoint disabled");
        DeliveryCounts::add(&self.counts.endpoints_disabled);
        let event = Envelope::new(
            catalog::WEBHOOK_ENDPOINT_DISABLED,
            &workspace_id,
            serde_json::json!({"endpoint_id": endpoint_id, "reason": reason}),
        );
        self.outbox.record(tx, &event).await?;
        Ok(())
    }

    /// Over the endpoint's rate limit: not an attempt, just later.
    pub async fn postpone(&self, delivery: &Leased, wait: Duration) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $2)
             WHERE id = $1 AND next_attempt_at = $3 AND status = 'pending'",
        )
        .bind(&delivery.id)
        .bind(wait.as_secs_f64())
        .bind(delivery.lease)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a delivery that will not be sent (its endpoint was disabled).
    pub async fn abandon(&self, delivery: &Leased) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = 'failed', updated_at = now()
             WHERE id = $1 AND next_attempt_at = $2 AND status = 'pending'",
        )
        .bind(&delivery.id)
        .bind(delivery.lease)
        .execute(&self.pool)
        .await?;
        DeliveryCounts::add(&self.counts.failed);
        Ok(())
    }
}

async fn record_successes(pool: PgPool, mut finished: mpsc::Receiver<Success>) {
    let mut batch = Vec::with_capacity(SUCCESS_BATCH);
    while finished.recv_many(&mut batch, SUCCESS_BATCH).await > 0 {
        let deadline = tokio::time::Instant::now() + SUCCESS_LINGER;
        while batch.len() < SUCCESS_BATCH {
            let room = SUCCESS_BATCH - batch.len();
            let more = finished.recv_many(&mut batch, room);
            match tokio::time::timeout_at(deadline, more).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Err(error) = write_successes(&pool, &batch).await {
            tracing::warn!(
                %error, deliveries = batch.len(),
                "recording successful deliveries failed; they will be sent again when their leases lapse"
            );
        }
        batch.clear();
    }
}

/// The attempts, the deliveries done (those still under the attempt's
/// lease), and their endpoints' failure streaks over, in one statement.
/// Deliveries deleted meanwhile (with their endpoint) are passed over
/// rather than failing the whole batch.
async fn write_successes(pool: &PgPool, batch: &[Success]) -> Result<(), sqlx::Error> {
    let column = |f: fn(&Success) -> &str| batch.iter().map(f).collect::<Vec<&str>>();
    let deliveries: Vec<&DeliveryId> = batch.iter().map(|s| &s.delivery_id).collect();
    let endpoints: Vec<&EndpointId> = batch.iter().map(|s| &s.endpoint_id).collect();
    let number = |f: fn(&Success) -> i32| batch.iter().map(f).collect::<Vec<i32>>();
    let leases: Vec<DateTime<Utc>> = batch.iter().map(|s| s.lease).collect();
    sqlx::query(
        "WITH t AS (
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::text[], $7::timestamptz[])
                 AS t(delivery_id, endpoint_id, attempts, http_status, latency_ms, excerpt, lease)
         ), done AS (
             UPDATE deliveries d SET status = 'succeeded', attempts = t.attempts, updated_at = now()
             FROM t WHERE d.id = t.delivery_id AND d.next_attempt_at = t.lease AND d.status = 'pending'
         ), healthy AS (
             UPDATE endpoints SET failing_since = NULL
             WHERE id IN (SELECT endpoint_id FROM t) AND failing_since IS NOT NULL
         )
         INSERT INTO attempts (delivery_id, http_status, error, latency_ms, response_excerpt)
         SELECT t.delivery_id, t.http_status, '', t.latency_ms, t.excerpt
         FROM t JOIN deliveries d ON d.id = t.delivery_id",
    )
    .bind(&deliveries)
    .bind(&endpoints)
    .bind(number(|s| s.attempts))
    .bind(number(|s| s.http_status))
    .bind(number(|s| s.latency_ms))
    .bind(column(|s| &s.excerpt))
    .bind(&leases)
    // Planned for each batch: a plan cached while `deliveries` was small
    // would scan it whole once it is not.
    .persistent(false)
    .execute(pool)
    .await
    .map(|_| ())
}
