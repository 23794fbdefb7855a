//! Turns events from the `events` exchange into deliveries: one row per
//! matching enabled endpoint of the event's workspace, committed before the
//! message is acknowledged, so a crash at any point loses nothing (an
//! unacknowledged message comes back; recording it twice is a no-op).

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::{
    message::Delivery,
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
/// Most events recorded in one transaction (the prefetch allows 200).
const BATCH: usize = 100;

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
    while let Some(first) = messages.next().await {
        // Whatever else has already arrived joins this batch: one
        // transaction and one fsync for many events, never a wait for more.
        let mut batch = vec![first?];
        while batch.len() < BATCH {
            match messages.next().now_or_never() {
                Some(Some(message)) => batch.push(message?),
                _ => break,
            }
        }
        settle(pool, batch).await?;
    }
    Ok(())
}

/// Records a batch of messages and acknowledges each only after the commit.
async fn settle(pool: &PgPool, batch: Vec<Delivery>) -> anyhow::Result<()> {
    let mut events = Vec::with_capacity(batch.len());
    let mut parsed = Vec::with_capacity(batch.len());
    for message in batch {
        match serde_json::from_slice::<Head>(&message.data) {
            Ok(head) => {
                events.push(head);
                parsed.push(message);
            }
            Err(error) => {
                // Redelivering a message that can never parse would block
                // the queue; drop it loudly instead.
                tracing::error!(reason = %error, "dropping a malformed event");
                message.ack(BasicAckOptions::default()).await?;
            }
        }
    }
    if parsed.is_empty() {
        return Ok(());
    }
    let bodies: Vec<&[u8]> = parsed.iter().map(|m| m.data.as_slice()).collect();
    match record(pool, &events, &bodies).await {
        Ok(()) => {
            for message in parsed {
                message.ack(BasicAckOptions::default()).await?;
            }
        }
        Err(error) => {
            tracing::warn!(%error, events = parsed.len(), "recording events failed; they will be redelivered");
            for message in parsed {
                message
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
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

/// Stores the events and one pending delivery per interested endpoint of
/// each event's workspace, in one transaction of three statements.
async fn record(pool: &PgPool, events: &[Head], bodies: &[&[u8]]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let workspaces: Vec<&str> = events.iter().map(|e| e.workspace_id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    sqlx::query(
        "INSERT INTO events (id, workspace_id, event_type, body)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[])
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&workspaces)
    .bind(&types)
    .bind(bodies)
    .execute(&mut *tx)
    .await?;
    let endpoints: Vec<(String, String, Vec<String>, bool)> = sqlx::query_as(
        "SELECT workspace_id, id, event_types, ordered_by_conversation FROM endpoints
         WHERE workspace_id = ANY($1) AND enabled",
    )
    .bind(&workspaces)
    .fetch_all(&mut *tx)
    .await?;
    let mut rows = NewDeliveries::default();
    for event in events {
        for (workspace_id, endpoint_id, filters, ordered) in &endpoints {
            if *workspace_id == event.workspace_id && endpoint_rules::wants(filters, &event.event) {
                rows.push(event, endpoint_id, *ordered);
            }
        }
    }
    let created = rows.insert(&mut tx).await?;
    if created > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKE_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Delivery rows to insert, column by column, in the order the events came
/// (the sequence that ordered endpoints deliver by).
#[derive(Default)]
struct NewDeliveries {
    ids: Vec<String>,
    workspaces: Vec<String>,
    endpoints: Vec<String>,
    events: Vec<String>,
    types: Vec<String>,
    ordering_keys: Vec<Option<String>>,
}

impl NewDeliveries {
    fn push(&mut self, event: &Head, endpoint_id: &str, ordered: bool) {
        self.ids.push(new_id("dlv_"));
        self.workspaces.push(event.workspace_id.clone());
        self.endpoints.push(endpoint_id.to_owned());
        self.events.push(event.id.clone());
        self.types.push(event.event.clone());
        self.ordering_keys.push(if ordered {
            event.conversation().map(str::to_owned)
        } else {
            None
        });
    }

    async fn insert(&self, tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<u64, sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(
            "INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_type, status, ordering_key)
             SELECT id, workspace_id, endpoint_id, event_id, event_type, 'pending', ordering_key
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                  WITH ORDINALITY AS t(id, workspace_id, endpoint_id, event_id, event_type, ordering_key, n)
             ORDER BY n
             ON CONFLICT (endpoint_id, event_id) DO NOTHING",
        )
        .bind(&self.ids)
        .bind(&self.workspaces)
        .bind(&self.endpoints)
        .bind(&self.events)
        .bind(&self.types)
        .bind(&self.ordering_keys)
        .execute(&mut **tx)
        .await?
        .rows_affected())
    }
}
