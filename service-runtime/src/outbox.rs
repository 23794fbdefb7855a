//! The transactional outbox: a service records an event in the same
//! database transaction as the change it describes, and a relay publishes
//! recorded events to RabbitMQ, removing them from the table only once the
//! broker has confirmed them. A crash between the two loses nothing (the
//! event is still in the table) and a broker outage only delays events.
//! The table is a queue, not an archive: it holds what is yet to be sent,
//! so it stays small and its statements keep cheap plans. Consumers keep
//! what they need (the webhook dispatcher stores every event it receives).
//!
//! One relay per service is active at a time (a PostgreSQL advisory lock
//! elects it), so events leave in the order they were committed and two
//! replicas never publish the same row concurrently. Delivery is
//! at-least-once: consumers deduplicate by event id.
//!
//! Each service's migrations create the table:
//! ```sql
//! CREATE TABLE outbox (id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE,
//!     workspace_id text NOT NULL, event_type text NOT NULL, body bytea NOT NULL,
//!     created_at timestamptz NOT NULL DEFAULT now());
//! ```
//! (Older migrations also added a `published_at` column, which the relay no
//! longer sets: each service's `outbox_as_queue` migration removed the rows
//! published before the change.)

use std::{sync::LazyLock, time::Duration};

use lapin::{
    BasicProperties, Channel, Confirmation,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use sqlx::{
    PgPool, Postgres, Transaction,
    pool::PoolConnection,
    postgres::{PgArguments, PgListener},
    query::Query,
};
use tokio_util::sync::CancellationToken;

use crate::{amqp, events::Envelope};

const BATCH: i64 = 500;
/// How soon events that no queue would take are offered again.
const UNROUTABLE_RETRY: Duration = Duration::from_millis(200);
/// Longest wait for the broker in any one step (opening a channel, or
/// publishing a batch and hearing its confirms); past it the session is
/// treated as dead and reopened.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a service records its events.
#[derive(Debug, Clone)]
pub struct Outbox {
    notify_channel: String,
}

impl Outbox {
    /// The outbox in `schema` (the service's own).
    pub fn new(schema: &str) -> Self {
        Self {
            notify_channel: format!("{schema}_outbox"),
        }
    }

    /// Records `envelope` inside `tx`. The relay is woken on commit (NOTIFY
    /// is transactional), so events leave within milliseconds.
    pub async fn record(&self, tx: &mut Transaction<'_, Postgres>, envelope: &Envelope) -> Result<(), sqlx::Error> {
        // One round trip for both: this runs inside every state change.
        static RECORD: LazyLock<String> = LazyLock::new(|| Outbox::insert(None, 1));
        self.bind(sqlx::query(&RECORD), envelope).execute(&mut **tx).await?;
        Ok(())
    }

    /// SQL that records the event bound at `$first`..`$first + 4` (by
    /// [`Outbox::bind`]) and wakes the relay: once for each row of the CTE
    /// `source` if one is given, so a statement that makes a change can
    /// record its event in the same round trip, and only if the change
    /// happened. Used as a data-modifying CTE, it runs whether or not the
    /// statement reads it.
    pub fn insert(source: Option<&str>, first: usize) -> String {
        let [id, workspace, event_type, body, channel] = std::array::from_fn(|i| first + i);
        let from = source.map(|cte| format!(" FROM {cte}")).unwrap_or_default();
        format!(
            "INSERT INTO outbox (event_id, workspace_id, event_type, body)
             SELECT ${id}, ${workspace}, ${event_type}, ${body}{from}
             RETURNING pg_notify(${channel}, '')"
        )
    }

    /// Binds the parameters of [`Outbox::insert`], after those already bound.
    pub fn bind<'q>(
        &'q self,
        query: Query<'q, Postgres, PgArguments>,
        envelope: &'q Envelope,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(&envelope.id)
            .bind(&envelope.workspace_id)
            .bind(&envelope.event_type)
            .bind(&envelope.body)
            .bind(&self.notify_channel)
    }
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub amqp_url: String,
    pub exchange: String,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("outbox: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Amqp(#[from] amqp::AmqpError),
    #[error("RabbitMQ: {0}")]
    Publish(#[from] lapin::Error),
    #[error("RabbitMQ refused event {0}")]
    Refused(String),
    #[error("no queue is bound to the events exchange for event {0}; events wait in the outbox until one is")]
    Unroutable(String),
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
}

/// Runs the relay for `outbox` until `shutdown`.
pub fn spawn_relay(pool: PgPool, outbox: Outbox, config: RelayConfig, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let relay = Relay { pool, outbox, config };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = relay.lead(&shutdown) => {
                    if let Err(error) = outcome {
                        tracing::warn!(%error, "outbox relay stopped; retrying");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

struct Relay {
    pool: PgPool,
    outbox: Outbox,
    config: RelayConfig,
}

impl Relay {
    /// Becomes the relay if no other replica is, and publishes until the
    /// database connection fails or shutdown.
    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let mut leader = self.pool.acquire().await?;
        let elected: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&self.outbox.notify_channel)
            .fetch_one(&mut *leader)
            .await?;
        if !elected {
            return Ok(());
        }
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.outbox.notify_channel).await?;
        let mut sent = Vec::new();
        let outcome = self
            .publish_while_connected(&mut leader, &mut listener, &mut sent, shutdown)
            .await;
        // Removed before another replica can lead, or it would publish them
        // again (harmless, consumers deduplicate, but noisy).
        if let Err(error) = remove(&mut leader, &sent).await {
            tracing::warn!(%error, events = sent.len(), "removing published events; they will be sent again");
        }
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(&self.outbox.notify_channel)
            .execute(&mut *leader)
            .await;
        outcome
    }

    /// Keeps a RabbitMQ session open (reconnecting with backoff) and drains
    /// the outbox whenever it is woken.
    async fn publish_while_connected(
        &self,
        leader: &mut PoolConnection<Postgres>,
        listener: &mut PgListener,
        sent: &mut Vec<i64>,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let mut backoff = Duration::from_millis(250);
        loop {
            let opening = tokio::time::timeout(BROKER_TIMEOUT, self.open_channel());
            let channel = match opening.await.unwrap_or(Err(RelayError::Timeout(BROKER_TIMEOUT))) {
                Ok(channel) => channel,
                Err(error) => {
                    tracing::warn!(%error, "outbox relay cannot reach RabbitMQ; events wait in the outbox");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            backoff = Duration::from_millis(250);
            let mut waiting_for_queue = false;
            loop {
                let draining =
                    tokio::time::timeout(BROKER_TIMEOUT, drain(leader, &channel, &self.config.exchange, sent));
                match draining.await.unwrap_or(Err(RelayError::Timeout(BROKER_TIMEOUT))) {
                    Ok(BATCH_FULL) => {
                        waiting_for_queue = false;
                        continue;
                    }
                    Ok(_) => waiting_for_queue = false,
                    Err(RelayError::Database(error)) => return Err(RelayError::Database(error)),
                    // The session is fine; what is missing is a consumer's
                    // queue, which its service declares when it starts.
                    Err(error @ RelayError::Unroutable(_)) => {
                        // Once per wait, not every retry.
                        if !waiting_for_queue {
                            tracing::warn!(%error, "outbox relay waiting for a queue");
                            waiting_for_queue = true;
                        }
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(UNROUTABLE_RETRY) => {}
                        }
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "publishing from the outbox failed; reconnecting");
                        let _ = channel.close(200, "reconnecting".into()).await;
                        break;
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = listener.recv() => {
                        // One drain covers every commit announced so far
                        // (NOTIFY arrives after its commit); a busy writer
                        // would otherwise queue one drain per event.
                        while listener.next_buffered().is_some() {}
                    }
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }

    async fn open_channel(&self) -> Result<Channel, RelayError> {
        let connection = amqp::connect(&self.config.amqp_url).await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        amqp::declare_exchange(&channel, &self.config.exchange).await?;
        Ok(channel)
    }
}

const BATCH_FULL: usize = BATCH as usize;

#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    event_id: String,
    event_type: String,
    body: Vec<u8>,
}

/// Publishes the oldest events still in the outbox, in order, as
/// persistent messages, and leaves the ones the broker confirmed in `sent`.
///
/// Removing them is off the events' path, so it rides along with the next
/// fetch: one statement per batch instead of two. The fetch skips them,
/// since it reads the table as it was before the removal.
async fn drain(
    leader: &mut PoolConnection<Postgres>,
    channel: &Channel,
    exchange: &str,
    sent: &mut Vec<i64>,
) -> Result<usize, RelayError> {
    // Taken now: if this fails midway they are published again, never lost.
    let removing = std::mem::take(sent);
    let pending: Vec<Pending> = sqlx::query_as(
        "WITH removed AS (DELETE FROM outbox WHERE id = ANY($2))
         SELECT id, event_id, event_type, body FROM outbox
         WHERE id <> ALL($2) ORDER BY id LIMIT $1",
    )
    .bind(BATCH)
    .bind(&removing)
    .fetch_all(&mut **leader)
    .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut confirms = Vec::with_capacity(pending.len());
    for event in &pending {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(event.event_id.as_str().into());
        let confirm = channel
            .basic_publish(
                exchange.into(),
                event.event_type.as_str().into(),
                // Mandatory: an event no queue is bound for (the dispatcher
                // has never started, or its queue was deleted) comes back
                // rather than being dropped, and waits in the outbox.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &event.body,
                properties,
            )
            .await?;
        confirms.push(confirm);
    }
    // Only a confirmed prefix counts as published, so order holds even if
    // the broker refuses one event midway: the rest are sent again next
    // time.
    let mut failure = None;
    let mut confirmed = 0;
    for (event, confirm) in pending.iter().zip(confirms) {
        match confirm.await? {
            Confirmation::Ack(None) if failure.is_none() => {
                sent.push(event.id);
                confirmed += 1;
            }
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(_)) => {
                failure = failure.or(Some(RelayError::Unroutable(event.event_id.clone())));
            }
            _ => failure = failure.or(Some(RelayError::Refused(event.event_id.clone()))),
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(confirmed),
    }
}

async fn remove(leader: &mut PoolConnection<Postgres>, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut **leader)
        .await?;
    Ok(())
}
