//! Leases on deliveries: who may send one now.
//!
//! A lease is the row's `next_attempt_at` moved past the request timeout,
//! so no transaction stays open during HTTP and a dispatcher that dies
//! mid-request leaves the delivery to be claimed again once it lapses. The
//! stored value doubles as the lease's token: renewing or giving one back
//! only touches a row whose `next_attempt_at` is still the one this
//! dispatcher set, so a lease that lapsed and was taken by someone else is
//! never disturbed.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ids::{DeliveryId, EndpointId, EventId};
use sqlx::PgPool;

use super::request::Target;

/// A delivery this dispatcher holds the lease of, with what sending it
/// needs.
#[derive(sqlx::FromRow)]
pub struct Leased {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub event_id: EventId,
    /// Attempts made before this one.
    pub attempts: i32,
    /// The row's `next_attempt_at` as this lease set it.
    pub lease: DateTime<Utc>,
    /// The span that processed the event, when traces were exported.
    pub traceparent: Option<String>,
    #[sqlx(flatten)]
    pub target: Target,
}

/// A leased delivery waiting for a free slot of its endpoint.
pub struct Held {
    pub delivery: Leased,
    pub since: Instant,
}

impl Held {
    pub fn new(delivery: Leased) -> Self {
        Self {
            delivery,
            since: Instant::now(),
        }
    }
}

/// How long a lease lasts: the longest request, and a margin for the
/// bookkeeping around it.
pub fn duration(request_timeout: Duration) -> Duration {
    request_timeout + Duration::from_secs(5)
}

/// A delivery that waited longer than this in memory has its lease renewed
/// before it is sent, so the request still ends inside the lease.
pub const RENEW_AFTER: Duration = Duration::from_secs(2);

/// Leases up to `limit` due deliveries of endpoints other than `skipped`,
/// oldest due first. Deliveries of an ordered endpoint wait for every
/// earlier pending one of the same conversation, in flight included.
pub async fn claim(pool: &PgPool, lease: Duration, limit: i64, skipped: &[String]) -> Result<Vec<Leased>, sqlx::Error> {
    sqlx::query_as(
        "WITH claimed AS (
         UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $1)
         WHERE id IN (SELECT d.id FROM deliveries d
                      WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND d.endpoint_id <> ALL($3)
                        AND (d.ordering_key IS NULL OR NOT EXISTS (
                            SELECT 1 FROM deliveries earlier
                            WHERE earlier.endpoint_id = d.endpoint_id
                              AND earlier.ordering_key = d.ordering_key
                              AND earlier.status = 'pending'
                              AND earlier.sequence < d.sequence))
                      ORDER BY d.next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING id, endpoint_id, event_id, attempts, next_attempt_at AS lease)
         SELECT c.id, c.endpoint_id, c.event_id, c.attempts, c.lease,
                e.url, e.enabled, e.secret_sealed, e.previous_secret_sealed, e.previous_secret_expires_at,
                e.rate_limit_per_second, ev.body, ev.traceparent
         FROM claimed c JOIN endpoints e ON e.id = c.endpoint_id JOIN events ev ON ev.id = c.event_id",
    )
    .bind(lease.as_secs_f64())
    .bind(limit)
    .bind(skipped)
    // Planned each time: a generic plan cached while the table was small
    // would scan it whole once it is not.
    .persistent(false)
    .fetch_all(pool)
    .await
}

/// Extends a lease; `None` when it is no longer this dispatcher's (it
/// lapsed and was claimed again, or the delivery is gone).
pub async fn renew(pool: &PgPool, delivery: &Leased, lease: Duration) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $3)
         WHERE id = $1 AND next_attempt_at = $2 AND status = 'pending'
         RETURNING next_attempt_at",
    )
    .bind(&delivery.id)
    .bind(delivery.lease)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// Gives leases back: the deliveries are due again at once, for any
/// dispatcher.
pub async fn release(pool: &PgPool, deliveries: &[Leased]) -> Result<(), sqlx::Error> {
    let ids: Vec<&DeliveryId> = deliveries.iter().map(|d| &d.id).collect();
    let leases: Vec<DateTime<Utc>> = deliveries.iter().map(|d| d.lease).collect();
    sqlx::query(
        "UPDATE deliveries d SET next_attempt_at = now()
         FROM UNNEST($1::text[], $2::timestamptz[]) AS held(id, lease)
         WHERE d.id = held.id AND d.next_attempt_at = held.lease AND d.status = 'pending'",
    )
    .bind(&ids)
    .bind(&leases)
    .persistent(false)
    .execute(pool)
    .await
    .map(|_| ())
}
