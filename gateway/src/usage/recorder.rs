//! The request path's part: time the request, then hand one sample to the
//! aggregator's bounded channel. A full channel drops the sample (counted
//! in `/metrics`) rather than make a request wait.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request},
    response::Response,
};
use http::{HeaderValue, Method};
use tokio::sync::mpsc;
use tower::{Layer, Service};

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

/// The layer that records every request's method, route, status and
/// time. A plain tower service rather than an axum `from_fn` middleware:
/// this runs on every request, and `from_fn` clones its state and boxes
/// the rest of the stack per call.
#[derive(Clone)]
pub struct RecordLayer(pub Arc<UsageRecorder>);

impl<S> Layer<S> for RecordLayer {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Recorded {
            inner,
            recorder: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Recorded<S> {
    inner: S,
    recorder: Arc<UsageRecorder>,
}

impl<S> Service<Request> for Recorded<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = request.method().clone();
        let matched = request.extensions().get::<MatchedPath>().cloned();
        let request_id = request.headers().get("x-request-id").cloned();
        let answer = self.inner.call(request);
        let recorder = self.recorder.clone();
        Box::pin(async move {
            let mut response = answer.await?;
            let elapsed = started.elapsed();
            // Taken, not copied: nothing outside this layer reads them.
            let extensions = response.extensions_mut();
            let route = match (extensions.remove::<RouteLabel>(), matched) {
                (Some(label), _) => RouteName::Template(label.0),
                (None, Some(path)) => RouteName::Matched(path),
                (None, None) => RouteName::Unmatched,
            };
            let sample = Sample {
                workspace: extensions.remove::<WorkspaceLabel>().map(|w| w.0),
                method,
                route,
                status: response.status().as_u16(),
                elapsed,
                request_id,
            };
            if recorder.samples.try_send(sample).is_err() {
                recorder.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response)
        })
    }
}
