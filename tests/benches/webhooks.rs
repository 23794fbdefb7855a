//! Webhook dispatcher benchmark, in one run:
//!   1. deliveries per second, from events published to the `events`
//!      exchange to signed 2xx answers at a loopback receiver, for 1, 10 and
//!      100 endpoints;
//!   2. p50 / p99 from a state change committing (a message sent through
//!      the gateway) to its webhook arriving.
//!
//!     cargo bench -p e2e --bench webhooks
//!
//! Everything (PostgreSQL, RabbitMQ, services, receiver, load) shares this
//! machine; `BENCH_EVENTS` (default 2000 deliveries per row) and
//! `BENCH_RATE` (messages/s for the latency run, default 200) tune it.

use std::time::{Duration, Instant};

use e2e::{Options, TestStack, webhook_receiver::Receiver};
use lapin::{BasicProperties, options::BasicPublishOptions};
use serde_json::json;
use service_runtime::events::Envelope;

/// Each service with its production pool of database connections.
fn production_pools() -> Options {
    Options {
        db_connections: Some(10),
        ..Options::default()
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let deliveries = env("BENCH_EVENTS", 2000) as usize;
    let rate = env("BENCH_RATE", 200);
    println!(
        "\nwebhook benchmark on {} cores, everything on this machine\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<12} {:>12} {:>10} {:>14}",
        "endpoints", "deliveries", "seconds", "deliveries/s"
    );
    for endpoints in [1usize, 10, 100] {
        let (count, seconds) = throughput(endpoints, deliveries).await;
        println!(
            "{endpoints:<12} {count:>12} {seconds:>10.2} {:>14.0}",
            count as f64 / seconds
        );
    }
    let (p50, p99, n) = latency(rate).await;
    println!(
        "\ncommit -> arrival at {rate} messages/s ({n} webhooks): p50 {:.1} ms, p99 {:.1} ms",
        p50, p99
    );
}

async fn throughput(endpoints: usize, deliveries: usize) -> (usize, f64) {
    let stack = TestStack::start_with(production_pools()).await;
    let receiver = Receiver::start().await;
    for _ in 0..endpoints {
        let reply = stack
            .client
            .post("/api/v1/webhooks/endpoints", json!({"url": receiver.url}))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let events = deliveries.div_ceil(endpoints);
    let connection = service_runtime::amqp::connect(e2e::AMQP_URL).await.expect("RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    let started = Instant::now();
    for i in 0..events {
        let envelope = Envelope::new("message.received", &stack.workspace_id, json!({"n": i}));
        channel
            .basic_publish(
                stack.exchange.as_str().into(),
                "message.received".into(),
                BasicPublishOptions::default(),
                &envelope.body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publishing");
    }
    let total = events * endpoints;
    receiver.wait_for(total, Duration::from_secs(600)).await;
    let seconds = started.elapsed().as_secs_f64();
    stack.stop().await;
    (total, seconds)
}

async fn latency(rate: u64) -> (f64, f64, usize) {
    let stack = TestStack::start_with(production_pools()).await;
    let receiver = Receiver::start().await;
    stack
        .client
        .post(
            "/api/v1/webhooks/endpoints",
            json!({"url": receiver.url, "event_types": ["message.received"]}),
        )
        .await;
    // Many conversations, as real traffic is: sends to one conversation
    // serialise on its row lock.
    let mut conversations = Vec::new();
    for i in 0..50 {
        conversations.push(stack.client.create_conversation(&format!("bench-{i}")).await);
    }
    let count = (rate * 5) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..count {
        tick.tick().await;
        let (client, conv) = (stack.client.clone(), conversations[i % conversations.len()].clone());
        sends.spawn(async move { client.send_message(&conv, &format!("m{i}")).await });
    }
    while sends.join_next().await.is_some() {}
    let webhooks = receiver.wait_for(count, Duration::from_secs(120)).await;
    // The envelope's timestamp is taken in the transaction that commits the
    // message, so arrival minus it is commit-to-arrival (same clock).
    let mut lags: Vec<f64> = webhooks
        .iter()
        .map(|w| {
            let stamped = chrono::DateTime::parse_from_rfc3339(w.json()["timestamp"].as_str().unwrap()).unwrap();
            let arrived = chrono::Utc::now() - chrono::Duration::from_std(w.at.elapsed()).unwrap();
            (arrived - stamped.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap() as f64
                / 1000.0
        })
        .collect();
    lags.sort_by(|a, b| a.total_cmp(b));
    let pick = |p: f64| lags[((lags.len() as f64 - 1.0) * p).round() as usize];
    stack.stop().await;
    (pick(0.5), pick(0.99), lags.len())
}
