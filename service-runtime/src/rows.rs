//! Reading a workspace's rows the way every service's store does: each
//! query takes the workspace id, so no tenant ever reads another's.

use crate::telemetry::spans;
use sqlx::{FromRow, PgExecutor, postgres::PgRow};
use tracing::Instrument;

/// The workspace's row `id` of `table`, as `columns`.
pub async fn by_id<'e, T>(
    db: impl PgExecutor<'e>,
    table: &'static str,
    columns: &'static str,
    workspace_id: &str,
    id: &str,
) -> Result<Option<T>, sqlx::Error>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    sqlx::query_as(&format!(
        "SELECT {columns} FROM {table} WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(db)
    .instrument(spans::sql("SELECT", table))
    .await
}

/// Deletes the workspace's row `id` of `table`; false when there was none.
pub async fn delete_by_id<'e>(
    db: impl PgExecutor<'e>,
    table: &'static str,
    workspace_id: &str,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query(&format!("DELETE FROM {table} WHERE workspace_id = $1 AND id = $2"))
        .bind(workspace_id)
        .bind(id)
        .execute(db)
        .instrument(spans::sql("DELETE", table))
        .await?
        .rows_affected();
    Ok(deleted > 0)
}
