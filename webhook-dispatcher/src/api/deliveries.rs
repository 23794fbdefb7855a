//! An endpoint's deliveries: list, read with every attempt, retry now.

use ids::DeliveryId;
use proto::webhooks::v1::{
    Attempt, Delivery, GetDeliveryRequest, ListDeliveriesRequest, ListDeliveriesResponse, RetryDeliveryRequest,
};
use service_runtime::{pagination::NewestFirst, principal::Principal};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::endpoints::endpoint_id;
use crate::{
    error::Error,
    store::{deliveries, endpoints},
};

pub struct Deliveries {
    pool: PgPool,
}

type Answer<T> = Result<Response<T>, Status>;

impl Deliveries {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn list(&self, request: Request<ListDeliveriesRequest>) -> Answer<ListDeliveriesResponse> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let endpoint_id = endpoint_id(&req.endpoint_id)?;
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        endpoints::ensure(&self.pool, &principal.workspace_id, &endpoint_id).await?;
        let rows = deliveries::list(&self.pool, &principal.workspace_id, &endpoint_id, &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        Ok(Response::new(ListDeliveriesResponse {
            deliveries: rows.into_iter().map(|r| r.into_delivery(Vec::new())).collect(),
            next_cursor,
        }))
    }

    pub async fn get(&self, request: Request<GetDeliveryRequest>) -> Answer<Delivery> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let endpoint_id = endpoint_id(&req.endpoint_id)?;
        let id = delivery_id(&req.delivery_id)?;
        let row = deliveries::get(&self.pool, &principal.workspace_id, &endpoint_id, &id).await?;
        let attempts = deliveries::attempts(&self.pool, &row.id).await?;
        Ok(Response::new(
            row.into_delivery(attempts.into_iter().map(Attempt::from).collect()),
        ))
    }

    pub async fn retry(&self, request: Request<RetryDeliveryRequest>) -> Answer<Delivery> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let endpoint_id = endpoint_id(&req.endpoint_id)?;
        let id = delivery_id(&req.delivery_id)?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let row = deliveries::retry_now(&mut tx, &principal.workspace_id, &endpoint_id, &id).await?;
        deliveries::wake(&mut *tx).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(row.into_delivery(Vec::new())))
    }
}

fn delivery_id(value: &str) -> Result<DeliveryId, Error> {
    Ok(DeliveryId::parse("delivery_id", value)?)
}
