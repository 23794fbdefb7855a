//! Which plan a workspace is on, for principals whose credential does not
//! carry it (JWTs). Cached briefly so JWT requests stay off the database.

use std::time::Duration;

use moka::future::Cache;
use sqlx::PgPool;

/// The plan of a workspace created without one, and of any workspace
/// whose plan cannot be read.
pub const DEFAULT_PLAN: &str = "default";

pub struct WorkspacePlans {
    pool: PgPool,
    cache: Cache<String, String>,
}

impl WorkspacePlans {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// The workspace's plan; the default plan for an unknown workspace or
    /// when the database does not answer (limits still apply).
    pub async fn plan_of(&self, workspace_id: &str) -> String {
        let pool = self.pool.clone();
        let id = workspace_id.to_owned();
        self.cache
            .get_with(workspace_id.to_owned(), async move {
                sqlx::query_scalar::<_, String>("SELECT plan FROM workspaces WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| DEFAULT_PLAN.to_owned())
            })
            .await
    }
}
