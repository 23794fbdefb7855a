//! The dispatcher's own `/metrics` series: attempts by outcome and
//! endpoints disabled (counted as they happen), the backlog and the
//! outbox (read from the tables at scrape time), and the events waiting in
//! its RabbitMQ queue.

use std::sync::{Arc, atomic::Ordering};

use event_pipeline::queue_depth::QueueDepth;
use service_runtime::exposition::{Exposition, Kind};
use sqlx::PgPool;

use crate::delivery::DeliveryCounts;

pub async fn render(pool: PgPool, counts: Arc<DeliveryCounts>, queue: Arc<QueueDepth>) -> String {
    let mut out = Exposition::default();
    out.family(
        "webhook_deliveries_total",
        Kind::Counter,
        "Delivery attempts by how they ended: succeeded, retried later, or failed for good.",
    );
    for (outcome, counter) in [
        ("succeeded", &counts.succeeded),
        ("retried", &counts.retried),
        ("failed", &counts.failed),
    ] {
        out.sample(
            "webhook_deliveries_total",
            &[("outcome", outcome)],
            counter.load(Ordering::Relaxed),
        );
    }
    out.single(
        "webhook_endpoints_disabled_total",
        Kind::Counter,
        "Endpoints disabled for failing too long or answering 410 Gone.",
        counts.endpoints_disabled.load(Ordering::Relaxed),
    );
    let backlog: Result<(i64, i64), sqlx::Error> = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE attempts > 0) FROM deliveries WHERE status = 'pending'",
    )
    .fetch_one(&pool)
    .await;
    match backlog {
        Ok((pending, retrying)) => {
            out.single(
                "webhook_deliveries_pending",
                Kind::Gauge,
                "Deliveries not yet made.",
                pending,
            );
            out.single(
                "webhook_deliveries_retrying",
                Kind::Gauge,
                "Deliveries waiting for a retry after a failed attempt.",
                retrying,
            );
        }
        Err(error) => tracing::warn!(%error, "reading the delivery backlog for /metrics"),
    }
    if let Err(error) = event_pipeline::outbox::write_lag(&pool, &mut out).await {
        tracing::warn!(%error, "reading the outbox for /metrics");
    }
    queue.write(&mut out).await;
    out.into_string()
}
