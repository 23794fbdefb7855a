//! Deliveries made on request: a `webhook.test` event to one endpoint, and
//! a replay of every event since a time that the endpoint's filters take,
//! started here and run by [`crate::replaying`].

use event_pipeline::{Envelope, catalog};
use std::sync::Arc;

use ids::ReplayId;
use proto::webhooks::v1::{
    Delivery, GetReplayRequest, Replay as ProtoReplay, ReplayEventsRequest, SendTestEventRequest,
};
use service_runtime::{field_error::invalid_argument, principal::Principal, time::from_timestamp};
use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use super::endpoints::endpoint_id;
use crate::{
    error::Error,
    store::{deliveries, endpoints, events, replays},
};

pub struct Replay {
    pool: PgPool,
    /// Tells this replica's replay worker a replay was started.
    wake: Arc<Notify>,
}

type Answer<T> = Result<Response<T>, Status>;

impl Replay {
    pub fn new(pool: PgPool, wake: Arc<Notify>) -> Self {
        Self { pool, wake }
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

    /// Starts a replay in the background (see [`crate::replaying`]);
    /// earlier deliveries of the same events are reused, so receivers see
    /// the same idempotency keys again.
    pub async fn replay_events(&self, request: Request<ReplayEventsRequest>) -> Answer<ProtoReplay> {
        let principal = Principal::of(&request)?;
        let workspace_id = principal.workspace_id.as_str();
        let req = request.into_inner();
        let endpoint_id = endpoint_id(&req.endpoint_id)?;
        let since = req
            .since
            .as_ref()
            .and_then(from_timestamp)
            .ok_or_else(|| invalid_argument("since", "is required"))?;
        endpoints::ensure(&self.pool, workspace_id, &endpoint_id).await?;
        let row = replays::start(&self.pool, workspace_id, &endpoint_id, since).await?;
        self.wake.notify_one();
        Ok(Response::new(row.into()))
    }

    pub async fn get_replay(&self, request: Request<GetReplayRequest>) -> Answer<ProtoReplay> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let endpoint_id = endpoint_id(&req.endpoint_id)?;
        let replay_id = ReplayId::parse("replay_id", &req.replay_id).map_err(Error::from)?;
        let row = replays::get(&self.pool, &principal.workspace_id, &endpoint_id, &replay_id).await?;
        Ok(Response::new(row.into()))
    }
}
