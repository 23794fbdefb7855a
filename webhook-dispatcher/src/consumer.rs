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

use crate::{
    delivery::{Dispatcher, Leased, Target},
    endpoint_rules,
    endpoints::new_id,
};

pub const WAKE_CHANNEL: &str = "webhooks_deliveries";
/// Most events recorded in one statement (the prefetch allows 1000).
const BATCH: usize = 500;

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

pub fn spawn(pool: PgPool, dispatcher: Dispatcher, amqp_url: String, exchange: String, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = consume(&pool, &dispatcher, &amqp_url, &exchange) => {
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

async fn consume(pool: &PgPool, dispatcher: &Dispatcher, amqp_url: &str, exchange: &str) -> anyhow::Result<()> {
    // Setting up must not hang on a half-open broker connection.
    let setup = tokio::time::timeout(Duration::from_secs(15), subscribe(amqp_url, exchange));
    let (_connection, mut messages) = setup
        .await
        .map_err(|_| anyhow::anyhow!("RabbitMQ did not finish the consumer set-up within 15 s"))??;
    while let Some(first) = messages.next().await {
        // Whatever else has already arrived joins this batch: one
        // statement and one fsync for many events, never a wait for more.
        let mut batch = vec![first?];
        while batch.len() < BATCH {
            match messages.next().now_or_never() {
                Some(Some(message)) => batch.push(message?),
                _ => break,
            }
        }
        settle(pool, dispatcher, batch).await?;
    }
    Ok(())
}

/// Records a batch of messages and acknowledges them only after the commit,
/// with one `multiple` ack (or nack) for the whole batch: batches are
/// settled in order on one channel, so everything up to the batch's last
/// message is this batch.
async fn settle(pool: &PgPool, dispatcher: &Dispatcher, batch: Vec<Delivery>) -> anyhow::Result<()> {
    let Some(last) = batch.last() else {
        return Ok(());
    };
    let mut events = Vec::with_capacity(batch.len());
    let mut bodies = Vec::with_capacity(batch.len());
    for message in &batch {
        match serde_json::from_slice::<Head>(&message.data) {
            Ok(head) => {
                events.push(head);
                bodies.push(message.data.as_slice());
            }
            // Redelivering a message that can never parse would block the
            // queue; it is dropped loudly instead (acked with the batch).
            Err(error) => tracing::error!(reason = %error, "dropping a malformed event"),
        }
    }
    let recorded = if events.is_empty() {
        Ok(())
    } else {
        record(pool, dispatcher, &events, &bodies).await
    };
    match recorded {
        Ok(()) => {
            last.ack(BasicAckOptions { multiple: true }).await?;
        }
        Err(error) => {
            tracing::warn!(%error, events = events.len(), "recording events failed; they will be redelivered");
            last.nack(BasicNackOptions {
                multiple: true,
                requeue: true,
            })
            .await?;
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
    channel.basic_qos(1000, BasicQosOptions::default()).await?;
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

/// An enabled endpoint of one of the batch's workspaces.
#[derive(sqlx::FromRow)]
struct Subscriber {
    workspace_id: String,
    id: String,
    event_types: Vec<String>,
    ordered_by_conversation: bool,
    url: String,
    secret_sealed: Vec<u8>,
    previous_secret_sealed: Option<Vec<u8>>,
    previous_secret_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    rate_limit_per_second: Option<i32>,
}

impl Subscriber {
    /// Whether this endpoint's deliveries may skip the claim loop: ordered
    /// and rate-limited ones need its checks.
    fn direct(&self) -> bool {
        !self.ordered_by_conversation && self.rate_limit_per_second.is_none()
    }

    fn target(&self, body: &[u8]) -> Target {
        Target {
            url: self.url.clone(),
            enabled: true,
            secret_sealed: self.secret_sealed.clone(),
            previous_secret_sealed: self.previous_secret_sealed.clone(),
            previous_secret_expires_at: self.previous_secret_expires_at,
            rate_limit_per_second: None,
            body: body.to_vec(),
        }
    }
}

/// Stores the events and one pending delivery per interested endpoint of
/// each event's workspace in one statement, which commits on its own. The
/// deliveries of endpoints with room are leased by it and handed to the
/// senders once it has committed. The endpoints are read just before: one
/// deleted in between fails the statement (its deliveries' foreign key),
/// and the batch is redelivered and read afresh.
async fn record(pool: &PgPool, dispatcher: &Dispatcher, events: &[Head], bodies: &[&[u8]]) -> Result<(), sqlx::Error> {
    let workspaces: Vec<&str> = events.iter().map(|e| e.workspace_id.as_str()).collect();
    let subscribers: Vec<Subscriber> = sqlx::query_as(
        "SELECT workspace_id, id, event_types, ordered_by_conversation, url, secret_sealed,
                previous_secret_sealed, previous_secret_expires_at, rate_limit_per_second
         FROM endpoints WHERE workspace_id = ANY($1) AND enabled",
    )
    .bind(&workspaces)
    .fetch_all(pool)
    .await?;
    let mut rows = NewDeliveries::default();
    let mut wanted = Vec::new();
    for (n, event) in events.iter().enumerate() {
        for subscriber in &subscribers {
            if subscriber.workspace_id == event.workspace_id
                && endpoint_rules::wants(&subscriber.event_types, &event.event)
            {
                let direct = subscriber.direct() && dispatcher.has_room(&subscriber.id);
                rows.push(event, &subscriber.id, subscriber.ordered_by_conversation, direct);
                wanted.push((n, subscriber));
            }
        }
    }
    let inserted = rows.insert(pool, events, bodies, dispatcher.lease()).await?;
    let left_for_claims = inserted.iter().any(|row| !row.leased);
    // Rows not returned were recorded before (a redelivered message): the
    // claim loop has them.
    let handed: Vec<Leased> = inserted
        .into_iter()
        .filter(|row| row.leased)
        .map(|row| {
            let (n, subscriber) = wanted[row.n as usize - 1];
            Leased {
                endpoint_id: subscriber.id.clone(),
                event_id: events[n].id.clone(),
                attempts: 0,
                lease: row.next_attempt_at,
                target: subscriber.target(bodies[n]),
                id: row.id,
            }
        })
        .collect();
    dispatcher.hand_off(handed);
    if left_for_claims {
        // The events are recorded whatever happens here: the claim loop
        // also looks every 250 ms, so a lost wake-up only delays them.
        let woken = sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKE_CHANNEL)
            .execute(pool)
            .await;
        if let Err(error) = woken {
            tracing::warn!(%error, "waking the claim loop");
        }
    }
    Ok(())
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
    leased: Vec<bool>,
}

/// A delivery row that was inserted (not one recorded before).
#[derive(sqlx::FromRow)]
struct Inserted {
    id: String,
    /// Its place in [`NewDeliveries`], from 1.
    n: i64,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    leased: bool,
}

impl NewDeliveries {
    fn push(&mut self, event: &Head, endpoint_id: &str, ordered: bool, leased: bool) {
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
        self.leased.push(leased);
    }

    /// Stores the events (new ones only), then inserts the rows, the leased
    /// ones with a lease of `lease` taken: one statement.
    async fn insert(
        &self,
        pool: &PgPool,
        events: &[Head],
        bodies: &[&[u8]],
        lease: Duration,
    ) -> Result<Vec<Inserted>, sqlx::Error> {
        let event_ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let workspaces: Vec<&str> = events.iter().map(|e| e.workspace_id.as_str()).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        sqlx::query_as(
            "WITH stored AS (
                 INSERT INTO events (id, workspace_id, event_type, body)
                 SELECT * FROM UNNEST($9::text[], $10::text[], $11::text[], $12::bytea[])
                 ON CONFLICT (id) DO NOTHING
             ), incoming AS (
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[])
                      WITH ORDINALITY AS t(id, workspace_id, endpoint_id, event_id, event_type, ordering_key, leased, n)
             ), inserted AS (
                 INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_type, status, ordering_key, next_attempt_at)
                 SELECT id, workspace_id, endpoint_id, event_id, event_type, 'pending', ordering_key,
                        CASE WHEN leased THEN now() + make_interval(secs => $8) ELSE now() END
                 FROM incoming ORDER BY n
                 ON CONFLICT (endpoint_id, event_id) DO NOTHING
                 RETURNING id, next_attempt_at
             )
             SELECT inserted.id, incoming.n, inserted.next_attempt_at, incoming.leased
             FROM inserted JOIN incoming USING (id)",
        )
        .bind(&self.ids)
        .bind(&self.workspaces)
        .bind(&self.endpoints)
        .bind(&self.events)
        .bind(&self.types)
        .bind(&self.ordering_keys)
        .bind(&self.leased)
        .bind(lease.as_secs_f64())
        .bind(&event_ids)
        .bind(&workspaces)
        .bind(&types)
        .bind(bodies)
        .fetch_all(pool)
        .await
    }
}
