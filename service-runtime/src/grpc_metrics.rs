//! Every gRPC call a service answers, by method and status code, with its
//! latency: a tower layer around the whole server. Methods are the
//! service's own (the map stops growing at a bound, so random paths
//! cannot make series without end). The call runs in a span carrying its
//! method and the gateway's request id, so every log line it writes (one
//! JSON object per line with `LOG_FORMAT=json`) says which request it
//! served.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::{
    exposition::{Exposition, Kind, LatencyHistogram},
    telemetry::{self, propagation, spans},
};

/// Distinct method paths kept; later ones count as `(other)`.
const MAX_METHODS: usize = 256;
const CODES: usize = 17;
const CODE_NAMES: [&str; CODES] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

#[derive(Default)]
struct MethodSeries {
    codes: [AtomicU64; CODES],
    latency: LatencyHistogram,
}

#[derive(Default)]
pub struct GrpcMetrics {
    methods: RwLock<HashMap<String, Arc<MethodSeries>>>,
}

impl GrpcMetrics {
    fn series(&self, path: &str) -> Arc<MethodSeries> {
        if let Some(series) = self.methods.read().unwrap_or_else(|e| e.into_inner()).get(path) {
            return series.clone();
        }
        let mut methods = self.methods.write().unwrap_or_else(|e| e.into_inner());
        let key = if methods.len() < MAX_METHODS { path } else { "(other)" };
        methods.entry(key.to_owned()).or_default().clone()
    }

    /// The `grpc_server_*` families.
    pub fn write(&self, out: &mut Exposition) {
        let methods = self.methods.read().unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<_> = methods.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        out.family(
            "grpc_server_handled_total",
            Kind::Counter,
            "gRPC calls answered, by method and status code.",
        );
        for (path, series) in &sorted {
            let (service, method) = split(path);
            for (code, n) in CODE_NAMES.iter().zip(&series.codes) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let labels = [("grpc_service", service), ("grpc_method", method), ("grpc_code", *code)];
                    out.sample("grpc_server_handled_total", &labels, n);
                }
            }
        }
        out.family(
            "grpc_server_handling_seconds",
            Kind::Histogram,
            "Time to answer a gRPC call (to its response headers), by method.",
        );
        for (path, series) in &sorted {
            let (service, method) = split(path);
            let labels = [("grpc_service", service), ("grpc_method", method)];
            series.latency.write(out, "grpc_server_handling_seconds", &labels);
        }
    }
}

/// The span a call runs in: the RPC server span, child of the caller's
/// `traceparent`, when traces are exported; otherwise a plain span that
/// gives its log lines the method and request id.
fn call_span<B>(request: &http::Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(crate::principal::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !telemetry::exporting() {
        return tracing::info_span!("grpc", method = request.uri().path(), request_id);
    }
    let span = spans::rpc("server", request.uri().path());
    span.record("request_id", request_id);
    propagation::adopt(&span, propagation::from_headers(request.headers()));
    span
}

/// `/package.Service/Method` as (service, method).
fn split(path: &str) -> (&str, &str) {
    path.trim_start_matches('/').split_once('/').unwrap_or((path, ""))
}

#[derive(Clone)]
pub struct GrpcMetricsLayer(pub Arc<GrpcMetrics>);

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observed {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S, B, R> Service<http::Request<B>> for Observed<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let series = self.metrics.series(request.uri().path());
        let span = call_span(&request);
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(
            async move {
                let response = answer.await;
                if let Ok(response) = &response {
                    // Errors come as trailers-only answers, with the status in
                    // the headers; a call without one answered OK.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok())
                        .filter(|c| *c < CODES)
                        .unwrap_or(0);
                    series.codes[code].fetch_add(1, Ordering::Relaxed);
                    series.latency.observe(started.elapsed());
                    spans::record_grpc_status(&tracing::Span::current(), code as i32, true);
                }
                response
            }
            .instrument(span),
        )
    }
}
