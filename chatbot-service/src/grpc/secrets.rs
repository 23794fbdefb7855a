//! SecretService: a workspace's model API keys, written and never read
//! back. Another workspace's secret and one that does not exist are the
//! same NOT_FOUND.

use proto::chatbot::v1::{
    CreateSecretRequest, DeleteSecretRequest, DeleteSecretResponse, GetSecretRequest, ListSecretsRequest,
    ListSecretsResponse, Secret, UpdateSecretRequest, secret_service_server::SecretService,
};
use service_runtime::{
    pagination::{decode_cursor, finish_page, page_limit},
    principal::Principal,
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    error::{Error, Result},
    secrets::{self, Secrets},
    store::secrets::{self as store, Written},
};

const KIND: &str = "secret";

pub struct SecretsApi {
    pool: PgPool,
    secrets: Secrets,
}

impl SecretsApi {
    pub fn new(pool: PgPool, secrets: Secrets) -> Self {
        Self { pool, secrets }
    }
}

/// A checked name, value and origin, sealed for the workspace.
struct Checked {
    name: String,
    origin: String,
    sealed: Vec<u8>,
    fingerprint: String,
}

impl Checked {
    fn new(secrets: &Secrets, workspace_id: &str, name: &str, value: &str, origin: &str) -> Result<Self> {
        let name = checked_name(name)?;
        if let Some(problem) = secrets::value_problem(value) {
            return Err(Error::invalid("value", problem));
        }
        let origin = secrets::origin_of(origin).map_err(|reason| Error::invalid("origin", reason))?;
        Ok(Self {
            sealed: secrets.seal(workspace_id, &name, &origin, value),
            fingerprint: secrets::fingerprint(value),
            name,
            origin,
        })
    }

    fn written(&self) -> Written<'_> {
        Written {
            name: &self.name,
            origin: &self.origin,
            sealed: &self.sealed,
            fingerprint: &self.fingerprint,
        }
    }
}

fn checked_name(name: &str) -> Result<String> {
    let name = name.trim();
    match secrets::is_valid_name(name) {
        true => Ok(name.to_owned()),
        false => Err(Error::invalid(
            "name",
            "must be 1 to 100 letters, digits, '-', '_' or '.', not starting with '.'",
        )),
    }
}

/// NOT_FOUND for a name the workspace has no secret under, whatever other
/// workspaces have.
fn not_found(name: &str) -> Error {
    Error::not_found(KIND, name)
}

#[tonic::async_trait]
impl SecretService for SecretsApi {
    async fn create_secret(&self, request: Request<CreateSecretRequest>) -> Result<Response<Secret>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let checked = Checked::new(
            &self.secrets,
            &principal.workspace_id,
            &req.name,
            &req.value,
            &req.origin,
        )?;
        let row = store::insert(&self.pool, &principal.workspace_id, &checked.written())
            .await?
            .ok_or_else(|| Error::AlreadyExists(format!("a secret named {:?} already exists", checked.name)))?;
        Ok(Response::new(row.into()))
    }

    async fn list_secrets(
        &self,
        request: Request<ListSecretsRequest>,
    ) -> Result<Response<ListSecretsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let limit = page_limit(req.limit)?;
        let after = decode_cursor(&req.cursor)?;
        let rows = store::list(&self.pool, &principal.workspace_id, after.as_deref(), limit + 1).await?;
        let (rows, next_cursor) = finish_page(rows, limit, |row| row.name.clone());
        Ok(Response::new(ListSecretsResponse {
            secrets: rows.into_iter().map(Secret::from).collect(),
            next_cursor,
        }))
    }

    async fn get_secret(&self, request: Request<GetSecretRequest>) -> Result<Response<Secret>, Status> {
        let principal = Principal::of(&request)?;
        let name = request.into_inner().name;
        let row = store::find(&self.pool, &principal.workspace_id, name.trim())
            .await?
            .ok_or_else(|| not_found(&name))?;
        Ok(Response::new(row.into()))
    }

    async fn update_secret(&self, request: Request<UpdateSecretRequest>) -> Result<Response<Secret>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let checked = Checked::new(
            &self.secrets,
            &principal.workspace_id,
            &req.name,
            &req.value,
            &req.origin,
        )?;
        let row = store::replace(&self.pool, &principal.workspace_id, &checked.written())
            .await?
            .ok_or_else(|| not_found(&checked.name))?;
        Ok(Response::new(row.into()))
    }

    async fn delete_secret(
        &self,
        request: Request<DeleteSecretRequest>,
    ) -> Result<Response<DeleteSecretResponse>, Status> {
        let principal = Principal::of(&request)?;
        let name = request.into_inner().name;
        match store::delete(&self.pool, &principal.workspace_id, name.trim()).await? {
            true => Ok(Response::new(DeleteSecretResponse {})),
            false => Err(not_found(&name).into()),
        }
    }
}
