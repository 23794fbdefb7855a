//! WebhookService over gRPC, split by resource as Svix's `v1/endpoints/`
//! is: endpoints and their secrets, deliveries, and replay with test
//! events. This module only routes each RPC to its resource.

mod deliveries;
mod endpoints;
mod replay;
mod stats;

use std::{sync::Arc, time::Duration};

use proto::webhooks::v1::{
    CreateEndpointRequest, DeleteEndpointRequest, DeleteEndpointResponse, Delivery, Endpoint, EndpointWithSecret,
    GetDeliveryRequest, GetEndpointRequest, GetReplayRequest, GetWebhookStatsRequest, ListDeliveriesRequest,
    ListDeliveriesResponse, ListEndpointsRequest, ListEndpointsResponse, Replay as ProtoReplay, ReplayEventsRequest,
    RetryDeliveryRequest, RotateSecretRequest, SendTestEventRequest, UpdateEndpointRequest, WebhookStats,
    webhook_service_server::WebhookService,
};
use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::secrets::SecretBox;
use deliveries::Deliveries;
use endpoints::Endpoints;
use replay::Replay;
use stats::Stats;

pub struct Api {
    endpoints: Endpoints,
    deliveries: Deliveries,
    replay: Replay,
    stats: Stats,
}

impl Api {
    pub fn new(pool: PgPool, secrets: SecretBox, secret_grace: Duration, replays: Arc<Notify>) -> Self {
        Self {
            endpoints: Endpoints::new(pool.clone(), secrets, secret_grace),
            deliveries: Deliveries::new(pool.clone()),
            replay: Replay::new(pool.clone(), replays),
            stats: Stats::new(pool),
        }
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl WebhookService for Api {
    async fn get_webhook_stats(&self, request: Request<GetWebhookStatsRequest>) -> Answer<WebhookStats> {
        self.stats.read(request).await
    }

    async fn create_endpoint(&self, request: Request<CreateEndpointRequest>) -> Answer<EndpointWithSecret> {
        self.endpoints.create(request).await
    }

    async fn list_endpoints(&self, request: Request<ListEndpointsRequest>) -> Answer<ListEndpointsResponse> {
        self.endpoints.list(request).await
    }

    async fn get_endpoint(&self, request: Request<GetEndpointRequest>) -> Answer<Endpoint> {
        self.endpoints.get(request).await
    }

    async fn update_endpoint(&self, request: Request<UpdateEndpointRequest>) -> Answer<Endpoint> {
        self.endpoints.update(request).await
    }

    async fn delete_endpoint(&self, request: Request<DeleteEndpointRequest>) -> Answer<DeleteEndpointResponse> {
        self.endpoints.delete(request).await
    }

    async fn rotate_secret(&self, request: Request<RotateSecretRequest>) -> Answer<EndpointWithSecret> {
        self.endpoints.rotate_secret(request).await
    }

    async fn list_deliveries(&self, request: Request<ListDeliveriesRequest>) -> Answer<ListDeliveriesResponse> {
        self.deliveries.list(request).await
    }

    async fn get_delivery(&self, request: Request<GetDeliveryRequest>) -> Answer<Delivery> {
        self.deliveries.get(request).await
    }

    async fn retry_delivery(&self, request: Request<RetryDeliveryRequest>) -> Answer<Delivery> {
        self.deliveries.retry(request).await
    }

    async fn send_test_event(&self, request: Request<SendTestEventRequest>) -> Answer<Delivery> {
        self.replay.send_test_event(request).await
    }

    async fn replay_events(&self, request: Request<ReplayEventsRequest>) -> Answer<ProtoReplay> {
        self.replay.replay_events(request).await
    }

    async fn get_replay(&self, request: Request<GetReplayRequest>) -> Answer<ProtoReplay> {
        self.replay.get_replay(request).await
    }
}
