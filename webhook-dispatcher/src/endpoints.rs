//! WebhookService: a workspace's endpoints and their deliveries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use proto::webhooks::v1::{
    Attempt, CreateEndpointRequest, DeleteEndpointRequest, DeleteEndpointResponse, Delivery, Endpoint,
    EndpointWithSecret, GetDeliveryRequest, GetEndpointRequest, ListDeliveriesRequest, ListDeliveriesResponse,
    ListEndpointsRequest, ListEndpointsResponse, ReplayEventsRequest, ReplayEventsResponse, RetryDeliveryRequest,
    RotateSecretRequest, SendTestEventRequest, UpdateEndpointRequest, webhook_service_server::WebhookService,
};
use rand::Rng;
use service_runtime::{database::internal_error, pagination::NewestFirst, principal::Principal, time::timestamp};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{endpoint_rules, secrets::SecretBox, signing};

pub struct Endpoints {
    pool: PgPool,
    secrets: SecretBox,
    grace: Duration,
}

impl Endpoints {
    pub fn new(pool: PgPool, secrets: SecretBox, grace: Duration) -> Self {
        Self { pool, secrets, grace }
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
    updated_at: DateTime<Utc>,
    disabled_reason: String,
    rate_limit_per_second: Option<i32>,
    ordered_by_conversation: bool,
}

const COLUMNS: &str = "id, url, description, event_types, enabled, created_at, updated_at, disabled_reason, rate_limit_per_second, \
     ordered_by_conversation";

impl From<EndpointRow> for Endpoint {
    fn from(r: EndpointRow) -> Self {
        Endpoint {
            id: r.id,
            url: r.url,
            description: r.description,
            event_types: r.event_types,
            enabled: r.enabled,
            created_at: Some(timestamp(r.created_at)),
            updated_at: Some(timestamp(r.updated_at)),
            disabled_reason: r.disabled_reason,
            rate_limit_per_second: r.rate_limit_per_second.unwrap_or(0),
            ordered_by_conversation: r.ordered_by_conversation,
        }
    }
}

pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

fn not_found(kind: &str, id: &str) -> Status {
    Status::not_found(format!("{kind} {id} not found"))
}

#[tonic::async_trait]
impl WebhookService for Endpoints {
    async fn create_endpoint(
        &self,
        request: Request<CreateEndpointRequest>,
    ) -> Result<Response<EndpointWithSecret>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let url = endpoint_rules::url(&req.url)?;
        let description = endpoint_rules::description(&req.description)?;
        let event_types = endpoint_rules::event_types(&req.event_types)?;
        let rate_limit = endpoint_rules::rate_limit(req.rate_limit_per_second)?;
        let secret = signing::generate_secret();
        let row: EndpointRow = sqlx::query_as(&format!(
            "INSERT INTO endpoints (workspace_id, id, url, description, event_types, enabled, secret_sealed,
                                    rate_limit_per_second, ordered_by_conversation)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
        ))
        .bind(&principal.workspace_id)
        .bind(new_id("ep_"))
        .bind(url)
        .bind(description)
        .bind(&event_types)
        .bind(req.enabled.unwrap_or(true))
        .bind(self.secrets.seal(&secret))
        .bind(rate_limit)
        .bind(req.ordered_by_conversation)
        .fetch_one(&self.pool)
        .await
        .map_err(internal_error)?;
        Ok(Response::new(EndpointWithSecret {
            endpoint: Some(row.into()),
            secret,
        }))
    }

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
                    "SELECT {COLUMNS} FROM endpoints WHERE workspace_id = $1 AND {}",
                    NewestFirst::CLAUSE
                ))
                .bind(&principal.workspace_id),
            )
            .fetch_all(&self.pool)
            .await
            .map_err(internal_error)?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, &r.id));
        Ok(Response::new(ListEndpointsResponse {
            endpoints: rows.into_iter().map(Endpoint::from).collect(),
            next_cursor,
        }))
    }

    async fn get_endpoint(&self, request: Request<GetEndpointRequest>) -> Result<Response<Endpoint>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = request.into_inner().endpoint_id;
        let row: EndpointRow = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM endpoints WHERE workspace_id = $1 AND id = $2"
        ))
        .bind(&principal.workspace_id)
        .bind(&id)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal_error)?
        .ok_or_else(|| not_found("endpoint", &id))?;
        Ok(Response::new(row.into()))
    }

    async fn update_endpoint(&self, request: Request<UpdateEndpointRequest>) -> Result<Response<Endpoint>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let url = req.url.as_deref().map(endpoint_rules::url).transpose()?;
        let description = req
            .description
            .as_deref()
            .map(endpoint_rules::description)
            .transpose()?;
        let event_types = if req.replace_event_types {
            Some(endpoint_rules::event_types(&req.event_types)?)
        } else {
            None
        };
        // Re-enabling clears the reason the platform disabled it for.
        let row: EndpointRow = sqlx::query_as(&format!(
            "UPDATE endpoints SET
                 url = COALESCE($3, url),
                 description = COALESCE($4, description),
                 event_types = COALESCE($5, event_types),
                 enabled = COALESCE($6, enabled),
                 disabled_reason = CASE WHEN $6 THEN '' ELSE disabled_reason END,
                 failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END,
                 rate_limit_per_second = CASE WHEN $7 THEN $8 ELSE rate_limit_per_second END,
                 ordered_by_conversation = COALESCE($9, ordered_by_conversation),
                 updated_at = now()
             WHERE workspace_id = $1 AND id = $2
             RETURNING {COLUMNS}"
        ))
        .bind(&principal.workspace_id)
        .bind(&req.endpoint_id)
        .bind(url)
        .bind(description)
        .bind(event_types)
        .bind(req.enabled)
        .bind(req.rate_limit_per_second.is_some())
        .bind(
            req.rate_limit_per_second
                .map(endpoint_rules::rate_limit)
                .transpose()?
                .flatten(),
        )
        .bind(req.ordered_by_conversation)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal_error)?
        .ok_or_else(|| not_found("endpoint", &req.endpoint_id))?;
        Ok(Response::new(row.into()))
    }

    async fn delete_endpoint(
        &self,
        request: Request<DeleteEndpointRequest>,
    ) -> Result<Response<DeleteEndpointResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = request.into_inner().endpoint_id;
        let deleted = sqlx::query("DELETE FROM endpoints WHERE workspace_id = $1 AND id = $2")
            .bind(&principal.workspace_id)
            .bind(&id)
            .execute(&self.pool)
            .await
            .map_err(internal_error)?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found("endpoint", &id));
        }
        Ok(Response::new(DeleteEndpointResponse { id, deleted: true }))
    }

    async fn rotate_secret(
        &self,
        request: Request<RotateSecretRequest>,
    ) -> Result<Response<EndpointWithSecret>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = request.into_inner().endpoint_id;
        let secret = signing::generate_secret();
        let row: EndpointRow = sqlx::query_as(&format!(
            "UPDATE endpoints SET
                 previous_secret_sealed = secret_sealed,
                 previous_secret_expires_at = now() + make_interval(secs => $4),
                 secret_sealed = $3,
                 updated_at = now()
             WHERE workspace_id = $1 AND id = $2
             RETURNING {COLUMNS}"
        ))
        .bind(&principal.workspace_id)
        .bind(&id)
        .bind(self.secrets.seal(&secret))
        .bind(self.grace.as_secs_f64())
        .fetch_optional(&self.pool)
        .await
        .map_err(internal_error)?
        .ok_or_else(|| not_found("endpoint", &id))?;
        Ok(Response::new(EndpointWithSecret {
            endpoint: Some(row.into()),
            secret,
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<ListDeliveriesRequest>,
    ) -> Result<Response<ListDeliveriesResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        self.ensure_endpoint(&principal.workspace_id, &req.endpoint_id).await?;
        let rows: Vec<DeliveryRow> = page
            .bind(
                sqlx::query_as(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries
                     WHERE workspace_id = $1 AND endpoint_id = $5 AND {}",
                    NewestFirst::CLAUSE
                ))
                .bind(&principal.workspace_id),
            )
            .bind(&req.endpoint_id)
            .fetch_all(&self.pool)
            .await
            .map_err(internal_error)?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, &r.id));
        Ok(Response::new(ListDeliveriesResponse {
            deliveries: rows.into_iter().map(|r| r.into_delivery(Vec::new())).collect(),
            next_cursor,
        }))
    }

    async fn get_delivery(&self, request: Request<GetDeliveryRequest>) -> Result<Response<Delivery>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let row: DeliveryRow = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE workspace_id = $1 AND endpoint_id = $2 AND id = $3"
        ))
        .bind(&principal.workspace_id)
        .bind(&req.endpoint_id)
        .bind(&req.delivery_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal_error)?
        .ok_or_else(|| not_found("delivery", &req.delivery_id))?;
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT attempted_at, http_status, error, latency_ms, response_excerpt FROM attempts
             WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(&row.id)
        .fetch_all(&self.pool)
        .await
        .map_err(internal_error)?;
        Ok(Response::new(
            row.into_delivery(attempts.into_iter().map(Attempt::from).collect()),
        ))
    }

    async fn retry_delivery(&self, request: Request<RetryDeliveryRequest>) -> Result<Response<Delivery>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let mut tx = self.pool.begin().await.map_err(internal_error)?;
        let row: DeliveryRow = sqlx::query_as(&format!(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = now(), updated_at = now()
             WHERE workspace_id = $1 AND endpoint_id = $2 AND id = $3
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(&principal.workspace_id)
        .bind(&req.endpoint_id)
        .bind(&req.delivery_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(internal_error)?
        .ok_or_else(|| not_found("delivery", &req.delivery_id))?;
        wake_sender(&mut tx).await?;
        tx.commit().await.map_err(internal_error)?;
        Ok(Response::new(row.into_delivery(Vec::new())))
    }

    async fn send_test_event(&self, request: Request<SendTestEventRequest>) -> Result<Response<Delivery>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let endpoint_id = request.into_inner().endpoint_id;
        self.ensure_endpoint(&principal.workspace_id, &endpoint_id).await?;
        let envelope = service_runtime::events::Envelope::new(
            "webhook.test",
            &principal.workspace_id,
            serde_json::json!({"endpoint_id": endpoint_id, "message": "a test event from the chatbot platform"}),
        );
        let mut tx = self.pool.begin().await.map_err(internal_error)?;
        sqlx::query("INSERT INTO events (id, workspace_id, event_type, body) VALUES ($1, $2, $3, $4)")
            .bind(&envelope.id)
            .bind(&principal.workspace_id)
            .bind(&envelope.event_type)
            .bind(&envelope.body)
            .execute(&mut *tx)
            .await
            .map_err(internal_error)?;
        let row: DeliveryRow = sqlx::query_as(&format!(
            "INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_type, status)
             VALUES ($1, $2, $3, $4, $5, 'pending') RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(new_id("dlv_"))
        .bind(&principal.workspace_id)
        .bind(&endpoint_id)
        .bind(&envelope.id)
        .bind(&envelope.event_type)
        .fetch_one(&mut *tx)
        .await
        .map_err(internal_error)?;
        wake_sender(&mut tx).await?;
        tx.commit().await.map_err(internal_error)?;
        Ok(Response::new(row.into_delivery(Vec::new())))
    }

    async fn replay_events(
        &self,
        request: Request<ReplayEventsRequest>,
    ) -> Result<Response<ReplayEventsResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let since = req
            .since
            .as_ref()
            .and_then(service_runtime::time::from_timestamp)
            .ok_or_else(|| service_runtime::field_error::invalid_argument("since", "is required"))?;
        let filters: Vec<String> =
            sqlx::query_scalar("SELECT event_types FROM endpoints WHERE workspace_id = $1 AND id = $2")
                .bind(&principal.workspace_id)
                .bind(&req.endpoint_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(internal_error)?
                .ok_or_else(|| not_found("endpoint", &req.endpoint_id))?;
        let mut tx = self.pool.begin().await.map_err(internal_error)?;
        let events: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, event_type FROM events WHERE workspace_id = $1 AND received_at >= $2 ORDER BY received_at",
        )
        .bind(&principal.workspace_id)
        .bind(since)
        .fetch_all(&mut *tx)
        .await
        .map_err(internal_error)?;
        let mut replayed = 0;
        for (event_id, event_type) in events.iter().filter(|(_, t)| endpoint_rules::wants(&filters, t)) {
            // An earlier delivery of the same event is reused, so the
            // receiver sees the same idempotency key again.
            sqlx::query(
                "INSERT INTO deliveries (id, workspace_id, endpoint_id, event_id, event_type, status)
                 VALUES ($1, $2, $3, $4, $5, 'pending')
                 ON CONFLICT (endpoint_id, event_id)
                 DO UPDATE SET status = 'pending', next_attempt_at = now(), attempts = 0, updated_at = now()",
            )
            .bind(new_id("dlv_"))
            .bind(&principal.workspace_id)
            .bind(&req.endpoint_id)
            .bind(event_id)
            .bind(event_type)
            .execute(&mut *tx)
            .await
            .map_err(internal_error)?;
            replayed += 1;
        }
        wake_sender(&mut tx).await?;
        tx.commit().await.map_err(internal_error)?;
        Ok(Response::new(ReplayEventsResponse { replayed }))
    }
}

async fn wake_sender(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), Status> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::consumer::WAKE_CHANNEL)
        .execute(&mut **tx)
        .await
        .map_err(internal_error)?;
    Ok(())
}

impl Endpoints {
    async fn ensure_endpoint(&self, workspace_id: &str, id: &str) -> Result<(), Status> {
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM endpoints WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(internal_error)?;
        found.map(|_| ()).ok_or_else(|| not_found("endpoint", id))
    }
}

const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at, created_at";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    endpoint_id: String,
    event_id: String,
    event_type: String,
    status: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl DeliveryRow {
    fn into_delivery(self, attempt_log: Vec<Attempt>) -> Delivery {
        Delivery {
            id: self.id,
            endpoint_id: self.endpoint_id,
            event_id: self.event_id,
            event_type: self.event_type,
            next_attempt_at: (self.status == "pending").then(|| timestamp(self.next_attempt_at)),
            status: self.status,
            attempts: self.attempts,
            created_at: Some(timestamp(self.created_at)),
            attempt_log,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    attempted_at: DateTime<Utc>,
    http_status: Option<i32>,
    error: String,
    latency_ms: i32,
    response_excerpt: String,
}

impl From<AttemptRow> for Attempt {
    fn from(r: AttemptRow) -> Self {
        Attempt {
            attempted_at: Some(timestamp(r.attempted_at)),
            http_status: r.http_status.unwrap_or(0),
            error: r.error,
            latency_ms: r.latency_ms,
            response_excerpt: r.response_excerpt,
        }
    }
}
