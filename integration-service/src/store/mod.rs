//! The service's SQL, one module per table. Every query that reads tenant
//! data takes the workspace id. Sealed credentials are written here but
//! never read back by the queries that serve the API.

pub mod db_products;
pub mod integrations;
pub mod knowledge_queue;
pub mod order_notices;
pub mod salesforce_leads;
pub mod shopify_catalog;
pub mod shopify_deliveries;
pub mod shopify_orders;
pub mod sync_runs;

use service_runtime::{error::ServiceError, pagination::NewestFirst};

/// A page, newest first, of the rows of one connection that `select`
/// (`SELECT … FROM …`, with `workspace_id`, `integration_id`, `created_at`
/// and `id` columns) reads.
async fn connection_page<'e, T>(
    db: impl sqlx::PgExecutor<'e>,
    select: &str,
    workspace_id: &str,
    integration_id: &str,
    page: &NewestFirst,
) -> Result<Vec<T>, ServiceError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let sql = format!(
        "{select} WHERE workspace_id = $1 AND integration_id = $5 AND {}",
        NewestFirst::CLAUSE
    );
    Ok(page
        .bind(sqlx::query_as(&sql).bind(workspace_id))
        .bind(integration_id)
        .fetch_all(db)
        .await?)
}

/// Deletes a connection's rows from each of `tables` (it was deleted, or
/// its store asked to be forgotten). The names are this crate's own.
pub async fn forget(conn: &mut sqlx::PgConnection, tables: &[&str], integration_id: &str) -> Result<(), ServiceError> {
    for table in tables {
        sqlx::query(&format!("DELETE FROM {table} WHERE integration_id = $1"))
            .bind(integration_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
