//! Webhook analytics: each endpoint's deliveries of the events that
//! arrived in a window, how they ended, and how long they took.

use std::collections::HashMap;

use proto::webhooks::v1::{EndpointStats, GetWebhookStatsRequest, WebhookStats};
use service_runtime::{
    pagination::{decode_cursor, encode_cursor, page_limit},
    principal::Principal,
    time::timestamp,
    window::Window,
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::error::Error;

pub struct Stats {
    pool: PgPool,
}

/// One endpoint's deliveries in the window.
#[derive(sqlx::FromRow, Default, Clone)]
struct DeliveryCounts {
    endpoint_id: String,
    deliveries: i64,
    succeeded: i64,
    failed: i64,
    pending: i64,
    attempts: i64,
    delivery_p95: Option<f64>,
    attempt_p95: Option<f64>,
}

impl Stats {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn read(&self, request: Request<GetWebhookStatsRequest>) -> Result<Response<WebhookStats>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let window = Window::of(req.since.as_ref(), req.until.as_ref())?;
        let limit = page_limit(req.limit)?;
        let after = decode_cursor(&req.cursor)?;
        // A page of the workspace's endpoints (one more, to know whether
        // another page follows), by id.
        let mut endpoints: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, url FROM endpoints WHERE workspace_id = $1 AND ($2::text IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
        )
        .bind(&principal.workspace_id)
        .bind(&after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let mut next_cursor = String::new();
        if endpoints.len() as i64 > limit {
            endpoints.truncate(limit as usize);
            next_cursor = endpoints.last().map(|(id, _)| encode_cursor(id)).unwrap_or_default();
        }
        let ids: Vec<&str> = endpoints.iter().map(|(id, _)| id.as_str()).collect();
        let deliveries = self.deliveries(&principal.workspace_id, &ids, window).await?;
        let endpoints = endpoints
            .into_iter()
            .map(|(id, url)| {
                let counts = deliveries.get(&id).cloned().unwrap_or_default();
                let (succeeded, failed) = (counts.succeeded, counts.failed);
                EndpointStats {
                    attempt_latency_p95_ms: counts.attempt_p95.unwrap_or_default(),
                    endpoint_id: id,
                    url,
                    deliveries: counts.deliveries,
                    succeeded,
                    failed,
                    pending: counts.pending,
                    success_rate: if succeeded + failed == 0 {
                        0.0
                    } else {
                        succeeded as f64 / (succeeded + failed) as f64
                    },
                    delivery_latency_p95_ms: counts.delivery_p95.unwrap_or_default(),
                    attempts: counts.attempts,
                }
            })
            .collect();
        Ok(Response::new(WebhookStats {
            since: Some(timestamp(window.since)),
            until: Some(timestamp(window.until)),
            endpoints,
            next_cursor,
        }))
    }

    /// Each endpoint's deliveries in the window, with the latency of their
    /// attempts, in one statement.
    async fn deliveries(
        &self,
        workspace_id: &str,
        ids: &[&str],
        window: Window,
    ) -> Result<HashMap<String, DeliveryCounts>, Error> {
        let rows: Vec<DeliveryCounts> = sqlx::query_as(
            "WITH in_window AS (
                 SELECT id, endpoint_id, status, attempts, created_at, updated_at FROM deliveries
                 WHERE endpoint_id = ANY($2) AND workspace_id = $1 AND created_at >= $3 AND created_at < $4
             ), attempt_latency AS (
                 SELECT w.endpoint_id, percentile_cont(0.95) WITHIN GROUP (ORDER BY a.latency_ms) AS p95
                 FROM in_window w JOIN attempts a ON a.delivery_id = w.id
                 GROUP BY w.endpoint_id
             )
             SELECT w.endpoint_id, count(*) AS deliveries,
                    count(*) FILTER (WHERE w.status = 'succeeded') AS succeeded,
                    count(*) FILTER (WHERE w.status = 'failed') AS failed,
                    count(*) FILTER (WHERE w.status = 'pending') AS pending,
                    COALESCE(sum(w.attempts), 0)::bigint AS attempts,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM w.updated_at - w.created_at) * 1000)
                        FILTER (WHERE w.status = 'succeeded') AS delivery_p95,
                    max(l.p95) AS attempt_p95
             FROM in_window w LEFT JOIN attempt_latency l USING (endpoint_id)
             GROUP BY w.endpoint_id",
        )
        .bind(workspace_id)
        .bind(ids)
        .bind(window.since)
        .bind(window.until)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|row| (row.endpoint_id.clone(), row)).collect())
    }
}
