//! The `integrations` table: a workspace's connections to other systems.

use chrono::{DateTime, Utc};
use ids::IntegrationId;
use proto::integration::v1::Integration;
use serde::Serialize;
use serde_json::Value;
use service_runtime::{error::ServiceError, pagination::NewestFirst, rows, time::timestamp};
use sqlx::{PgConnection, PgExecutor};

use service_runtime::proto_json::json_to_struct;

pub use crate::kinds::Subscription;

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
    pub webhook_topics: Vec<String>,
}

const COLUMNS: &str =
    "id, kind, name, status, settings, scopes, last_sync_at, last_error, created_at, updated_at, webhook_topics";

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
            webhook_topics: row.webhook_topics,
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
    pub subscriptions: &'a [Subscription],
}

pub async fn insert(conn: &mut PgConnection, workspace_id: &str, new: NewIntegration<'_>) -> Result<IntegrationRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO integrations (workspace_id, id, kind, name, status, settings, scopes, credentials_sealed,
                                   webhook_topics, webhook_subscription_ids)
         VALUES ($1, $2, $3, $4, 'connected', $5, $6, $7, $8, $9)
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(new.id)
    .bind(new.kind)
    .bind(new.name)
    .bind(new.settings)
    .bind(new.scopes)
    .bind(new.credentials_sealed)
    .bind(new.subscriptions.iter().map(|s| s.topic.clone()).collect::<Vec<_>>())
    .bind(new.subscriptions.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
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

/// The workspace's connected databases that offer their customers'
/// orders, with their sealed credentials.
pub async fn order_sources<'e>(db: impl PgExecutor<'e>, workspace_id: &str) -> Result<Vec<(IntegrationRow, Vec<u8>)>> {
    #[derive(sqlx::FromRow)]
    struct WithCredentials {
        #[sqlx(flatten)]
        row: IntegrationRow,
        credentials_sealed: Vec<u8>,
    }
    let found: Vec<WithCredentials> = sqlx::query_as(&format!(
        "SELECT {COLUMNS}, credentials_sealed FROM integrations
         WHERE workspace_id = $1 AND kind IN ('postgres', 'mysql') AND status = 'connected'
           AND jsonb_typeof(settings -> 'orders') = 'object' AND credentials_sealed IS NOT NULL
         ORDER BY created_at LIMIT 10"
    ))
    .bind(workspace_id)
    .fetch_all(db)
    .await?;
    Ok(found.into_iter().map(|f| (f.row, f.credentials_sealed)).collect())
}

/// The webhook subscriptions the connection registered.
pub async fn subscriptions<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    id: &IntegrationId,
) -> Result<Vec<Subscription>> {
    let (topics, ids): (Vec<String>, Vec<String>) = sqlx::query_as(
        "SELECT webhook_topics, webhook_subscription_ids FROM integrations WHERE workspace_id = $1 AND id = $2",
    )
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(topics
        .into_iter()
        .zip(ids)
        .map(|(topic, id)| Subscription { topic, id })
        .collect())
}

/// A connection a webhook names by id alone, with its workspace and sealed
/// credentials: the webhook's signature says whether to believe it.
pub struct Addressed {
    pub workspace_id: String,
    pub row: IntegrationRow,
    pub sealed: Option<Vec<u8>>,
}

pub async fn addressed_by_webhook<'e>(db: impl PgExecutor<'e>, id: &IntegrationId) -> Result<Addressed> {
    #[derive(sqlx::FromRow)]
    struct Found {
        workspace_id: String,
        #[sqlx(flatten)]
        row: IntegrationRow,
        credentials_sealed: Option<Vec<u8>>,
    }
    let found: Found = sqlx::query_as(&format!(
        "SELECT workspace_id, {COLUMNS}, credentials_sealed FROM integrations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| not_found(id))?;
    Ok(Addressed {
        workspace_id: found.workspace_id,
        row: found.row,
        sealed: found.credentials_sealed,
    })
}

/// What changes of an integration; `None` keeps what it was.
pub struct Update<'a> {
    pub name: Option<&'a str>,
    pub settings: Option<&'a Value>,
    /// New credentials, which were just tried: the connection is
    /// `connected` again.
    pub sealed: Option<&'a [u8]>,
}

pub async fn update(
    conn: &mut PgConnection,
    workspace_id: &str,
    id: &IntegrationId,
    update: Update<'_>,
) -> Result<IntegrationRow> {
    sqlx::query_as(&format!(
        "UPDATE integrations SET name = coalesce($3, name),
             settings = coalesce($4, settings),
             credentials_sealed = coalesce($5, credentials_sealed),
             status = CASE WHEN $5 IS NULL THEN status ELSE 'connected' END,
             last_error = CASE WHEN $5 IS NULL THEN last_error ELSE '' END,
             updated_at = now()
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .bind(update.name)
    .bind(update.settings)
    .bind(update.sealed)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found(id))
}

/// A connection as the knowledge pusher needs it: its workspace, kind and
/// settings; `None` when it is gone.
pub async fn linked<'e>(db: impl PgExecutor<'e>, id: &str) -> Result<Option<(String, String, Value)>> {
    Ok(
        sqlx::query_as("SELECT workspace_id, kind, settings FROM integrations WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// Records the webhook subscriptions the connection registered.
pub async fn set_subscriptions(
    conn: &mut PgConnection,
    workspace_id: &str,
    id: &IntegrationId,
    subscriptions: &[Subscription],
) -> Result<IntegrationRow> {
    sqlx::query_as(&format!(
        "UPDATE integrations SET webhook_topics = $3, webhook_subscription_ids = $4, updated_at = now()
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .bind(subscriptions.iter().map(|s| s.topic.clone()).collect::<Vec<_>>())
    .bind(subscriptions.iter().map(|s| s.id.clone()).collect::<Vec<_>>())
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found(id))
}

/// The other side removed the platform (Shopify's `app/uninstalled`): the
/// connection stays listed, disconnected, with nothing registered.
pub async fn mark_uninstalled(
    conn: &mut PgConnection,
    workspace_id: &str,
    id: &IntegrationId,
    reason: &str,
) -> Result<IntegrationRow> {
    sqlx::query_as(&format!(
        "UPDATE integrations SET status = 'disconnected', last_error = $3,
             webhook_topics = '{{}}', webhook_subscription_ids = '{{}}', updated_at = now()
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .bind(reason)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| not_found(id))
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
