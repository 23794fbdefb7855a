//! Sending reports to analytics-service in order, each until it is taken:
//! a report that times out is sent again under the same id, which
//! analytics applies once. While analytics is away, reports wait (an hour
//! of them at most; the oldest go first when that overflows).

use std::{collections::VecDeque, sync::Arc, sync::atomic::Ordering, time::Duration};

use proto::analytics::v1::{RecordApiUsageRequest, analytics_service_client::AnalyticsServiceClient};
use service_runtime::grpc_client::CallChannel as Channel;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Prometheus;

const MAX_WAITING: usize = 360;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_secs(2);

pub fn spawn(
    analytics: Option<Channel>,
    prometheus: Arc<Prometheus>,
    shutdown: CancellationToken,
) -> mpsc::Sender<RecordApiUsageRequest> {
    let (sender, mut reports) = mpsc::channel::<RecordApiUsageRequest>(16);
    tokio::spawn(async move {
        let Some(channel) = analytics else {
            // No analytics configured: reports are dropped as they come.
            while reports.recv().await.is_some() {}
            return;
        };
        let mut client = AnalyticsServiceClient::new(channel);
        let mut waiting: VecDeque<RecordApiUsageRequest> = VecDeque::new();
        loop {
            let next = if waiting.is_empty() {
                tokio::select! {
                    report = reports.recv() => report,
                    _ = shutdown.cancelled() => return,
                }
            } else {
                reports.try_recv().ok()
            };
            if let Some(report) = next {
                if waiting.len() == MAX_WAITING {
                    waiting.pop_front();
                }
                waiting.push_back(report);
            }
            prometheus
                .reports_waiting
                .store(waiting.len() as u64, Ordering::Relaxed);
            let Some(report) = waiting.front() else { continue };
            let mut request = tonic::Request::new(report.clone());
            request.set_timeout(CALL_TIMEOUT);
            match tokio::time::timeout(CALL_TIMEOUT, client.record_api_usage(request)).await {
                Ok(Ok(_)) => {
                    waiting.pop_front();
                    prometheus.reports_sent.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
                    // Sending it again would be refused again.
                    tracing::error!(message = status.message(), "analytics refused a usage report; dropped");
                    waiting.pop_front();
                }
                outcome => {
                    prometheus.reports_failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(Err(status)) = outcome {
                        tracing::warn!(code = ?status.code(), message = status.message(), "usage report not taken; kept");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_PAUSE) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
            prometheus
                .reports_waiting
                .store(waiting.len() as u64, Ordering::Relaxed);
        }
    });
    sender
}
