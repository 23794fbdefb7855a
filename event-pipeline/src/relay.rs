//! The outbox relay: publishes recorded events to the `events` exchange in
//! the order they were committed, as persistent messages, and removes them
//! from the outbox only once the broker has confirmed them.
//!
//! One relay per service is active at a time (a PostgreSQL advisory lock
//! elects it), so events leave in order and two replicas never publish the
//! same row concurrently. Delivery is at-least-once: consumers deduplicate
//! by event id.

use std::time::Duration;

use lapin::{
    BasicProperties, Channel, Confirmation,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use service_runtime::{
    shutdown::slept,
    telemetry::{propagation, spans},
};
use sqlx::{PgPool, Postgres, pool::PoolConnection, postgres::PgListener};
use tokio_util::sync::CancellationToken;

use crate::{
    broker::{self, AmqpError, BrokerSettings},
    outbox::Outbox,
};

const BATCH: i64 = 500;
/// How soon events that no queue would take are offered again.
const UNROUTABLE_RETRY: Duration = Duration::from_millis(200);
/// Longest wait for the broker in any one step (opening a channel, or
/// publishing a batch and hearing its confirms); past it the session is
/// treated as dead and reopened.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnection backoff while the broker is unreachable.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often an idle relay looks anyway, in case a wake-up was missed.
const IDLE_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("outbox: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error("RabbitMQ: {0}")]
    Publish(#[from] lapin::Error),
    #[error("RabbitMQ refused event {0}")]
    Refused(String),
    #[error("no queue is bound to the events exchange for event {0}; events wait in the outbox until one is")]
    Unroutable(String),
    #[error("queue {0} does not exist; events wait in the outbox until its consumer declares it")]
    MissingQueue(String),
    #[error("nothing consumes queue {0} yet; events wait in the outbox until its consumer starts")]
    Unconsumed(String),
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
}

/// Runs the relay for `outbox` until `shutdown`.
pub fn spawn(pool: PgPool, outbox: Outbox, broker: BrokerSettings, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let relay = Relay { pool, outbox, broker };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = relay.lead(&shutdown) => {
                    if let Err(error) = outcome {
                        tracing::warn!(%error, "outbox relay stopped; retrying");
                    }
                }
            }
            if !slept(Duration::from_secs(1), &shutdown).await {
                return;
            }
        }
    });
}

struct Relay {
    pool: PgPool,
    outbox: Outbox,
    broker: BrokerSettings,
}

impl Relay {
    /// Becomes the relay if no other replica is, and publishes until the
    /// database connection fails or shutdown.
    async fn lead(&self, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let mut leader = self.pool.acquire().await?;
        let elected: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(self.outbox.notify_channel())
            .fetch_one(&mut *leader)
            .await?;
        if !elected {
            return Ok(());
        }
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(self.outbox.notify_channel()).await?;
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
            .bind(self.outbox.notify_channel())
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
        let mut backoff = FIRST_BACKOFF;
        loop {
            let opening = tokio::time::timeout(BROKER_TIMEOUT, self.open_channel());
            match opening.await.unwrap_or(Err(RelayError::Timeout(BROKER_TIMEOUT))) {
                Ok(channel) => {
                    backoff = FIRST_BACKOFF;
                    let session = self.publish_on(&channel, leader, listener, sent, shutdown).await?;
                    if session == Session::Shutdown {
                        return Ok(());
                    }
                    let _ = channel.close(200, "reconnecting".into()).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox relay cannot reach RabbitMQ; events wait in the outbox");
                    if !slept(backoff, shutdown).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Drains the outbox on `channel` whenever woken, until the channel
    /// fails or shutdown; a database failure ends the leadership.
    async fn publish_on(
        &self,
        channel: &Channel,
        leader: &mut PoolConnection<Postgres>,
        listener: &mut PgListener,
        sent: &mut Vec<i64>,
        shutdown: &CancellationToken,
    ) -> Result<Session, RelayError> {
        let mut waiting_for_queue = false;
        loop {
            let draining = tokio::time::timeout(BROKER_TIMEOUT, drain(leader, channel, &self.broker, sent));
            match draining.await.unwrap_or(Err(RelayError::Timeout(BROKER_TIMEOUT))) {
                Ok(BATCH_FULL) => {
                    waiting_for_queue = false;
                    continue;
                }
                Ok(_) => waiting_for_queue = false,
                Err(RelayError::Database(error)) => return Err(RelayError::Database(error)),
                // The session is fine; what is missing is a consumer's
                // queue, which its service declares when it starts.
                Err(error @ (RelayError::Unroutable(_) | RelayError::Unconsumed(_))) => {
                    // Once per wait, not every retry.
                    if !waiting_for_queue {
                        tracing::warn!(%error, "outbox relay waiting for a queue");
                        waiting_for_queue = true;
                    }
                    if !slept(UNROUTABLE_RETRY, shutdown).await {
                        return Ok(Session::Shutdown);
                    }
                    continue;
                }
                // The broker closed the channel when it found no such queue.
                Err(error @ RelayError::MissingQueue(_)) => {
                    tracing::warn!(%error, "outbox relay waiting for a queue");
                    if !slept(UNROUTABLE_RETRY, shutdown).await {
                        return Ok(Session::Shutdown);
                    }
                    return Ok(Session::Reconnect);
                }
                Err(error) => {
                    tracing::warn!(%error, "publishing from the outbox failed; reconnecting");
                    return Ok(Session::Reconnect);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(Session::Shutdown),
                _ = listener.recv() => {
                    // One drain covers every commit announced so far
                    // (NOTIFY arrives after its commit); a busy writer
                    // would otherwise queue one drain per event.
                    while listener.next_buffered().is_some() {}
                }
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    async fn open_channel(&self) -> Result<Channel, RelayError> {
        let connection = broker::connect(&self.broker.amqp_url).await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        broker::declare_exchange(&channel, &self.broker.exchange).await?;
        Ok(channel)
    }
}

const BATCH_FULL: usize = BATCH as usize;

/// How a broker session ended.
#[derive(Debug, PartialEq, Eq)]
enum Session {
    Shutdown,
    Reconnect,
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    event_id: String,
    event_type: String,
    body: Vec<u8>,
    traceparent: Option<String>,
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
    broker: &BrokerSettings,
    sent: &mut Vec<i64>,
) -> Result<usize, RelayError> {
    let exchange = broker.exchange.as_str();
    // Taken now: if this fails midway they are published again, never lost.
    let removing = std::mem::take(sent);
    let pending: Vec<Pending> = sqlx::query_as(
        "WITH removed AS (DELETE FROM outbox WHERE id = ANY($2))
         SELECT id, event_id, event_type, body, traceparent FROM outbox
         WHERE id <> ALL($2) ORDER BY id LIMIT $1",
    )
    .bind(BATCH)
    .bind(&removing)
    .fetch_all(&mut **leader)
    .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    // One passive declare per batch: a queue deleted a moment ago is seen
    // before this batch is routed past it. A consumer is required as well:
    // consumers declare, then bind, then consume, so a queue just declared
    // may not be bound yet, and an event published then would reach every
    // consumer but that one.
    for queue in &broker.required_queues {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(declared) if declared.consumer_count() > 0 => {}
            Ok(_) => return Err(RelayError::Unconsumed(queue.clone())),
            Err(_) => return Err(RelayError::MissingQueue(queue.clone())),
        }
    }
    let mut confirms = Vec::with_capacity(pending.len());
    // Each event's publish span lasts until the broker confirms it.
    let mut publishing = Vec::with_capacity(pending.len());
    for event in &pending {
        let span = spans::publish(exchange, &event.event_type, &event.event_id);
        propagation::adopt(&span, event.traceparent.as_deref());
        // The consumer's parent: this span, or (when this replica exports
        // no traces) the producer's own.
        let traceparent = propagation::traceparent_of(&span).or_else(|| event.traceparent.clone());
        publishing.push(span);
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(event.event_id.as_str().into());
        if let Some(traceparent) = traceparent {
            let mut headers = FieldTable::default();
            headers.insert(propagation::HEADER.into(), AMQPValue::LongString(traceparent.into()));
            properties = properties.with_headers(headers);
        }
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
    drop(publishing);
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
