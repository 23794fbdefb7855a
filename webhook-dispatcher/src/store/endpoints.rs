//! The `endpoints` table: where a workspace wants its events, with the
//! sealed secrets that sign them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ids::EndpointId;
use proto::webhooks::v1::Endpoint;
use service_runtime::{pagination::NewestFirst, rows, time::timestamp};
use sqlx::PgExecutor;

use crate::error::{Error, Result};

#[derive(Debug, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: EndpointId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub disabled_reason: String,
    pub rate_limit_per_second: Option<i32>,
    pub ordered_by_conversation: bool,
}

const COLUMNS: &str = "id, url, description, event_types, enabled, created_at, updated_at, disabled_reason, \
     rate_limit_per_second, ordered_by_conversation";

impl From<EndpointRow> for Endpoint {
    fn from(r: EndpointRow) -> Self {
        Endpoint {
            id: r.id.into_string(),
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

/// A validated endpoint to create.
pub struct NewEndpoint {
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub secret_sealed: Vec<u8>,
    pub rate_limit_per_second: Option<i32>,
    pub ordered_by_conversation: bool,
}

pub async fn insert<'e>(db: impl PgExecutor<'e>, workspace_id: &str, new: &NewEndpoint) -> Result<EndpointRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO endpoints (workspace_id, id, url, description, event_types, enabled, secret_sealed,
                                rate_limit_per_second, ordered_by_conversation)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(EndpointId::generate())
    .bind(&new.url)
    .bind(&new.description)
    .bind(&new.event_types)
    .bind(new.enabled)
    .bind(&new.secret_sealed)
    .bind(new.rate_limit_per_second)
    .bind(new.ordered_by_conversation)
    .fetch_one(db)
    .await?)
}

pub async fn list<'e>(db: impl PgExecutor<'e>, workspace_id: &str, page: &NewestFirst) -> Result<Vec<EndpointRow>> {
    Ok(page
        .fetch(db, &format!("SELECT {COLUMNS} FROM endpoints"), workspace_id)
        .await?)
}

pub async fn get<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &EndpointId) -> Result<EndpointRow> {
    rows::by_id(db, "endpoints", COLUMNS, workspace_id, id.as_str())
        .await?
        .ok_or_else(|| not_found(id))
}

/// NOT_FOUND unless the endpoint is the workspace's.
pub async fn ensure<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &EndpointId) -> Result<()> {
    event_filters(db, workspace_id, id).await.map(|_| ())
}

/// The endpoint's event type filters; NOT_FOUND unless it is the
/// workspace's.
pub async fn event_filters<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &EndpointId) -> Result<Vec<String>> {
    sqlx::query_scalar("SELECT event_types FROM endpoints WHERE workspace_id = $1 AND id = $2")
        .bind(workspace_id)
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| not_found(id))
}

/// What an update changes; `None` keeps the stored value.
pub struct Changes {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    /// `Some(None)` removes the limit.
    pub rate_limit_per_second: Option<Option<i32>>,
    pub ordered_by_conversation: Option<bool>,
}

/// Re-enabling clears the reason the platform disabled the endpoint for,
/// and its failing streak.
pub async fn update<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    id: &EndpointId,
    changes: &Changes,
) -> Result<EndpointRow> {
    sqlx::query_as(&format!(
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
    .bind(workspace_id)
    .bind(id)
    .bind(&changes.url)
    .bind(&changes.description)
    .bind(&changes.event_types)
    .bind(changes.enabled)
    .bind(changes.rate_limit_per_second.is_some())
    .bind(changes.rate_limit_per_second.flatten())
    .bind(changes.ordered_by_conversation)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(id))
}

/// Deletes the endpoint (its deliveries go with it).
pub async fn delete<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &EndpointId) -> Result<()> {
    match rows::delete_by_id(db, "endpoints", workspace_id, id.as_str()).await? {
        true => Ok(()),
        false => Err(not_found(id)),
    }
}

/// Makes `sealed` the signing secret; the current one keeps signing too for
/// `grace`.
pub async fn rotate_secret<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    id: &EndpointId,
    sealed: &[u8],
    grace: Duration,
) -> Result<EndpointRow> {
    sqlx::query_as(&format!(
        "UPDATE endpoints SET
             previous_secret_sealed = secret_sealed,
             previous_secret_expires_at = now() + make_interval(secs => $4),
             secret_sealed = $3,
             updated_at = now()
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .bind(sealed)
    .bind(grace.as_secs_f64())
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(id))
}

/// An enabled endpoint of one of a batch's workspaces, with what sending to
/// it needs.
#[derive(sqlx::FromRow)]
pub struct Subscriber {
    pub workspace_id: String,
    pub id: EndpointId,
    pub event_types: Vec<String>,
    pub ordered_by_conversation: bool,
    pub url: String,
    pub secret_sealed: Vec<u8>,
    pub previous_secret_sealed: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub rate_limit_per_second: Option<i32>,
}

/// The enabled endpoints of `workspaces`.
pub async fn subscribers<'e>(db: impl PgExecutor<'e>, workspaces: &[&str]) -> Result<Vec<Subscriber>> {
    Ok(sqlx::query_as(
        "SELECT workspace_id, id, event_types, ordered_by_conversation, url, secret_sealed,
                previous_secret_sealed, previous_secret_expires_at, rate_limit_per_second
         FROM endpoints WHERE workspace_id = ANY($1) AND enabled",
    )
    .bind(workspaces)
    .fetch_all(db)
    .await?)
}

fn not_found(id: &EndpointId) -> Error {
    Error::not_found(EndpointId::KIND, id.as_str())
}
