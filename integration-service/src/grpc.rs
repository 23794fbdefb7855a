//! IntegrationService: connecting a workspace to other systems, and the
//! connections it has. Each RPC checks its request, runs it against the
//! store and answers with protos.

use event_pipeline::Outbox;
use ids::IntegrationId;
use proto::integration::v1::{
    CheckIntegrationRequest, CreateIntegrationRequest, DeleteIntegrationRequest, DeleteIntegrationResponse,
    GetIntegrationRequest, Integration, ListIntegrationsRequest, ListIntegrationsResponse,
    integration_service_server::IntegrationService,
};
use sealing::Keyring;
use service_runtime::{error::ServiceError, pagination::NewestFirst, principal::Principal};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    checking::Checker,
    events,
    kinds::Connection,
    store::integrations::{self, NewIntegration},
};

const MAX_NAME_CHARS: usize = 100;

pub struct Integrations {
    pool: PgPool,
    outbox: Outbox,
    secret_keys: Keyring,
    checker: Checker,
}

impl Integrations {
    pub fn new(pool: PgPool, outbox: Outbox, secret_keys: Keyring, checker: Checker) -> Self {
        Self {
            pool,
            outbox,
            secret_keys,
            checker,
        }
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl IntegrationService for Integrations {
    /// Tries the connection, then saves it with its credentials sealed for
    /// this workspace and integration alone, and its event.
    async fn create_integration(&self, request: Request<CreateIntegrationRequest>) -> Answer<Integration> {
        let principal = Principal::from_metadata(request.metadata())?;
        let workspace_id = principal.workspace_id.as_str();
        let req = request.into_inner();
        let name = name(&req.name)?;
        let mut connection = Connection::parse(&req.kind, req.settings, req.credentials)?;
        let id = IntegrationId::generate();
        let scopes = connection.try_new(id.as_str(), self.checker.reach()).await?;
        let sealed = self
            .secret_keys
            .seal(&connection.credentials(), &[workspace_id, id.as_str()]);
        let settings = connection.settings();
        let new = NewIntegration {
            id: &id,
            kind: connection.kind(),
            name: &name,
            settings: &settings,
            scopes: &scopes,
            credentials_sealed: &sealed,
        };
        let mut tx = self.pool.begin().await.map_err(ServiceError::from)?;
        let row = integrations::insert(&mut tx, workspace_id, new).await?;
        self.outbox
            .record(&mut tx, &events::connected(workspace_id, &row))
            .await
            .map_err(ServiceError::from)?;
        tx.commit().await.map_err(ServiceError::from)?;
        tracing::info!(integration = %row.id, kind = row.kind, "integration connected");
        Ok(Response::new(row.into()))
    }

    async fn list_integrations(&self, request: Request<ListIntegrationsRequest>) -> Answer<ListIntegrationsResponse> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows = integrations::list(&self.pool, &principal.workspace_id, &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        Ok(Response::new(ListIntegrationsResponse {
            integrations: rows.into_iter().map(Integration::from).collect(),
            next_cursor,
        }))
    }

    async fn get_integration(&self, request: Request<GetIntegrationRequest>) -> Answer<Integration> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = integration_id(&request.get_ref().integration_id)?;
        let row = integrations::get(&self.pool, &principal.workspace_id, &id).await?;
        Ok(Response::new(row.into()))
    }

    async fn check_integration(&self, request: Request<CheckIntegrationRequest>) -> Answer<Integration> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = integration_id(&request.get_ref().integration_id)?;
        let row = self.checker.check(&principal.workspace_id, &id).await?;
        Ok(Response::new(row.into()))
    }

    /// Connecting registers nothing on the other side yet, so
    /// disconnecting it is forgetting it, credentials and all.
    async fn delete_integration(
        &self,
        request: Request<DeleteIntegrationRequest>,
    ) -> Answer<DeleteIntegrationResponse> {
        let principal = Principal::from_metadata(request.metadata())?;
        let workspace_id = principal.workspace_id.as_str();
        let id = integration_id(&request.get_ref().integration_id)?;
        let mut tx = self.pool.begin().await.map_err(ServiceError::from)?;
        let row = integrations::delete(&mut tx, workspace_id, &id).await?;
        self.outbox
            .record(&mut tx, &events::disconnected(workspace_id, &row))
            .await
            .map_err(ServiceError::from)?;
        tx.commit().await.map_err(ServiceError::from)?;
        Ok(Response::new(DeleteIntegrationResponse {
            id: id.into_string(),
            deleted: true,
        }))
    }
}

fn integration_id(value: &str) -> Result<IntegrationId, ServiceError> {
    Ok(IntegrationId::parse("integration_id", value)?)
}

fn name(value: &str) -> Result<String, ServiceError> {
    let name = value.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name.to_owned())
}
