//! Forgetting what is older than `CHATBOT_RETENTION_DAYS` (30), hourly and
//! in small batches (see [`service_runtime::retention`]):
//! - finished training jobs, except each bot's deployed version and latest
//!   trained one (deploying a version looks its job up);
//! - the idempotency keys of messages: a retry that late is a new send. The
//!   messages themselves stay.

use std::time::Duration;

use service_runtime::retention::{in_batches, spawn_hourly};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub training_jobs: u64,
    pub idempotency_keys: u64,
}

pub fn spawn(pool: PgPool, retention: Duration, shutdown: CancellationToken) {
    let stop = shutdown.clone();
    spawn_hourly("chatbot history", shutdown, move || {
        let (pool, stop) = (pool.clone(), stop.clone());
        async move {
            let removed = prune(&pool, retention, &stop).await?;
            if removed != Removed::default() {
                tracing::info!(
                    training_jobs = removed.training_jobs,
                    idempotency_keys = removed.idempotency_keys,
                    "pruned chatbot history"
                );
            }
            Ok(())
        }
    });
}

pub async fn prune(pool: &PgPool, retention: Duration, shutdown: &CancellationToken) -> Result<Removed, sqlx::Error> {
    const TRAINING_JOBS: &str = "DELETE FROM training_jobs WHERE (workspace_id, id) IN (
             SELECT j.workspace_id, j.id FROM training_jobs j
             JOIN bots b ON b.workspace_id = j.workspace_id AND b.id = j.bot_id
             WHERE j.status NOT IN ('queued', 'running')
               AND coalesce(j.finished_at, j.created_at) < now() - make_interval(secs => $1)
               AND j.version <> b.deployed_version
               AND j.version IS DISTINCT FROM (
                   SELECT max(k.version) FROM training_jobs k
                   WHERE k.workspace_id = j.workspace_id AND k.bot_id = j.bot_id AND k.status = 'succeeded')
             LIMIT $2)";
    const IDEMPOTENCY_KEYS: &str = "UPDATE messages SET idempotency_key = NULL WHERE (workspace_id, id) IN (
             SELECT workspace_id, id FROM messages
             WHERE idempotency_key IS NOT NULL AND created_at < now() - make_interval(secs => $1)
             LIMIT $2)";
    Ok(Removed {
        training_jobs: in_batches(pool, TRAINING_JOBS, retention, shutdown).await?,
        idempotency_keys: in_batches(pool, IDEMPOTENCY_KEYS, retention, shutdown).await?,
    })
}
