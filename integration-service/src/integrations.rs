//! IntegrationService: the caller's workspace's integrations, newest first.

use chrono::{DateTime, Utc};
use proto::integration::v1::{
    Integration, ListIntegrationsRequest, ListIntegrationsResponse, integration_service_server::IntegrationService,
};
use service_runtime::{pagination::NewestFirst, principal::Principal};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

pub struct Integrations {
    pool: PgPool,
}

impl Integrations {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(sqlx::FromRow)]
struct IntegrationRow {
    id: String,
    provider: String,
    status: String,
    created_at: DateTime<Utc>,
}

#[tonic::async_trait]
impl IntegrationService for Integrations {
    async fn list_integrations(
        &self,
        request: Request<ListIntegrationsRequest>,
    ) -> Result<Response<ListIntegrationsResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows: Vec<IntegrationRow> = page
            .fetch(
                &self.pool,
                "SELECT id, provider, status, created_at FROM integrations",
                &principal.workspace_id,
            )
            .await
            .map_err(service_runtime::database::internal_error)?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, &r.id));
        Ok(Response::new(ListIntegrationsResponse {
            integrations: rows
                .into_iter()
                .map(|r| Integration {
                    id: r.id,
                    provider: r.provider,
                    status: r.status,
                    created_at: Some(service_runtime::time::timestamp(r.created_at)),
                })
                .collect(),
            next_cursor,
        }))
    }
}
