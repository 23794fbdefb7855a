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

/// The integration and its sealed credentials, for using the connection.
pub async fn with_credentials<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    id: &IntegrationId,
) -> Result<(IntegrationRow, Vec<u8>)> {
    #[derive(sqlx::FromRow)]
    struct WithCredentials {
        #[sqlx(flatten)]
        row: IntegrationRow,
        credentials_sealed: Option<Vec<u8>>,
    }
    let found: WithCredentials = sqlx::query_as(&format!(
        "SELECT {COLUMNS}, credentials_sealed FROM integrations WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(id))?;
    let sealed = found
        .credentials_sealed
        .ok_or_else(|| ServiceError::Internal(format!("integration {id} has no credentials")))?;
    Ok((found.row, sealed))
}

/// The sealed credentials, the row locked until the transaction ends: a
/// token is refreshed by one caller at a time, whichever replica it is on.
pub async fn lock_credentials(conn: &mut PgConnection, workspace_id: &str, id: &IntegrationId) -> Result<Vec<u8>> {
    sqlx::query_scalar::<_, Option<Vec<u8>>>(
        "SELECT credentials_sealed FROM integrations WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .flatten()
    .ok_or_else(|| not_found(id))
}

pub async fn replace_credentials(
    conn: &mut PgConnection,
    workspace_id: &str,
    id: &IntegrationId,
    sealed: &[u8],
) -> Result<()> {
    sqlx::query(
        "UPDATE integrations SET credentials_sealed = $3, updated_at = now() WHERE workspace_id = $1 AND id = $2",
    )
    .bind(workspace_id)
    .bind(id)
    .bind(sealed)
    .execute(conn)
    .await?;
    Ok(())
}

/// How the last use of the connection went.
pub struct Checked<'a> {
    pub status: &'a str,
    pub last_error: &'a str,
    pub scopes: &'a [String],
}

pub async fn record_check<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    id: &IntegrationId,
    checked: Checked<'_>,
) -> Result<IntegrationRow> {
    sqlx::query_as(&format!(
        "UPDATE integrations SET status = $3, last_error = $4, scopes = $5, updated_at = now()
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .bind(checked.status)
    .bind(checked.last_error)
    .bind(checked.scopes)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(id))
}

fn not_found(id: &IntegrationId) -> ServiceError {
    ServiceError::not_found(IntegrationId::KIND, id.as_str())
}
