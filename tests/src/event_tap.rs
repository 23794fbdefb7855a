//! Listens on a test stack's events exchange through a private queue, so a
//! test sees exactly what a subscriber of `events` would.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::{
    Connection,
    options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use serde_json::Value;
use tokio::sync::mpsc;

pub struct EventTap {
    events: mpsc::UnboundedReceiver<Value>,
    _connection: Connection,
}

impl EventTap {
    /// Subscribes to every routing key of `exchange`.
    pub async fn subscribe(amqp_url: &str, exchange: &str) -> Self {
        let connection = event_pipeline::broker::connect(amqp_url)
            .await
            .expect("RabbitMQ for the event tap");
        let channel = connection.create_channel().await.expect("a channel");
        event_pipeline::broker::declare_exchange(&channel, exchange)
            .await
            .expect("the events exchange");
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("a private queue");
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("binding the tap");
        let mut consumer = channel
            .basic_consume(
                queue.name().clone(),
                "tap".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consuming");
        let (sender, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let _ = delivery.ack(BasicAckOptions::default()).await;
                let event: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
                if sender.send(event).is_err() {
                    return;
                }
            }
        });
        Self {
            events,
            _connection: connection,
        }
    }

    /// Discards events up to and including the next one of `kind`, so
    /// events of earlier steps that the relay published late (it runs on
    /// its own schedule) do not count as the next step's; fails after
    /// `wait` without one.
    pub async fn skip_until(&mut self, kind: &str, wait: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if event["event"] == kind => return event,
                Ok(Some(_)) => {}
                _ => panic!("no {kind} event within {wait:?}"),
            }
        }
    }

    /// The next `count` events, failing after `wait` without them.
    pub async fn take(&mut self, count: usize, wait: Duration) -> Vec<Value> {
        let mut taken = Vec::with_capacity(count);
        let deadline = tokio::time::Instant::now() + wait;
        while taken.len() < count {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => taken.push(event),
                _ => panic!(
                    "expected {count} events within {wait:?}, got {}: {taken:#?}",
                    taken.len()
                ),
            }
        }
        taken
    }

    /// Asserts that nothing arrives for `quiet`.
    pub async fn expect_none(&mut self, quiet: Duration) {
        if let Ok(Some(event)) = tokio::time::timeout(quiet, self.events.recv()).await {
            panic!("expected no event, got {event:#}");
        }
    }
}
