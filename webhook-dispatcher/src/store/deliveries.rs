//! The `deliveries` table, and every way a delivery comes to be: recorded
//! from consumed events, made for a test event, or made again by a replay.
//! Whoever makes deliveries due wakes the senders' claim loop on
//! [`WAKE_CHANNEL`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use event_pipeline::{Envelope, Received};
use ids::{DeliveryId, EndpointId, EventId};
use proto::webhooks::v1::{Attempt, Delivery};
use service_runtime::{pagination::NewestFirst, time::timestamp};
use sqlx::{PgConnection, PgExecutor};

use crate::error::{Error, Result};

/// NOTIFY on it when deliveries become due outside the consumer's hand-off.
pub const WAKE_CHANNEL: &str = "webhooks_deliveries";

/// Wakes the claim loop (on commit, inside a transaction).
pub async fn wake<'e>(db: impl PgExecutor<'e>) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WAKE_CHANNEL)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub event_id: EventId,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at, created_at";

impl DeliveryRow {
    pub fn into_delivery(self, attempt_log: Vec<Attempt>) -> Delivery {
        Delivery {
            next_attempt_at: (self.status == "pending").then(|| timestamp(self.next_attempt_at)),
            id: self.id.into_string(),
            endpoint_id: self.endpoint_id.into_string(),
            event_id: self.event_id.into_string(),
            event_type: self.event_type,
            status: self.status,
            attempts: self.attempts,
            created_at: Some(timestamp(self.created_at)),
            attempt_log,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct AttemptRow {
    attempted_at: DateTime<Utc>,
    http_status: Option<i32>,
    error: String,
    latency_ms: i32,
    response_excerpt: String,
}

impl From<AttemptRow> for Attempt {
    fn from(r: AttemptRow) -> Self {
        Attempt {
            attempted_at: Some(timestamp(r.attempted_at)),
            http_status: r.http_status.unwrap_or(0),
            error: r.error,
            latency_ms: r.latency_ms,
            response_excerpt: r.response_excerpt,
        }
    }
}

/// Deliveries of consumed events to insert, column by column, in the order
/// the events came (the sequence ordered endpoints deliver by).
#[derive(Default)]
pub struct NewDeliveries {
    ids: Vec<DeliveryId>,
    workspaces: Vec<String>,
    endpoints: Vec<EndpointId>,
    events: Vec<EventId>,
    types: Vec<String>,
    ordering_keys: Vec<Option<String>>,
    leased: Vec<bool>,
}

/// A delivery that was inserted (not one recorded before).
#[derive(sqlx::FromRow)]
pub struct Inserted {
    pub id: DeliveryId,
    /// Its place in [`NewDeliveries`], from 1.
    pub n: i64,
    /// Its lease, when it was leased to be handed to the senders.
    pub next_attempt_at: DateTime<Utc>,
    pub leased: bool,
}

impl NewDeliveries {
    /// A delivery of `event` to `endpoint_id`; `ordered` endpoints get one
    /// conversation's deliveries in order; `leased` ones are handed straight
    /// to the senders.
    pub fn push(&mut self, event: &Received, endpoint_id: &EndpointId, ordered: bool, leased: bool) {
        self.ids.push(DeliveryId::generate());
        self.workspaces.push(event.workspace_id.clone());
        self.endpoints.push(endpoint_id.clone());
        self.events.push(event.id.clone());
        self.types.push(event.event_type.clone());
        self.ordering_keys
            .push(ordered.then(|| event.conversation_id().map(str::to_owned)).flatten());
        self.leased.push(leased);
    }

    /// Stores the events (new ones only) and inserts the deliveries, the
    /// leased ones with a lease of `lease` taken: one statement, which
    /// commits on its own. A redelivered event's deliveries were recorded
    /// before and are not returned.
    pub async fn insert<'e>(
        &self,
        db: impl PgExecutor<'e>,
        events: &[Received],
        traceparents: &[Option<String>],
        lease: Duration,
    ) -> Result<Vec<Inserted>> {
        let event_ids: Vec<&EventId> = events.iter().map(|e| &e.id).collect();
        let workspaces: Vec<&str> = events.iter().map(|e| e.workspace_id.as_str()).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let bodies: Vec<&[u8]> = events.iter().map(|e| e.body.as_slice()).collect();
        Ok(sqlx::query_as(
            "WITH stored AS (
                 INSERT INTO events (id, workspace_id, event_type, body, traceparent)
                 SELECT * FROM UNNEST($9::text[], $10::text[], $11::text[], $12::bytea[], $13::text[])
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
        .bind(&bodies)
        .bind(traceparents)
        .fetch_all(db)
        .await?)
    }
}

/// A pending delivery of `event` (already stored) to one endpoint.
pub async fn insert_one(
    conn: &mut PgConnection,
    workspace_id: &str,
    endpoint_id: &EndpointId,
    event: &Envelope,
) -> Result<DeliveryRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_type, status)
         VALUES ($1, $2, $3, $4, $5, 'pending') RETURNING {COLUMNS}"
    ))
    .bind(DeliveryId::generate())
    .bind(workspace_id)
    .bind(endpoint_id)
    .bind(&event.id)
    .bind(&event.event_type)
    .fetch_one(conn)
    .await?)
}

/// Makes `events` (id and type) due again for one endpoint, in order. An
/// earlier delivery of the same event is reused, so the receiver sees the
/// same idempotency key again.
pub async fn replay(
    conn: &mut PgConnection,
    workspace_id: &str,
    endpoint_id: &EndpointId,
    events: &[&(EventId, String)],
) -> Result<u64> {
    let ids: Vec<DeliveryId> = events.iter().map(|_| DeliveryId::generate()).collect();
    let event_ids: Vec<&EventId> = events.iter().map(|(id, _)| id).collect();
    let types: Vec<&str> = events.iter().map(|(_, kind)| kind.as_str()).collect();
    Ok(sqlx::query(
        "INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_type, status)
         SELECT t.id, $1, $2, t.event_id, t.event_type, 'pending'
         FROM UNNEST($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS t(id, event_id, event_type, n)
         ORDER BY t.n
         ON CONFLICT (endpoint_id, event_id)
         DO UPDATE SET status = 'pending', next_attempt_at = now(), attempts = 0, updated_at = now()",
    )
    .bind(workspace_id)
    .bind(endpoint_id)
    .bind(&ids)
    .bind(&event_ids)
    .bind(&types)
    .execute(conn)
    .await?
    .rows_affected())
}

/// A page of the endpoint's deliveries, newest first.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    endpoint_id: &EndpointId,
    page: &NewestFirst,
) -> Result<Vec<DeliveryRow>> {
    Ok(page
        .bind(
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM deliveries
                 WHERE workspace_id = $1 AND endpoint_id = $5 AND {}",
                NewestFirst::CLAUSE
            ))
            .bind(workspace_id),
        )
        .bind(endpoint_id)
        .fetch_all(db)
        .await?)
}

pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    endpoint_id: &EndpointId,
    id: &DeliveryId,
) -> Result<DeliveryRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE workspace_id = $1 AND endpoint_id = $2 AND id = $3"
    ))
    .bind(workspace_id)
    .bind(endpoint_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(id))
}

/// Most attempts a delivery's detail lists: the schedule makes 8, but
/// manual retries and replays add more without end.
pub const ATTEMPTS_SHOWN: i64 = 100;

/// The latest [`ATTEMPTS_SHOWN`] attempts at a delivery, oldest first (the
/// delivery's `attempts` counts them all).
pub async fn attempts<'e>(db: impl PgExecutor<'e>, id: &DeliveryId) -> Result<Vec<AttemptRow>> {
    Ok(sqlx::query_as(
        "SELECT attempted_at, http_status, error, latency_ms, response_excerpt FROM (
             SELECT id, attempted_at, http_status, error, latency_ms, response_excerpt FROM attempts
             WHERE delivery_id = $1 ORDER BY id DESC LIMIT $2
         ) latest ORDER BY id",
    )
    .bind(id)
    .bind(ATTEMPTS_SHOWN)
    .fetch_all(db)
    .await?)
}

/// Makes a delivery due now, whatever became of it.
pub async fn retry_now(
    conn: &mut PgConnection,
    workspace_id: &str,
    endpoint_id: &EndpointId,
    id: &DeliveryId,
) -> Result<DeliveryRow> {
    sqlx::query_as(&format!(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = now(), updated_at = now()
         WHERE workspace_id = $1 AND endpoint_id = $2 AND id = $3
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(endpoint_id)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found(id))
}

fn not_found(id: &DeliveryId) -> Error {
    Error::not_found(DeliveryId::KIND, id.as_str())
}
