//! WebhookService.ListEndpoints: the caller's workspace's endpoints.

use chrono::{DateTime, Utc};
use proto::webhooks::v1::{
    Endpoint, ListEndpointsRequest, ListEndpointsResponse, webhook_service_server::WebhookService,
};
use service_runtime::{pagination::NewestFirst, principal::Principal, time::timestamp};
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
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows: Vec<EndpointRow> = page
            .bind(
                sqlx::query_as(&format!(
                    "SELECT id, url, description, event_types, enabled, created_at FROM endpoints
                     WHERE workspace_id = $1 AND {}",
                    NewestFirst::CLAUSE
                ))
                .bind(&principal.workspace_id),
            )
            .fetch_all(&self.pool)
            .await
            .map_err(service_runtime::database::internal_error)?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, &r.id));
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
