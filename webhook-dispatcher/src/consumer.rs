//! Turns events from the `events` exchange into deliveries: one row per
//! matching enabled endpoint of the event's workspace, committed before the
//! message is acknowledged, so a crash at any point loses nothing (an
//! unacknowledged message comes back; recording it twice is a no-op).

use std::time::Duration;

use futures_util::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use serde::Deserialize;
use service_runtime::amqp;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{endpoint_rules, endpoints::new_id};

pub const WAKE_CHANNEL: &str = "webhooks_deliveries";

/// The dispatcher's queue on `exchange`.
pub fn queue_name(exchange: &str) -> String {
    format!("webhook-dispatcher.{exchange}")
}

#[derive(Deserialize)]
struct Head {
    id: String,
    event: String,
    workspace_id: String,
    #[serde(default)]
    data: serde_json::Value,
}

impl Head {
    /// The conversation an event is about, if any: the key of ordered
    /// delivery.
    fn conversation(&self) -> Option<&str> {
        self.data["conversation"]["id"]
            .as_str()
            .or_else(|| self.data["message"]["conversation_id"].as_str())
    }
}

pub fn spawn(pool: PgPool, amqp_url: String, exchange: String, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = consume(&pool, &amqp_url, &exchange) => {
                    if let Err(error) = outcome {
                        tracing::warn!(%error, "event consumer stopped; reconnecting");
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

async fn consume(pool: &PgPool, amqp_url: &str, exchange: &str) -> anyhow::Result<()> {
    // Setting up must not hang on a half-open broker connection.
    let setup = tokio::time::timeout(Duration::from_secs(15), subscribe(amqp_url, exchange));
    let (_connection, mut messages) = setup
        .await
        .map_err(|_| anyhow::anyhow!("RabbitMQ did not finish the consumer set-up within 15 s"))??;
    while let Some(message) = messages.next().await {
        let message = message?;
        match record(pool, &message.data).await {
            Ok(()) => {
                message.ack(BasicAckOptions::default()).await?;
            }
            Err(RecordError::Malformed(reason)) => {
                // Redelivering a message that can never parse would block
                // the queue; drop it loudly instead.
                tracing::error!(reason, "dropping a malformed event");
                message.ack(BasicAckOptions::default()).await?;
            }
            Err(RecordError::Database(error)) => {
                tracing::warn!(%error, "recording an event failed; it will be redelivered");
                message
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(())
}

/// Connects, declares the exchange and the dispatcher's queue, and starts
/// consuming. The connection is returned to keep it open.
async fn subscribe(amqp_url: &str, exchange: &str) -> anyhow::Result<(lapin::Connection, lapin::Consumer)> {
    let connection = amqp::connect(amqp_url).await?;
    let channel = connection.create_channel().await?;
    amqp::declare_exchange(&channel, exchange).await?;
    let queue = queue_name(exchange);
    // A quorum queue: replicated, durable, and what RabbitMQ recommends for
    // data that must not be lost.
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(queue.as_str().into(), durable, arguments).await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel.basic_qos(200, BasicQosOptions::default()).await?;
    let messages = channel
        .basic_consume(
            queue.as_str().into(),
            "webhook-dispatcher".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue, "consuming events");
    Ok((connection, messages))
}

#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Stores the event and one pending delivery per interested endpoint.
async fn record(pool: &PgPool, body: &[u8]) -> Result<(), RecordError> {
    let head: Head = serde_json::from_slice(body).map_err(|e| RecordError::Malformed(e.to_string()))?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO events (id, workspace_id, event_type, body) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&head.id)
    .bind(&head.workspace_id)
    .bind(&head.event)
    .bind(body)
    .execute(&mut *tx)
    .await?;
    let endpoints: Vec<(String, Vec<String>, bool)> = sqlx::query_as(
        "SELECT id, event_types, ordered_by_conversation FROM endpoints WHERE workspace_id = $1 AND enabled",
    )
    .bind(&head.workspace_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut created = 0;
    for (endpoint_id, filters, ordered) in endpoints {
        if !endpoint_rules::wants(&filters, &head.event) {
            continue;
        }
        created += sqlx::query(
            "INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_type, status, ordering_key)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6) ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        )
        .bind(new_id("dlv_"))
        .bind(&head.workspace_id)
        .bind(&endpoint_id)
        .bind(&head.id)
        .bind(&head.event)
        .bind(if ordered { head.conversation() } else { None })
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    if created > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKE_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
