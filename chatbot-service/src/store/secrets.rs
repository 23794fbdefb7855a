//! The `workspace_secrets` table: each row a sealed value, its origin and
//! fingerprint. Only [`crate::secrets`] reads `sealed`.

use chrono::{DateTime, Utc};
use proto::chatbot::v1::Secret;
use service_runtime::telemetry::spans;
use sqlx::PgExecutor;
use tracing::Instrument;

use crate::{error::Result, proto_convert::timestamp};

#[derive(Debug, sqlx::FromRow)]
pub struct SecretRow {
    pub name: String,
    pub origin: String,
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "name, origin, fingerprint, created_at, updated_at";

impl From<SecretRow> for Secret {
    fn from(row: SecretRow) -> Self {
        Secret {
            name: row.name,
            origin: row.origin,
            fingerprint: row.fingerprint,
            created_at: Some(timestamp(row.created_at)),
            updated_at: Some(timestamp(row.updated_at)),
        }
    }
}

/// What a secret is made of when written.
pub struct Written<'a> {
    pub name: &'a str,
    pub origin: &'a str,
    pub sealed: &'a [u8],
    pub fingerprint: &'a str,
}

/// The new row; none when the workspace already has a secret so named.
pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    secret: &Written<'_>,
) -> Result<Option<SecretRow>> {
    let sql = format!(
        "INSERT INTO workspace_secrets (workspace_id, name, origin, sealed, fingerprint) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (workspace_id, name) DO NOTHING RETURNING {COLUMNS}"
    );
    Ok(bind(sqlx::query_as(&sql).bind(workspace_id), secret)
        .fetch_optional(db)
        .instrument(spans::sql("INSERT", "workspace_secrets"))
        .await?)
}

/// The replaced row; none unless the workspace has a secret so named.
pub async fn replace<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    secret: &Written<'_>,
) -> Result<Option<SecretRow>> {
    let sql = format!(
        "UPDATE workspace_secrets SET origin = $3, sealed = $4, fingerprint = $5, updated_at = now() \
         WHERE workspace_id = $1 AND name = $2 RETURNING {COLUMNS}"
    );
    Ok(bind(sqlx::query_as(&sql).bind(workspace_id), secret)
        .fetch_optional(db)
        .instrument(spans::sql("UPDATE", "workspace_secrets"))
        .await?)
}

type Query<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, SecretRow, sqlx::postgres::PgArguments>;

fn bind<'q>(query: Query<'q>, secret: &Written<'q>) -> Query<'q> {
    query
        .bind(secret.name)
        .bind(secret.origin)
        .bind(secret.sealed)
        .bind(secret.fingerprint)
}

/// Up to `limit` secrets named after `after`, by name.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<SecretRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM workspace_secrets WHERE workspace_id = $1 AND name > $2 ORDER BY name LIMIT $3");
    Ok(sqlx::query_as(&sql)
        .bind(workspace_id)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .instrument(spans::sql("SELECT", "workspace_secrets"))
        .await?)
}

pub async fn find<'e>(db: impl PgExecutor<'e>, workspace_id: &str, name: &str) -> Result<Option<SecretRow>> {
    let sql = format!("SELECT {COLUMNS} FROM workspace_secrets WHERE workspace_id = $1 AND name = $2");
    Ok(sqlx::query_as(&sql)
        .bind(workspace_id)
        .bind(name)
        .fetch_optional(db)
        .instrument(spans::sql("SELECT", "workspace_secrets"))
        .await?)
}

/// The sealed value and its origin, for using the secret.
pub async fn sealed<'e>(db: impl PgExecutor<'e>, workspace_id: &str, name: &str) -> Result<Option<(Vec<u8>, String)>> {
    Ok(
        sqlx::query_as("SELECT sealed, origin FROM workspace_secrets WHERE workspace_id = $1 AND name = $2")
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(db)
            .instrument(spans::sql("SELECT", "workspace_secrets"))
            .await?,
    )
}

/// Whether a secret so named was the workspace's.
pub async fn delete<'e>(db: impl PgExecutor<'e>, workspace_id: &str, name: &str) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM workspace_secrets WHERE workspace_id = $1 AND name = $2")
        .bind(workspace_id)
        .bind(name)
        .execute(db)
        .instrument(spans::sql("DELETE", "workspace_secrets"))
        .await?;
    Ok(deleted.rows_affected() > 0)
}
