//! How many events wait in a consumer's queue, for its `/metrics`: a
//! passive declare on a connection kept for scrapes, so a scrape costs one
//! broker round trip and never touches the consumer's own channel.

use std::time::Duration;

use lapin::{Channel, Connection, options::QueueDeclareOptions, types::FieldTable};
use service_runtime::exposition::{Exposition, Kind};
use tokio::sync::Mutex;

use crate::broker::{self, AmqpError};

/// Longest a scrape waits for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct QueueDepth {
    amqp_url: String,
    queue: String,
    session: Mutex<Option<(Connection, Channel)>>,
}

impl QueueDepth {
    pub fn new(amqp_url: &str, queue: &str) -> Self {
        Self {
            amqp_url: amqp_url.to_owned(),
            queue: queue.to_owned(),
            session: Mutex::new(None),
        }
    }

    /// The `events_queue_*` gauges; none when the broker or the queue
    /// cannot be read (the scrape says so in the log, and the next one
    /// reconnects).
    pub async fn write(&self, out: &mut Exposition) {
        let probed = tokio::time::timeout(PROBE_TIMEOUT, self.probe()).await;
        let (ready, consumers) = match probed {
            Ok(Ok(depth)) => depth,
            Ok(Err(error)) => {
                tracing::warn!(%error, queue = %self.queue, "reading the queue depth for /metrics");
                *self.session.lock().await = None;
                return;
            }
            Err(_) => {
                tracing::warn!(queue = %self.queue, "RabbitMQ did not answer a queue depth probe in time");
                *self.session.lock().await = None;
                return;
            }
        };
        let labels = [("queue", self.queue.as_str())];
        out.family(
            "events_queue_messages_ready",
            Kind::Gauge,
            "Events in the consumer's RabbitMQ queue not yet handed to it.",
        );
        out.sample("events_queue_messages_ready", &labels, ready);
        out.family(
            "events_queue_consumers",
            Kind::Gauge,
            "Consumers attached to the queue (0: nothing is reading it).",
        );
        out.sample("events_queue_consumers", &labels, consumers);
    }

    async fn probe(&self) -> Result<(u32, u32), AmqpError> {
        let mut session = self.session.lock().await;
        if !session
            .as_ref()
            .is_some_and(|(_, channel)| channel.status().connected())
        {
            let connection = broker::connect(&self.amqp_url).await?;
            let channel = connection.create_channel().await?;
            *session = Some((connection, channel));
        }
        let (_, channel) = session.as_ref().expect("opened above");
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(self.queue.as_str().into(), passive, FieldTable::default())
            .await?;
        Ok((queue.message_count(), queue.consumer_count()))
    }
}
