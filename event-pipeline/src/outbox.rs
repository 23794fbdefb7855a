//! The transactional outbox: a service records an event in the same
//! database transaction (or statement) as the change it describes, and the
//! [`relay`](crate::relay) publishes it later. A crash between the two
//! loses nothing (the event is still in the table) and a broker outage only
//! delays events. The table is a queue, not an archive: it holds what is
//! yet to be sent, so it stays small and its statements keep cheap plans.
//! Consumers keep what they need (the webhook dispatcher stores every
//! event it receives).
//!
//! Each service's migrations create the table:
//! ```sql
//! CREATE TABLE outbox (id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE,
//!     workspace_id text NOT NULL, event_type text NOT NULL, body bytea NOT NULL,
//!     created_at timestamptz NOT NULL DEFAULT now(), traceparent text);
//! ```
//! (Older migrations also added a `published_at` column, which the relay no
//! longer sets: each service's `outbox_as_queue` migration removed the rows
//! published before the change.)

use service_runtime::exposition::{Exposition, Kind};
use sqlx::{Postgres, QueryBuilder, Transaction};

use crate::envelope::Envelope;

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

    /// The channel the relay listens on; NOTIFY on it wakes the relay.
    pub fn notify_channel(&self) -> &str {
        &self.notify_channel
    }

    /// Records `envelope` inside `tx`. The relay is woken on commit (NOTIFY
    /// is transactional), so events leave within milliseconds.
    pub async fn record(&self, tx: &mut Transaction<'_, Postgres>, envelope: &Envelope) -> Result<(), sqlx::Error> {
        // One round trip for both: this runs inside every state change.
        const RECORD: &str = "INSERT INTO outbox (event_id, workspace_id, event_type, body, traceparent)
             VALUES ($1, $2, $3, $4, $6) RETURNING pg_notify($5, '')";
        sqlx::query(RECORD)
            .bind(&envelope.id)
            .bind(&envelope.workspace_id)
            .bind(&envelope.event_type)
            .bind(&envelope.body)
            .bind(&self.notify_channel)
            .bind(&envelope.traceparent)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Records each of `envelopes` inside `tx`, in order.
    pub async fn record_all(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        envelopes: &[Envelope],
    ) -> Result<(), sqlx::Error> {
        for envelope in envelopes {
            self.record(tx, envelope).await?;
        }
        Ok(())
    }

    /// Adds to a `WITH` statement being built the CTE `name` that records
    /// `envelope` and wakes the relay, once for each row of the CTE
    /// `source`: a statement that makes a change records its event in the
    /// same round trip, and only if the change happened. (A data-modifying
    /// CTE runs whether or not the statement reads it.) Its parameters are
    /// numbered by the builder, after whatever the statement bound before.
    pub fn push_cte<'a>(
        &'a self,
        query: &mut QueryBuilder<'a, Postgres>,
        name: &str,
        source: &str,
        envelope: &'a Envelope,
    ) {
        query.push(format_args!(
            ", {name} AS (INSERT INTO outbox (event_id, workspace_id, event_type, body, traceparent) SELECT "
        ));
        query
            .separated(", ")
            .push_bind(&envelope.id)
            .push_bind(envelope.workspace_id.as_str())
            .push_bind(envelope.event_type.as_str())
            .push_bind(envelope.body.as_slice())
            .push_bind(envelope.traceparent.as_deref());
        query.push(format_args!(" FROM {source} RETURNING pg_notify("));
        query.push_bind(self.notify_channel.as_str());
        query.push(", ''))");
    }
}

/// The `outbox_*` gauges of the service whose pool this is: events
/// waiting for the relay, and how long the oldest has waited (0 when none
/// waits). A growing age means the relay cannot publish.
pub async fn write_lag(pool: &sqlx::PgPool, out: &mut Exposition) -> Result<(), sqlx::Error> {
    let (waiting, oldest): (i64, f64) =
        sqlx::query_as("SELECT count(*), COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM outbox")
            .fetch_one(pool)
            .await?;
    out.single(
        "outbox_pending_events",
        Kind::Gauge,
        "Events recorded but not yet published.",
        waiting,
    );
    out.single(
        "outbox_oldest_event_age_seconds",
        Kind::Gauge,
        "How long the oldest unpublished event has waited.",
        oldest,
    );
    Ok(())
}

/// A producing service's `/metrics`: its gRPC and pool series and its
/// outbox lag.
pub fn producer_scrape(
    grpc: &std::sync::Arc<service_runtime::grpc_metrics::GrpcMetrics>,
    pool: &sqlx::PgPool,
    max_connections: u32,
) -> service_runtime::admin::Scrape {
    service_runtime::admin::Scrape::new(grpc.clone(), pool.clone(), max_connections).with_gauges(|pool| async move {
        let mut out = Exposition::default();
        if let Err(error) = write_lag(&pool, &mut out).await {
            tracing::warn!(%error, "reading the outbox for /metrics");
        }
        out.into_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cte_numbers_its_parameters_after_the_statements_own() {
        let outbox = Outbox::new("chatbot");
        let envelope = Envelope::new("message.received", "ws_1", serde_json::json!({}));
        let mut query = QueryBuilder::new("WITH changed AS (UPDATE t SET n = ");
        query.push_bind(7).push(" RETURNING 1)");
        outbox.push_cte(&mut query, "recorded", "changed", &envelope);
        query.push(" SELECT 1 FROM changed");
        let sql = query.sql();
        assert!(
            sql.contains("SELECT $2, $3, $4, $5, $6 FROM changed RETURNING pg_notify($7, '')"),
            "{sql}"
        );
        assert!(sql.starts_with("WITH changed AS (UPDATE t SET n = $1 RETURNING 1), recorded AS (INSERT INTO outbox"));
    }
}
