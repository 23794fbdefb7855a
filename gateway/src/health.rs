//! `/healthz` (the process answers) and `/readyz` (every upstream reports
//! SERVING over gRPC health and the database answers), for Kubernetes
//! probes. `/readyz` and `/metrics` are served on the admin listener only
//! (route names, upstreams and their state are operators' business);
//! `/healthz` on both.

use std::sync::Arc;

use axum::{Json, Router, extract::State, response::IntoResponse, routing::get};
use http::StatusCode;
use serde_json::{Map, Value, json};
use service_runtime::exposition::{Exposition, Kind};
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until
/// `shutdown`.
pub fn spawn_admin(listener: tokio::net::TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    tokio::spawn(async move {
        let serving = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(error) = serving.await {
            tracing::warn!(%error, "the admin listener stopped");
        }
    });
}

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// What a readiness check found.
pub struct Readiness {
    pub database: bool,
    /// Each upstream's name and whether it serves.
    pub upstreams: Vec<(String, bool)>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.database && self.upstreams.iter().all(|(_, ok)| *ok)
    }
}

pub async fn check(state: &AppState) -> Readiness {
    let upstreams = state.upstreams.all();
    let checks = (0..upstreams.len()).map(|i| state.upstreams.is_serving(i));
    let results = futures_util::future::join_all(checks).await;
    Readiness {
        database: sqlx::query("SELECT 1").execute(&state.pool).await.is_ok(),
        upstreams: upstreams.iter().map(|u| u.name.clone()).zip(results).collect(),
    }
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let readiness = check(&state).await;
    let database = readiness.database;
    let mut report = Map::new();
    for (upstream, serving) in &readiness.upstreams {
        report.insert(
            upstream.clone(),
            json!(if *serving { "SERVING" } else { "NOT_SERVING" }),
        );
    }
    let ready = readiness.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if database { "ok" } else { "unreachable" },
        "upstreams": Value::Object(report),
    });
    (status, Json(body))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut out = Exposition::default();
    state.metrics.render(&mut out);
    state.usage_series.render(&mut out);
    out.single(
        "gateway_usage_samples_dropped_total",
        Kind::Counter,
        "Request samples dropped because recording fell behind.",
        state.usage.dropped(),
    );
    out.family(
        "gateway_upstream_circuit_open",
        Kind::Gauge,
        "1 while an upstream's circuit breaker refuses calls.",
    );
    for upstream in state.upstreams.all() {
        out.sample(
            "gateway_upstream_circuit_open",
            &[("upstream", upstream.name.as_str())],
            u8::from(upstream.circuit_open()),
        );
    }
    out.family(
        "gateway_upstream_call_duration_seconds",
        Kind::Histogram,
        "Time of the gateway's calls to an upstream, a retry included.",
    );
    for upstream in state.upstreams.all() {
        let labels = [("upstream", upstream.name.as_str())];
        upstream
            .latency
            .write(&mut out, "gateway_upstream_call_duration_seconds", &labels);
    }
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out.into_string(),
    )
}
