//! Replays run here, in the background, a page of events per transaction,
//! so a replay of months of events never holds one long transaction nor
//! one request's worth of memory. Any replica takes any running replay
//! (`FOR UPDATE SKIP LOCKED`); progress is saved with each page, so a
//! restart resumes where it stopped.

use std::{sync::Arc, time::Duration};

use service_runtime::error::ServiceError;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    endpoint_rules,
    error::Result,
    store::{
        deliveries, endpoints,
        replays::{self, Progress, ReplayRow},
    },
};

/// Events per page (per transaction).
pub const PAGE: i64 = 500;
/// How often a replica without work looks for a replay another started.
const POLL: Duration = Duration::from_secs(1);

/// Works through running replays until `shutdown`; `wake` says a replay
/// was just started here. `max_events` caps how many one replay examines.
pub fn spawn(pool: PgPool, max_events: i64, wake: Arc<Notify>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let more = match step(&pool, max_events).await {
                Ok(more) => more,
                Err(error) => {
                    tracing::warn!(%error, "replaying a page of events failed; trying again");
                    false
                }
            };
            if !more {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    });
}

/// Replays one page of one running replay; whether there may be more work.
pub async fn step(pool: &PgPool, max_events: i64) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let Some(replay) = replays::claim(&mut tx).await? else {
        return Ok(false);
    };
    let filters = match endpoints::event_filters(&mut *tx, &replay.workspace_id, &replay.endpoint_id).await {
        Ok(filters) => filters,
        // The endpoint was deleted: nothing is left to replay to.
        Err(ServiceError::NotFound { .. }) => {
            finish(&mut tx, &replay, "done").await?;
            tx.commit().await?;
            return Ok(true);
        }
        Err(error) => return Err(error),
    };
    let room = (max_events - replay.examined).clamp(0, PAGE);
    let page = replays::next_events(&mut tx, &replay, room).await?;
    let wanted: Vec<_> = page
        .iter()
        .filter(|(_, _, event_type)| endpoint_rules::wants(&filters, event_type))
        .map(|(_, id, event_type)| (id.clone(), event_type.clone()))
        .collect();
    let replayed = deliveries::replay(
        &mut tx,
        &replay.workspace_id,
        &replay.endpoint_id,
        &wanted.iter().collect::<Vec<_>>(),
    )
    .await?;
    if replayed > 0 {
        deliveries::wake(&mut *tx).await?;
    }
    let examined = page.len() as i64;
    let status = match () {
        _ if examined < room => "done",
        _ if replay.examined + examined >= max_events => "capped",
        _ => "running",
    };
    let progress = Progress {
        after: page.last().map(|(at, id, _)| (*at, id)),
        examined,
        replayed: replayed as i64,
        status,
    };
    replays::advance(&mut tx, &replay.id, &progress).await?;
    tx.commit().await?;
    Ok(true)
}

async fn finish(tx: &mut sqlx::PgConnection, replay: &ReplayRow, status: &'static str) -> Result<()> {
    let progress = Progress {
        after: None,
        examined: 0,
        replayed: 0,
        status,
    };
    replays::advance(tx, &replay.id, &progress).await
}
