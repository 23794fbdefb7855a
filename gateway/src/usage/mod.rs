//! What the gateway records about every request, for the API monitoring
//! report and `/metrics`, without slowing the request down: the request
//! path only hands a small sample to a bounded channel (no lock, no I/O);
//! a background task folds samples into per-minute histograms and
//! cumulative Prometheus series, and another sends each interval's report
//! to analytics-service, keeping it until analytics has it.

mod aggregate;
pub mod histogram;
mod readiness;
mod recorder;
mod reporter;

pub use aggregate::Prometheus;
pub use readiness::spawn_sampler;
pub use recorder::{RecordLayer, RouteLabel, UsageRecorder, WorkspaceLabel};

use std::{sync::Arc, time::Duration};

use service_runtime::grpc_client::CallChannel as Channel;
use tokio_util::sync::CancellationToken;

/// How the gateway records usage.
#[derive(Debug, Clone)]
pub struct UsageSettings {
    /// `GATEWAY_USAGE_RECORDING` (`on`, or `off` to record nothing per
    /// request: for measuring what recording costs).
    pub recording: bool,
    /// `GATEWAY_USAGE_REPORT_MS`: how often a report goes to analytics.
    pub report_every: Duration,
    /// `GATEWAY_SLOW_REQUEST_MS`: requests slower than this are listed.
    pub slow_threshold: Duration,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            recording: true,
            report_every: Duration::from_secs(10),
            slow_threshold: Duration::from_secs(1),
        }
    }
}

/// Starts the background tasks; `analytics` is where reports go (none:
/// reports are only counted in `/metrics`).
pub fn start(
    settings: &UsageSettings,
    analytics: Option<Channel>,
    shutdown: &CancellationToken,
) -> (UsageRecorder, Arc<Prometheus>) {
    let (recorder, samples, readiness) = recorder::channel();
    let prometheus = Arc::new(Prometheus::default());
    let reports = reporter::spawn(analytics, prometheus.clone(), shutdown.clone());
    aggregate::spawn(
        samples,
        readiness,
        reports,
        settings.clone(),
        prometheus.clone(),
        shutdown.clone(),
    );
    (recorder, prometheus)
}
