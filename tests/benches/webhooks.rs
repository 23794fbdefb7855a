//! Webhook dispatcher benchmark, in one run:
//!   1. deliveries per second, from events published to the `events`
//!      exchange to signed 2xx answers at a loopback receiver, for 1, 10 and
//!      100 endpoints;
//!   2. p50 / p99 from a state change committing to its webhook arriving,
//!      at the target's 1000 changes per second: once for messages sent
//!      through the gateway (the whole product loads these cores), once for
//!      events committed straight to chatbot-service's outbox (the event
//!      pipeline alone: relay, RabbitMQ, dispatcher).
//!
//!     cargo bench -p e2e --bench webhooks
//!
//! Everything (PostgreSQL, RabbitMQ, services, receiver, load) shares this
//! machine; `BENCH_EVENTS` (default 2000 deliveries per row; 0 skips the
//! rows) and `BENCH_RATE` (changes/s for the latency runs, default 1000)
//! tune it.

use std::time::{Duration, Instant};

use e2e::{
    Options, TestStack,
    bench_clock::{CpuTime, print_machine},
    webhook_receiver::Receiver,
};
use event_pipeline::{Envelope, Outbox};
use lapin::{BasicProperties, options::BasicPublishOptions};
use serde_json::json;

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
    let rate = env("BENCH_RATE", 1000);
    print_machine("webhook");
    println!("everything on this machine\n");
    println!(
        "{:<12} {:>12} {:>10} {:>14}  CPU per delivery",
        "endpoints", "deliveries", "seconds", "deliveries/s"
    );
    for endpoints in [1usize, 10, 100].into_iter().filter(|_| deliveries > 0) {
        let (count, seconds, cpu) = throughput(endpoints, deliveries).await;
        println!(
            "{endpoints:<12} {count:>12} {seconds:>10.2} {:>14.0}  {cpu}",
            count as f64 / seconds
        );
    }
    println!();
    for (source, what) in [
        (Source::Gateway, "messages sent through the gateway"),
        (Source::Outbox, "events committed to the outbox"),
    ] {
        let (p50, p99, n, cpu) = latency(rate, source).await;
        println!("commit -> arrival at {rate}/s, {what} ({n} webhooks): p50 {p50:.1} ms, p99 {p99:.1} ms");
        println!("  CPU per message: {cpu}");
    }
}

async fn throughput(endpoints: usize, deliveries: usize) -> (usize, f64, String) {
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
    let connection = event_pipeline::broker::connect(e2e::AMQP_URL).await.expect("RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    let started = Instant::now();
    let cpu_before = CpuTime::now();
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
    let cpu = CpuTime::now().per_unit_since(&cpu_before, total);
    stack.stop().await;
    (total, seconds, cpu)
}

/// Where the latency run's state changes come from.
#[derive(Clone, Copy)]
enum Source {
    /// Messages sent through the gateway: the whole product on these cores.
    Gateway,
    /// Events committed straight to chatbot-service's outbox, as its sends
    /// do: the event pipeline (relay, RabbitMQ, dispatcher) alone.
    Outbox,
}

/// State changes made at `rate` per second, each committing one
/// `message.received` event.
enum Producer {
    Gateway {
        client: e2e::Client,
        conversations: Vec<String>,
    },
    Outbox {
        pool: sqlx::PgPool,
        workspace_id: String,
    },
}

impl Producer {
    async fn new(stack: &TestStack, source: Source) -> Self {
        match source {
            Source::Gateway => {
                // Many conversations, as real traffic is: sends to one
                // conversation serialise on its row.
                let mut conversations = Vec::new();
                for i in 0..50 {
                    conversations.push(stack.client.create_conversation(&format!("bench-{i}")).await);
                }
                Self::Gateway {
                    client: stack.client.clone(),
                    conversations,
                }
            }
            Source::Outbox => {
                let options: sqlx::postgres::PgConnectOptions = stack.database_url().parse().expect("database URL");
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(10)
                    .connect_with(options.options([("search_path", chatbot_service::SCHEMA)]))
                    .await
                    .expect("PostgreSQL");
                Self::Outbox {
                    pool,
                    workspace_id: stack.workspace_id.clone(),
                }
            }
        }
    }

    /// Makes `count` changes at `rate` per second and waits for them all.
    async fn run(&self, rate: u64, count: usize) {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut changes = tokio::task::JoinSet::new();
        for i in 0..count {
            tick.tick().await;
            match self {
                Self::Gateway { client, conversations } => {
                    let (client, conv) = (client.clone(), conversations[i % conversations.len()].clone());
                    changes.spawn(async move {
                        client.send_message(&conv, &format!("m{i}")).await;
                    });
                }
                Self::Outbox { pool, workspace_id } => {
                    let (pool, workspace_id) = (pool.clone(), workspace_id.clone());
                    changes.spawn(async move {
                        let envelope = Envelope::new("message.received", &workspace_id, json!({"n": i}));
                        let mut tx = pool.begin().await.expect("a transaction");
                        Outbox::new(chatbot_service::SCHEMA)
                            .record(&mut tx, &envelope)
                            .await
                            .expect("recording");
                        tx.commit().await.expect("committing");
                    });
                }
            }
        }
        while changes.join_next().await.is_some() {}
    }
}

async fn latency(rate: u64, source: Source) -> (f64, f64, usize, String) {
    let stack = TestStack::start_with(production_pools()).await;
    let receiver = Receiver::start().await;
    stack
        .client
        .post(
            "/api/v1/webhooks/endpoints",
            json!({"url": receiver.url, "event_types": ["message.received"]}),
        )
        .await;
    let producer = Producer::new(&stack, source).await;
    // One second unmeasured first, so connection pools, prepared
    // statements and caches are as warm as in a running system.
    let warm_up = rate as usize;
    producer.run(rate, warm_up).await;
    receiver.wait_for(warm_up, Duration::from_secs(60)).await;
    let count = (rate * 5) as usize;
    let cpu_before = CpuTime::now();
    producer.run(rate, count).await;
    let webhooks = receiver.wait_for(warm_up + count, Duration::from_secs(120)).await;
    let cpu = CpuTime::now().per_unit_since(&cpu_before, count);
    // The envelope's timestamp is taken in the transaction that commits the
    // change, so arrival minus it is commit-to-arrival (same clock).
    let mut lags: Vec<f64> = webhooks[warm_up..]
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
    (pick(0.5), pick(0.99), lags.len(), cpu)
}
