//! What recording a request costs, measured in-process where a microsecond
//! is not lost in network noise: the same axum router with and without the
//! recording layer (and its aggregator, running on the same thread),
//! driven in alternating rounds on one current-thread runtime, so the CPU
//! this thread spends is all of it. Prints the load average, each round's
//! CPU per request both ways, and the median difference: the recording's
//! CPU per request. `deploy/bench/usage_recording.sh` measures the same
//! end to end through a release gateway under wrk.
//!
//!   cargo bench -p gateway --bench usage_recording   (ROUNDS=7 REQUESTS=200000)

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use gateway::usage::{self, RecordLayer, RouteLabel, UsageSettings, WorkspaceLabel};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Answers as the transcoder does, labelled with its route and workspace.
async fn conversation() -> Response {
    let mut response = (StatusCode::OK, "{}").into_response();
    response
        .extensions_mut()
        .insert(RouteLabel(Arc::from("/api/v1/conversations/{conversation_id}")));
    response.extensions_mut().insert(WorkspaceLabel("ws_bench".into()));
    response
}

/// This thread's CPU time, in nanoseconds (the scheduler's own count).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a CPU time")
}

async fn drive(router: &Router, requests: u32) -> f64 {
    let started = thread_cpu_ns();
    for n in 0..requests {
        let request = Request::get("/api/v1/conversations/conv_1")
            .header("x-request-id", "req_0123456789abcdef0123456789abcdef")
            .body(Body::empty())
            .expect("a request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        if n % 4096 == 0 {
            // Lets the aggregator's 20 ms timer fire inside the round.
            tokio::task::yield_now().await;
        }
    }
    // The aggregator folds in what is left; its work counts too.
    tokio::time::sleep(Duration::from_millis(50)).await;
    (thread_cpu_ns() - started) as f64 / f64::from(requests) / 1000.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let requests: u32 = std::env::var("REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average before: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let (recorder, series) = usage::start(&UsageSettings::default(), None, &shutdown);
        let plain = Router::new().route("/api/v1/conversations/{conversation_id}", get(conversation));
        let recorded = plain.clone().layer(RecordLayer(Arc::new(recorder.clone())));
        // Warm both (allocator, route interning) before measuring.
        drive(&plain, requests / 10).await;
        drive(&recorded, requests / 10).await;
        let (mut on, mut off, mut differences) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            let without = drive(&plain, requests).await;
            let with = drive(&recorded, requests).await;
            println!("round {round}: recording on {with:.3} µs/request, off {without:.3} µs/request");
            on.push(with);
            off.push(without);
            differences.push(with - without);
        }
        let mut exposition = service_runtime::exposition::Exposition::default();
        series.render(&mut exposition);
        let text = exposition.into_string();
        let counted = text.contains("gateway_http_requests_total{method=\"GET\",route=\"/api/v1/conversations/{conversation_id}\",code=\"200\"}");
        assert!(counted, "the recorded requests reach the series:\n{text}");
        println!(
            "dropped samples: {} (a full channel drops rather than waits)",
            recorder.dropped()
        );
        println!(
            "median of {rounds}: recording on {:.3} µs, off {:.3} µs per request; recording costs {:.3} µs of CPU per request (median of the rounds' differences)",
            median(&mut on),
            median(&mut off),
            median(&mut differences)
        );
        shutdown.cancel();
    });
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average after: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
}
