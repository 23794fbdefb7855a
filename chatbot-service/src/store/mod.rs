//! The service's SQL, one module per table: every statement that reads or
//! changes it, and the one row type it returns. Every query that reads
//! tenant data takes the workspace id. Nothing here builds events or knows
//! gRPC: callers record the events of what these functions return, in the
//! same transaction.

pub mod bots;
pub mod conversations;
pub mod knowledge;
pub mod messages;
pub mod passages;
pub mod secrets;
pub mod training_jobs;

use service_runtime::telemetry::spans;
use sqlx::PgExecutor;
use tracing::Instrument;

use crate::error::Result;

/// Whether `table` holds the workspace's row `id`; locks nothing.
async fn exists<'e>(db: impl PgExecutor<'e>, table: &'static str, workspace_id: &str, id: &str) -> Result<bool> {
    let found: Option<i32> = sqlx::query_scalar(&format!("SELECT 1 FROM {table} WHERE workspace_id = $1 AND id = $2"))
        .bind(workspace_id)
        .bind(id)
        .fetch_optional(db)
        .instrument(spans::sql("SELECT", table))
        .await?;
    Ok(found.is_some())
}
