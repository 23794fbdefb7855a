//! `/healthz` (the process answers) and `/readyz` (every upstream reports
//! SERVING over gRPC health and the database answers), for Kubernetes probes.

use std::sync::Arc;

use axum::{Json, extract::State, response::IntoResponse};
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::AppState;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let upstreams = state.upstreams.all();
    let checks = (0..upstreams.len()).map(|i| state.upstreams.is_serving(i));
    let results = futures_util::future::join_all(checks).await;
    let database = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let mut report = Map::new();
    for (upstream, serving) in upstreams.iter().zip(&results) {
        report.insert(
            upstream.name.clone(),
            json!(if *serving { "SERVING" } else { "NOT_SERVING" }),
        );
    }
    let ready = database && results.iter().all(|ok| *ok);
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
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
