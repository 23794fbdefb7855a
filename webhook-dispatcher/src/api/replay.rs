//! Deliveries made on request: a `webhook.test` event to one endpoint, and
//! a replay of every event since a time that the endpoint's filters take.

use event_pipeline::{Envelope, catalog};
use proto::webhooks::v1::{Delivery, ReplayEventsRequest, ReplayEventsResponse, SendTestEventRequest};
use service_runtime::{field_error::invalid_argument, principal::Principal, time::from_timestamp};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::endpoints::endpoint_id;
use crate::{
    endpoint_rules,
    error::Error,
    store::{deliveries, endpoints, events},
};

pub struct Replay {
    pool: PgPool,
}

type Answer<T> = Result<Response<T>, Status>;

impl Replay {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn send_test_event(&self, request: Request<SendTestEventRequest>) -> Answer<Delivery> {
        let principal = Principal::of(&request)?;
        let workspace_id = principal.workspace_id.as_str();
        let endpoint_id = endpoint_id(&request.get_ref().endpoint_id)?;
        endpoints::ensure(&self.pool, workspace_id, &endpoint_id).await?;
        let envelope = Envelope::new(
            catalog::WEBHOOK_TEST,
            workspace_id,
            serde_json::json!({"endpoint_id": endpoint_id, "message": "a test event from the chatbot platform"}),
        );
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        events::insert(&mut *tx, &envelope).await?;
        let row = deliveries::insert_one(&mut tx, workspace_id, &endpoint_id, &envelope).await?;
        deliveries::wake(&mut *tx).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(row.into_delivery(Vec::new())))
    }

    /// Earlier deliveries of the same events are reused, so receivers see
    /// the same idempotency keys again.
    pub async fn replay_events(&self, request: Request<ReplayEventsRequest>) -> Answer<ReplayEventsResponse> {
        let principal = Principal::of(&request)?;
        let workspace_id = principal.workspace_id.as_str();
        let req = request.into_inner();
        let endpoint_id = endpoint_id(&req.endpoint_id)?;
        let since = req
            .since
            .as_ref()
            .and_then(from_timestamp)
            .ok_or_else(|| invalid_argument("since", "is required"))?;
        let filters = endpoints::event_filters(&self.pool, workspace_id, &endpoint_id).await?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let received = events::since(&mut *tx, workspace_id, since).await?;
        let wanted: Vec<_> = received
            .iter()
            .filter(|(_, event_type)| endpoint_rules::wants(&filters, event_type))
            .collect();
        let replayed = deliveries::replay(&mut tx, workspace_id, &endpoint_id, &wanted).await?;
        deliveries::wake(&mut *tx).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(ReplayEventsResponse {
            replayed: replayed as i64,
        }))
    }
}
