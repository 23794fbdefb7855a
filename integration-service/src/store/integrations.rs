//! The `integrations` table: a workspace's connections to other systems.

use chrono::{DateTime, Utc};
use ids::IntegrationId;
use proto::integration::v1::Integration;
use serde::Serialize;
use serde_json::Value;
use service_runtime::{error::ServiceError, pagination::NewestFirst, rows, time::timestamp};
use sqlx::{PgConnection, PgExecutor};

use service_runtime::proto_json::json_to_struct;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// An integration as shown and as events carry it: its credentials are
/// not among its columns.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct IntegrationRow {
    pub id: IntegrationId,
    pub kind: String,
    pub name: String,
    pub status: String,
    pub settings: Value,
    pub scopes: Vec<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, kind, name, status, settings, scopes, last_sync_at, last_error, created_at, updated_at";

impl From<IntegrationRow> for Integration {
    fn from(row: IntegrationRow) -> Self {
        Integration {
            id: row.id.into_string(),
            kind: row.kind,
            status: row.status,
            created_at: Some(timestamp(row.created_at)),
            name: row.name,
            settings: Some(json_to_struct(row.settings)),
            scopes: row.scopes,
            last_sync_at: row.last_sync_at.map(timestamp),
            last_error: row.last_error,
            updated_at: Some(timestamp(row.updated_at)),
        }
    }
}

/// A connection that was tried and works, ready to save.
pub struct NewIntegration<'a> {
    pub id: &'a IntegrationId,
    pub kind: &'a str,
    pub name: &'a str,
    pub settings: &'a Value,
    pub scopes: &'a [String],
    pub credentials_sealed: &'a [u8],
}

pub async fn insert(conn: &mut PgConnection, workspace_id: &str, new: NewIntegration<'_>) -> Result<IntegrationRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO integrations (workspace_id, id, kind, name, status, settings, scopes, credentials_sealed)
         VALUES ($1, $2, $3, $4, 'connected', $5, $6, $7)
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(new.id)
    .bind(new.kind)
    .bind(new.name)
    .bind(new.settings)
    .bind(new.scopes)
    .bind(new.credentials_sealed)
    .fetch_one(conn)
    .await?)
}

pub async fn list<'e>(db: impl PgExecutor<'e>, workspace_id: &str, page: &NewestFirst) -> Result<Vec<IntegrationRow>> {
    Ok(page
        .fetch(db, &format!("SELECT {COLUMNS} FROM integrations"), workspace_id)
        .await?)
}

pub async fn get<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &IntegrationId) -> Result<IntegrationRow> {
    rows::by_id(db, "integrations", COLUMNS, workspace_id, id.as_str())
        .await?
        .ok_or_else(|| not_found(id))
}

/// Deletes the integration, credentials and all, and returns it as it was.
pub async fn delete(conn: &mut PgConnection, workspace_id: &str, id: &IntegrationId) -> Result<IntegrationRow> {
    sqlx::query_as(&format!(
        "DELETE FROM integrations WHERE workspace_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found(id))
}

fn not_found(id: &IntegrationId) -> ServiceError {
    ServiceError::not_found(IntegrationId::KIND, id.as_str())
}
