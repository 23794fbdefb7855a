//! A rolling restart under load, as Kubernetes does one: two replicas of
//! every service behind the gateway, steady reads and writes through it
//! and a steady stream of webhook events, while each replica in turn is
//! stopped (SIGTERM: report NOT_SERVING, go on serving for the drain
//! delay, stop accepting, finish what is in flight) and started again.
//! No request fails, no webhook is lost, and one that arrives twice
//! carries the same idempotency key both times.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use e2e::{Client, Options, TestStack, webhook_receiver::Receiver};
use serde_json::json;

/// The drain delay the services get, as `GRPC_DRAIN_DELAY_MS` gives it by
/// default.
const DRAIN: Duration = Duration::from_secs(2);
const CLIENTS: usize = 3;

#[derive(Default)]
struct Outcomes {
    /// (milliseconds, whether a restart was under way) of each success.
    latencies: Vec<(f64, bool)>,
    failures: Vec<String>,
    messages_sent: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_replica_in_turn_under_load_fails_no_request_and_loses_no_webhook() {
    let mut stack = TestStack::start_with(Options {
        every_service_replicas: 2,
        drain_delay: Some(DRAIN),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let subscribed = stack
        .client
        .post(
            "/api/v1/webhooks/endpoints",
            json!({"url": receiver.url, "event_types": ["message.received"]}),
        )
        .await;
    assert_eq!(subscribed.status, 200, "{}", subscribed.text);

    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let restarting = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..CLIENTS {
        let conversation = stack.client.create_conversation(&format!("visitor-{i}")).await;
        let state = (outcomes.clone(), stop.clone(), restarting.clone());
        load.push(tokio::spawn(steady_load(stack.client.clone(), conversation, state)));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    restarting.store(true, Ordering::Relaxed);
    for upstream in ["chatbot", "integration", "analytics", "webhooks"] {
        // The restarted replica goes last in the stack's list: restarting
        // the first twice restarts each once.
        for _ in 0..2 {
            let addr = stack.replica_addr(upstream, 0);
            stack.stop_service(upstream, 0).await;
            stack.restart_service(upstream, 0).await;
            stack.wait_until_in_rotation(&addr).await;
        }
    }
    restarting.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("a load task finishes");
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    report_latency(&outcomes.latencies);
    assert!(
        outcomes.failures.is_empty(),
        "{} of {} requests failed during the rolling restart; the first: {:#?}",
        outcomes.failures.len(),
        outcomes.failures.len() + outcomes.latencies.len(),
        &outcomes.failures[..outcomes.failures.len().min(5)]
    );
    assert_every_webhook_arrives(&receiver, outcomes.messages_sent).await;
    stack.stop().await;
}

type LoadState = (Arc<Mutex<Outcomes>>, Arc<AtomicBool>, Arc<AtomicBool>);

/// One client: a message, then a read from each upstream, over and over
/// until `stop`. Nothing is retried: a failure is counted as the client
/// would see it.
async fn steady_load(api: Client, conversation: String, (outcomes, stop, restarting): LoadState) {
    let messages = format!("/api/v1/conversations/{conversation}/messages");
    let reads = [
        format!("/api/v1/conversations/{conversation}"),
        "/api/v1/webhooks/endpoints".to_owned(),
        "/api/v1/analytics/requests".to_owned(),
        "/api/v1/integrations".to_owned(),
    ];
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let during = restarting.load(Ordering::Relaxed);
        let started = Instant::now();
        let sent = api
            .post(&messages, json!({"role": "user", "content": format!("question {n}")}))
            .await;
        let ok = record(&outcomes, "POST messages", sent.status, &sent.text, started, during);
        if ok {
            outcomes.lock().unwrap().messages_sent += 1;
        }
        for path in &reads {
            let started = Instant::now();
            let read = api.get(path).await;
            record(&outcomes, path, read.status, &read.text, started, during);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(outcomes: &Mutex<Outcomes>, what: &str, status: u16, text: &str, started: Instant, during: bool) -> bool {
    let mut outcomes = outcomes.lock().unwrap();
    if status == 200 {
        outcomes
            .latencies
            .push((started.elapsed().as_secs_f64() * 1000.0, during));
        return true;
    }
    outcomes.failures.push(format!("{what}: {status} {text}"));
    false
}

/// Prints the latency before and during the restarts, and what they added.
fn report_latency(latencies: &[(f64, bool)]) {
    let quantiles = |during: bool| {
        let mut ms: Vec<f64> = latencies.iter().filter(|l| l.1 == during).map(|l| l.0).collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| {
            ms.get(((ms.len() as f64 * q) as usize).min(ms.len().saturating_sub(1)))
                .copied()
        };
        (ms.len(), at(0.5).unwrap_or(0.0), at(0.99).unwrap_or(0.0))
    };
    let (steady_n, steady_p50, steady_p99) = quantiles(false);
    let (rolling_n, rolling_p50, rolling_p99) = quantiles(true);
    println!(
        "requests outside restarts: {steady_n}, p50 {steady_p50:.1} ms, p99 {steady_p99:.1} ms; \
         during restarts: {rolling_n}, p50 {rolling_p50:.1} ms, p99 {rolling_p99:.1} ms; \
         added p50 {:.1} ms, p99 {:.1} ms",
        rolling_p50 - steady_p50,
        rolling_p99 - steady_p99
    );
    assert!(
        rolling_n > 0 && steady_n > 0,
        "the load ran through and outside the restarts"
    );
}

/// Waits for one `message.received` webhook per message sent: none lost,
/// and any that came twice came with the same idempotency key.
async fn assert_every_webhook_arrives(receiver: &Receiver, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut keys: HashMap<String, String> = HashMap::new();
        for webhook in receiver.received() {
            let key = keys
                .entry(webhook.header("webhook-id").to_owned())
                .or_insert_with(|| webhook.header("x-idempotency-key").to_owned());
            assert_eq!(
                key,
                webhook.header("x-idempotency-key"),
                "a webhook delivered twice carries one idempotency key"
            );
        }
        assert!(
            keys.len() <= expected,
            "{} webhooks for {expected} messages",
            keys.len()
        );
        if keys.len() == expected {
            println!(
                "webhooks: {expected} events, {} deliveries ({} repeated with their key)",
                receiver.received().len(),
                receiver.received().len() - expected
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected} webhooks arrived within 60 s of the load stopping",
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
