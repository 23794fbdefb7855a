//! WebhookService.ListEndpoints: the caller's workspace's endpoints.

use chrono::{DateTime, Utc};
use proto::webhooks::v1::{
    Endpoint, ListEndpointsRequest, ListEndpointsResponse, webhook_service_server::WebhookService,
};
use service_runtime::{pagination, principal::Principal, time::timestamp};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

pub struct Endpoints {
    pool: PgPool,
}

impl Endpoints {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: String,
    url: String,
    description: String,
    event_types: Vec<String>,
    enabled: bool,
    created_at: DateTime<Utc>,
}

#[tonic::async_trait]
impl WebhookService for Endpoints {
    async fn list_endpoints(
        &self,
        request: Request<ListEndpointsRequest>,
    ) -> Result<Response<ListEndpointsResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let limit = pagination::page_limit(req.limit)?;
        let (after_time, after_id) = pagination::newest_first_after(&req.cursor)?.unzip();
        let rows: Vec<EndpointRow> = sqlx::query_as(
            "SELECT id, url, description, event_types, enabled, created_at FROM endpoints
             WHERE workspace_id = $1
               AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
             ORDER BY created_at DESC, id DESC
             LIMIT $4",
        )
        .bind(&principal.workspace_id)
        .bind(after_time)
        .bind(after_id)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(service_runtime::database::internal_error)?;
        let (rows, next_cursor) =
            pagination::finish_page(rows, limit, |r| pagination::newest_first_position(r.created_at, &r.id));
        Ok(Response::new(ListEndpointsResponse {
            endpoints: rows
                .into_iter()
                .map(|r| Endpoint {
                    id: r.id,
                    url: r.url,
                    description: r.description,
                    event_types: r.event_types,
                    enabled: r.enabled,
                    created_at: Some(timestamp(r.created_at)),
                })
                .collect(),
            next_cursor,
        }))
    }
}
