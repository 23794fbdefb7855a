//! AnalyticsService.GetRequestMetrics: request and error totals of the
//! caller's workspace over a time window.

use chrono::{Duration, Utc};
use proto::analytics::v1::{GetRequestMetricsRequest, RequestMetrics, analytics_service_server::AnalyticsService};
use service_runtime::{
    field_error::invalid_argument,
    principal::Principal,
    time::{from_timestamp, timestamp},
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

/// Longest window one call may ask for.
const MAX_WINDOW_DAYS: i64 = 366;

pub struct RequestMetricsService {
    pool: PgPool,
}

impl RequestMetricsService {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl AnalyticsService for RequestMetricsService {
    async fn get_request_metrics(
        &self,
        request: Request<GetRequestMetricsRequest>,
    ) -> Result<Response<RequestMetrics>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let until = match &req.until {
            Some(ts) => from_timestamp(ts).ok_or_else(|| invalid_argument("until", "is out of range"))?,
            None => Utc::now(),
        };
        let since = match &req.since {
            Some(ts) => from_timestamp(ts).ok_or_else(|| invalid_argument("since", "is out of range"))?,
            None => until - Duration::hours(24),
        };
        if since > until {
            return Err(invalid_argument("since", "must not be after until"));
        }
        if until - since > Duration::days(MAX_WINDOW_DAYS) {
            return Err(invalid_argument(
                "since",
                &format!("the window may span at most {MAX_WINDOW_DAYS} days"),
            ));
        }
        let (total, errors): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(requests), 0)::bigint, COALESCE(SUM(errors), 0)::bigint
             FROM request_metrics
             WHERE workspace_id = $1 AND minute >= $2 AND minute < $3",
        )
        .bind(&principal.workspace_id)
        .bind(since)
        .bind(until)
        .fetch_one(&self.pool)
        .await
        .map_err(service_runtime::database::internal_error)?;
        Ok(Response::new(RequestMetrics {
            since: Some(timestamp(since)),
            until: Some(timestamp(until)),
            total_requests: total,
            error_requests: errors,
        }))
    }
}
