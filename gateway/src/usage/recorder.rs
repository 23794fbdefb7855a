//! The request path's part: time the request, then hand one sample to the
//! aggregator's bounded channel. A full channel drops the sample (counted
//! in `/metrics`) rather than make a request wait.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use http::{HeaderValue, Method};
use tokio::sync::mpsc;

/// Samples waiting for the aggregator, at most.
const CAPACITY: usize = 65_536;

/// The route template a transcoded request matched, set by the handler
/// on its response (axum's matched path is only `/api/{*path}` there).
#[derive(Clone)]
pub struct RouteLabel(pub Arc<str>);

/// The workspace that made the request, set by authentication on the
/// response.
#[derive(Clone)]
pub struct WorkspaceLabel(pub String);

/// Which route served a request, as cheaply as the request path can say.
pub enum RouteName {
    Template(Arc<str>),
    Matched(MatchedPath),
    Unmatched,
}

impl RouteName {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Template(template) => template,
            Self::Matched(path) => path.as_str(),
            // Never the raw path, which would make every probe of a random
            // URL a new series.
            Self::Unmatched => "(unmatched)",
        }
    }
}

pub struct Sample {
    pub workspace: Option<String>,
    pub method: Method,
    pub route: RouteName,
    pub status: u16,
    pub elapsed: Duration,
    pub request_id: Option<HeaderValue>,
}

/// One readiness check: the platform and each part, ready or not.
pub struct ReadinessCheck {
    pub components: Vec<(String, bool)>,
}

#[derive(Clone)]
pub struct UsageRecorder {
    samples: mpsc::Sender<Sample>,
    readiness: mpsc::Sender<ReadinessCheck>,
    dropped: Arc<AtomicU64>,
}

pub fn channel() -> (UsageRecorder, mpsc::Receiver<Sample>, mpsc::Receiver<ReadinessCheck>) {
    let (samples, sample_rx) = mpsc::channel(CAPACITY);
    let (readiness, readiness_rx) = mpsc::channel(64);
    let recorder = UsageRecorder {
        samples,
        readiness,
        dropped: Arc::default(),
    };
    (recorder, sample_rx, readiness_rx)
}

impl UsageRecorder {
    pub fn readiness(&self, check: ReadinessCheck) {
        let _ = self.readiness.try_send(check);
    }

    /// Samples dropped because the aggregator fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Middleware: records every request's method, route, status and time.
pub async fn record(State(recorder): State<UsageRecorder>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let request_id = request.headers().get("x-request-id").cloned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let route = match (response.extensions().get::<RouteLabel>(), matched) {
        (Some(label), _) => RouteName::Template(label.0.clone()),
        (None, Some(path)) => RouteName::Matched(path),
        (None, None) => RouteName::Unmatched,
    };
    let sample = Sample {
        workspace: response.extensions().get::<WorkspaceLabel>().map(|w| w.0.clone()),
        method,
        route,
        status: response.status().as_u16(),
        elapsed,
        request_id,
    };
    if recorder.samples.try_send(sample).is_err() {
        recorder.dropped.fetch_add(1, Ordering::Relaxed);
    }
    response
}
