//! Uptime is measured, not claimed: the gateway runs its readiness check
//! on a schedule and records each outcome, for the platform ("gateway":
//! every part ready) and for each part.

use std::{sync::Arc, time::Duration};

use service_runtime::shutdown::slept;
use tokio_util::sync::CancellationToken;

use super::recorder::ReadinessCheck;
use crate::{AppState, health};

/// How often readiness is checked for the uptime report.
pub const EVERY: Duration = Duration::from_secs(5);

pub fn spawn_sampler(state: Arc<AppState>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let readiness = health::check(&state).await;
            let mut components = vec![
                ("gateway".to_owned(), readiness.ready()),
                ("database".to_owned(), readiness.database),
            ];
            components.extend(readiness.upstreams);
            state.usage.readiness(ReadinessCheck { components });
            if !slept(EVERY, &shutdown).await {
                return;
            }
        }
    });
}
