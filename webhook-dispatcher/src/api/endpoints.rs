//! A workspace's endpoints and their signing secrets: create (the secret
//! is shown once), list, read, update, delete, rotate.

use std::time::Duration;

use ids::EndpointId;
use proto::webhooks::v1::{
    CreateEndpointRequest, DeleteEndpointRequest, DeleteEndpointResponse, Endpoint, EndpointWithSecret,
    GetEndpointRequest, ListEndpointsRequest, ListEndpointsResponse, RotateSecretRequest, UpdateEndpointRequest,
};
use sealing::webhook_signature as signing;
use service_runtime::{pagination::NewestFirst, principal::Principal};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    endpoint_rules,
    error::Error,
    secrets::SecretBox,
    store::endpoints::{self, Changes, EndpointRow, NewEndpoint},
};

pub struct Endpoints {
    pool: PgPool,
    secrets: SecretBox,
    /// How long a rotated-out secret keeps signing.
    grace: Duration,
}

type Answer<T> = Result<Response<T>, Status>;

impl Endpoints {
    pub fn new(pool: PgPool, secrets: SecretBox, grace: Duration) -> Self {
        Self { pool, secrets, grace }
    }

    pub async fn create(&self, request: Request<CreateEndpointRequest>) -> Answer<EndpointWithSecret> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let secret = signing::generate_secret();
        let new = NewEndpoint {
            url: endpoint_rules::url(&req.url)?,
            description: endpoint_rules::description(&req.description)?,
            event_types: endpoint_rules::event_types(&req.event_types)?,
            enabled: req.enabled.unwrap_or(true),
            secret_sealed: self.secrets.seal(&secret),
            rate_limit_per_second: endpoint_rules::rate_limit(req.rate_limit_per_second)?,
            ordered_by_conversation: req.ordered_by_conversation,
        };
        let row = endpoints::insert(&self.pool, &principal.workspace_id, &new).await?;
        Ok(with_secret(row, secret))
    }

    pub async fn list(&self, request: Request<ListEndpointsRequest>) -> Answer<ListEndpointsResponse> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows = endpoints::list(&self.pool, &principal.workspace_id, &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        Ok(Response::new(ListEndpointsResponse {
            endpoints: rows.into_iter().map(Endpoint::from).collect(),
            next_cursor,
        }))
    }

    pub async fn get(&self, request: Request<GetEndpointRequest>) -> Answer<Endpoint> {
        let principal = Principal::of(&request)?;
        let id = endpoint_id(&request.get_ref().endpoint_id)?;
        let row = endpoints::get(&self.pool, &principal.workspace_id, &id).await?;
        Ok(Response::new(row.into()))
    }

    pub async fn update(&self, request: Request<UpdateEndpointRequest>) -> Answer<Endpoint> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let id = endpoint_id(&req.endpoint_id)?;
        let changes = Changes {
            url: req.url.as_deref().map(endpoint_rules::url).transpose()?,
            description: req
                .description
                .as_deref()
                .map(endpoint_rules::description)
                .transpose()?,
            event_types: req
                .replace_event_types
                .then(|| endpoint_rules::event_types(&req.event_types))
                .transpose()?,
            enabled: req.enabled,
            rate_limit_per_second: req.rate_limit_per_second.map(endpoint_rules::rate_limit).transpose()?,
            ordered_by_conversation: req.ordered_by_conversation,
        };
        let row = endpoints::update(&self.pool, &principal.workspace_id, &id, &changes).await?;
        Ok(Response::new(row.into()))
    }

    pub async fn delete(&self, request: Request<DeleteEndpointRequest>) -> Answer<DeleteEndpointResponse> {
        let principal = Principal::of(&request)?;
        let id = endpoint_id(&request.get_ref().endpoint_id)?;
        endpoints::delete(&self.pool, &principal.workspace_id, &id).await?;
        Ok(Response::new(DeleteEndpointResponse {
            id: id.into_string(),
            deleted: true,
        }))
    }

    /// A new secret signs from now on; the old one signs alongside it for
    /// the grace period, so receivers can switch without losing a webhook.
    pub async fn rotate_secret(&self, request: Request<RotateSecretRequest>) -> Answer<EndpointWithSecret> {
        let principal = Principal::of(&request)?;
        let id = endpoint_id(&request.get_ref().endpoint_id)?;
        let secret = signing::generate_secret();
        let sealed = self.secrets.seal(&secret);
        let row = endpoints::rotate_secret(&self.pool, &principal.workspace_id, &id, &sealed, self.grace).await?;
        Ok(with_secret(row, secret))
    }
}

pub fn endpoint_id(value: &str) -> Result<EndpointId, Error> {
    Ok(EndpointId::parse("endpoint_id", value)?)
}

fn with_secret(row: EndpointRow, secret: String) -> Response<EndpointWithSecret> {
    Response::new(EndpointWithSecret {
        endpoint: Some(row.into()),
        secret,
    })
}
