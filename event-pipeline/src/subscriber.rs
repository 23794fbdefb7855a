//! Consuming events: a durable queue of the consumer's own, bound to the
//! `events` exchange, read in batches that are acknowledged only after the
//! consumer has committed what they mean. A crash at any point loses
//! nothing: an unacknowledged message comes back, so a consumer's handling
//! must be idempotent by event id.
//!
//! The queue is a quorum queue (work to do: acknowledged events are gone)
//! or a stream (a log: events stay for its retention, and a consumer that
//! keeps its own position, committed with what the events changed, can
//! read it again from any point, or from the start to rebuild).

use std::{future::Future, time::Duration};

use futures_util::{FutureExt, StreamExt};
use lapin::{
    Acker, Connection, Consumer,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use service_runtime::{shutdown::slept, telemetry::propagation};
use tokio_util::sync::CancellationToken;

use crate::{
    broker::{self, AmqpError, BrokerSettings},
    envelope::Received,
};

/// The consumer's queue and how it reads it.
#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    /// Routing-key patterns bound to the exchange (`#`: every event).
    pub bindings: Vec<String>,
    /// Unacknowledged messages the broker sends ahead.
    pub prefetch: u16,
    /// Most events handed to the handler at once.
    pub batch: usize,
    pub kind: QueueKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueKind {
    /// Replicated and durable; what RabbitMQ recommends for data that must
    /// not be lost.
    Quorum,
    /// A replicated log keeping events for `max_age` (RabbitMQ's
    /// `x-max-age`, such as `30D`); read from the handler's
    /// [`Handler::resume_after`] position.
    Stream { max_age: String },
}

/// What a consumer does with events.
pub trait Handler: Send + Sync + 'static {
    type Error: std::fmt::Display + Send;

    /// Commits what `events` mean. They are acknowledged once this returns
    /// `Ok`; on `Err` they are all redelivered.
    fn handle(&self, events: Vec<Received>) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// For a stream: the offset of the last event whose effect is committed
    /// (reading resumes after it), or `None` to read from the oldest event
    /// the stream keeps. Quorum queues never ask.
    fn resume_after(&self) -> impl Future<Output = Result<Option<u64>, Self::Error>> + Send {
        std::future::ready(Ok(None))
    }
}

/// How long a connection may take to set up the subscription.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause after a failed batch, so a failing database is not hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Consumes `queue` with `handler` until `shutdown`, reconnecting whenever
/// the broker connection is lost.
pub fn spawn<H: Handler>(broker: BrokerSettings, queue: Queue, handler: H, shutdown: CancellationToken) -> Bound {
    let (bound, watching) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = consume(&broker, &queue, &handler, &bound) => {
                    if let Err(error) = outcome {
                        tracing::warn!(%error, queue = queue.name, "event consumer stopped; reconnecting");
                    }
                }
            }
            if !slept(Duration::from_secs(1), &shutdown).await {
                return;
            }
        }
    });
    Bound(watching)
}

/// Whether a subscriber's queue has been declared and bound. Once it has,
/// the broker keeps the queue's events whether or not a consumer is
/// connected, so a service can say it is ready: nothing published from
/// then on is lost.
pub struct Bound(tokio::sync::watch::Receiver<bool>);

impl Bound {
    /// Resolves once the queue is bound (or the subscriber has stopped).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|bound| *bound).await;
    }
}

async fn consume<H: Handler>(
    broker: &BrokerSettings,
    queue: &Queue,
    handler: &H,
    bound: &tokio::sync::watch::Sender<bool>,
) -> Result<(), AmqpError> {
    let start = match queue.kind {
        QueueKind::Quorum => None,
        QueueKind::Stream { .. } => Some(
            handler
                .resume_after()
                .await
                .map_err(|e| AmqpError::Handler(e.to_string()))?,
        ),
    };
    // Setting up must not hang on a half-open broker connection.
    let (_connection, mut messages) = tokio::time::timeout(SETUP_TIMEOUT, subscribe(broker, queue, start))
        .await
        .map_err(|_| AmqpError::Timeout {
            target: broker::redact(&broker.amqp_url),
            seconds: SETUP_TIMEOUT.as_secs(),
        })??;
    bound.send_replace(true);
    while let Some(first) = messages.next().await {
        // Whatever else has already arrived joins this batch: one commit
        // for many events, never a wait for more.
        let mut batch = vec![first?];
        while batch.len() < queue.batch {
            match messages.next().now_or_never() {
                Some(Some(message)) => batch.push(message?),
                _ => break,
            }
        }
        settle(handler, batch, &queue.kind).await?;
    }
    Ok(())
}

/// Hands a batch to the handler and settles it with one `multiple` ack
/// (or nack): batches are settled in order on one channel, so everything
/// up to the batch's last message is this batch.
async fn settle<H: Handler>(handler: &H, batch: Vec<Delivery>, kind: &QueueKind) -> Result<(), AmqpError> {
    let Some(last) = batch.last().map(|message| message.acker.clone()) else {
        return Ok(());
    };
    let events = parse(batch);
    if events.is_empty() {
        last.ack(BasicAckOptions { multiple: true }).await?;
        return Ok(());
    }
    let count = events.len();
    match handler.handle(events).await {
        Ok(()) => {
            last.ack(BasicAckOptions { multiple: true }).await?;
        }
        Err(error) if *kind != QueueKind::Quorum => {
            // A stream never redelivers by itself: reading again from the
            // handler's committed position does.
            tracing::warn!(%error, events = count, "handling events failed; reading again from the last commit");
            tokio::time::sleep(RETRY_PAUSE).await;
            return Err(AmqpError::Handler(error.to_string()));
        }
        Err(error) => {
            tracing::warn!(%error, events = count, "handling events failed; they will be redelivered");
            requeue(&last).await?;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    Ok(())
}

/// The batch's events. A message that can never parse would block the
/// queue if it were redelivered; it is dropped loudly instead (acked with
/// the batch).
fn parse(batch: Vec<Delivery>) -> Vec<Received> {
    batch
        .into_iter()
        .filter_map(|message| match Received::parse(message.data) {
            Ok(mut event) => {
                event.offset = stream_offset(&message.properties);
                event.traceparent = traceparent(&message.properties);
                Some(event)
            }
            Err(reason) => {
                tracing::error!(%reason, "dropping a message that is not an event");
                None
            }
        })
        .collect()
}

/// The span that published a message (its `traceparent` header).
fn traceparent(properties: &lapin::BasicProperties) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(propagation::HEADER)? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        _ => None,
    }
}

/// Where a message sits in a stream (RabbitMQ's `x-stream-offset` header).
fn stream_offset(properties: &lapin::BasicProperties) -> Option<u64> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get("x-stream-offset")? {
        AMQPValue::LongLongInt(offset) => u64::try_from(*offset).ok(),
        AMQPValue::LongInt(offset) => u64::try_from(*offset).ok(),
        _ => None,
    }
}

async fn requeue(last: &Acker) -> Result<(), AmqpError> {
    last.nack(BasicNackOptions {
        multiple: true,
        requeue: true,
    })
    .await?;
    Ok(())
}

/// Connects, declares the exchange and the queue, and starts consuming (a
/// stream after `start`'s offset, or from its oldest event). The connection
/// is returned to keep it open.
async fn subscribe(
    broker: &BrokerSettings,
    queue: &Queue,
    start: Option<Option<u64>>,
) -> Result<(Connection, Consumer), AmqpError> {
    let connection = broker::connect(&broker.amqp_url).await?;
    let channel = connection.create_channel().await?;
    declare_on(&channel, broker, queue).await?;
    let name = queue.name.as_str();
    channel.basic_qos(queue.prefetch, BasicQosOptions::default()).await?;
    let mut consume_arguments = FieldTable::default();
    if let Some(after) = start {
        let offset = match after {
            Some(offset) => AMQPValue::LongLongInt(i64::try_from(offset + 1).unwrap_or(i64::MAX)),
            None => AMQPValue::LongString("first".into()),
        };
        consume_arguments.insert("x-stream-offset".into(), offset);
    }
    let messages = channel
        .basic_consume(
            name.into(),
            name.into(),
            BasicConsumeOptions::default(),
            consume_arguments,
        )
        .await?;
    tracing::info!(queue = name, "consuming events");
    Ok((connection, messages))
}

/// Declares the exchange and `queue` with its bindings, so events published
/// from now on are kept for the consumer even before it starts reading.
pub async fn declare(broker: &BrokerSettings, queue: &Queue) -> Result<(), AmqpError> {
    let connection = broker::connect(&broker.amqp_url).await?;
    let channel = connection.create_channel().await?;
    declare_on(&channel, broker, queue).await?;
    let _ = connection.close(200, "declared".into()).await;
    Ok(())
}

async fn declare_on(channel: &lapin::Channel, broker: &BrokerSettings, queue: &Queue) -> Result<(), AmqpError> {
    broker::declare_exchange(channel, &broker.exchange).await?;
    let mut arguments = FieldTable::default();
    match &queue.kind {
        QueueKind::Quorum => {
            arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        }
        QueueKind::Stream { max_age } => {
            arguments.insert("x-queue-type".into(), AMQPValue::LongString("stream".into()));
            arguments.insert("x-max-age".into(), AMQPValue::LongString(max_age.as_str().into()));
        }
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let name = queue.name.as_str();
    channel.queue_declare(name.into(), durable, arguments).await?;
    for binding in &queue.bindings {
        channel
            .queue_bind(
                name.into(),
                broker.exchange.as_str().into(),
                binding.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}
