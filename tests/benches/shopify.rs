//! Shopify benchmark, in one run:
//!
//! 1. Webhook ingest: `BENCH_WEBHOOKS` (default 5 000) signed
//!    `products/update` deliveries sent `BENCH_CONCURRENCY` (32) at a time
//!    through the gateway: accepted per second (answered 200), processed
//!    per second (applied to the catalog), and CPU per webhook. Its peer is
//!    the floor of any durable receiver: a bare axum handler on the same
//!    machine that verifies the HMAC and inserts the body into PostgreSQL,
//!    sent the same deliveries the same way.
//! 2. Reconciliation: a store of `BENCH_PRODUCTS` (500) more products than the ingest left and
//!    `BENCH_ORDERS` (500) orders read whole, once under a GraphQL cost
//!    bucket of `BENCH_BUCKET` (1 000) points restored at `BENCH_RESTORE`
//!    (100) a second, next to the ceiling that limit allows for the
//!    queries' actual costs; and once unthrottled, which shows what bounds
//!    the platform itself.
//!
//!     cargo bench -p e2e --bench shopify
//!
//! Everything (PostgreSQL, RabbitMQ, the services, the fake Shopify, the
//! load generator) shares this machine. Past saturation the figures are
//! the rates achieved, with errors counted, not a panic.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use e2e::{
    Options, TestStack,
    bench_clock::{CpuTime, print_machine},
    shopify_server::{CLIENT_SECRET, SHOP, ShopifyServer, Webhook, signature},
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;

const ADMIN_TOKEN: &str = "shpat_bench";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    print_machine("shopify");
    println!("everything on this machine\n");
    let shopify = ShopifyServer::start(ADMIN_TOKEN, "shprt_unused", Duration::ZERO).await;
    let stack = TestStack::start_with(Options {
        shopify_url: Some(shopify.url.clone()),
        db_connections: Some(10),
        ..Options::default()
    })
    .await;
    let request = json!({"kind": "shopify", "name": "Bench store", "settings": {"shop": SHOP},
        "credentials": {"access_token": ADMIN_TOKEN, "client_secret": CLIENT_SECRET}});
    let created = stack.client.post("/api/v1/integrations", request).await;
    assert_eq!(created.status, 200, "connecting the store: {}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let pool = PgPool::connect(stack.database_url()).await.expect("the bench database");

    ingest(&shopify, &pool).await;
    reconciliation(&shopify, &stack, &id, &pool).await;
    stack.stop().await;
}

fn product(id: u64, version: u64) -> Value {
    let variants: Vec<Value> = (0..1 + id % 3)
        .map(|n| {
            json!({"id": id * 10 + n, "title": format!("Size {n}"), "sku": format!("SKU-{id}-{n}"),
            "price": format!("{}.{:02}", 5 + id % 40, version % 100), "inventory_item_id": id * 10 + 5 + n,
            "inventory_quantity": (id + version) % 9})
        })
        .collect();
    json!({"id": id, "title": format!("Product {id} v{version}"),
        "body_html": format!("<p>Product {id}, <b>version {version}</b>: stoneware, dishwasher safe.</p>"),
        "handle": format!("product-{id}"), "status": "active", "variants": variants})
}

/// What one receiver did with the deliveries.
struct Ingested {
    accepted_per_second: f64,
    processed_per_second: Option<f64>,
    errors: usize,
    cpu: String,
}

async fn ingest(shopify: &ShopifyServer, pool: &PgPool) {
    let count = env("BENCH_WEBHOOKS", 5_000);
    let concurrency = env("BENCH_CONCURRENCY", 32) as usize;
    let webhooks: Vec<Webhook> = (0..count)
        .map(|n| Webhook::new("products/update", product(1 + n % 1_000, n)))
        .collect();
    println!("webhook ingest: {count} products/update deliveries, {concurrency} at a time\n");
    println!(
        "{:<26} {:>12} {:>13} {:>7}  CPU per webhook",
        "receiver", "accepted/s", "processed/s", "errors"
    );

    let floor_url = floor_receiver(pool.clone()).await;
    let floor = send_all(shopify, &webhooks, concurrency, Some(&floor_url)).await;
    let platform = send_all(shopify, &webhooks, concurrency, None).await;
    let (started, cpu_before) = (platform.0, platform.1);
    let processed = wait_processed(pool, Duration::from_secs(300)).await;
    let platform = Ingested {
        processed_per_second: processed.map(|_| count as f64 / started.elapsed().as_secs_f64()),
        cpu: CpuTime::now().per_unit_since(&cpu_before, count as usize),
        ..platform.2
    };
    for (name, row) in [
        ("platform (gateway → store)", &platform),
        ("floor (verify + INSERT)", &floor.2),
    ] {
        let processed = row
            .processed_per_second
            .map_or("not done".to_owned(), |r| format!("{r:.0}"));
        println!(
            "{name:<26} {:>12.0} {processed:>13} {:>7}  {}",
            row.accepted_per_second, row.errors, row.cpu
        );
    }
    println!(
        "\naccepted/s, platform / floor: {:.2}\n",
        platform.accepted_per_second / floor.2.accepted_per_second
    );
}

/// Sends every webhook (to `url`, or to the platform's subscription);
/// when it started, the CPU then, and what was achieved.
async fn send_all(
    shopify: &ShopifyServer,
    webhooks: &[Webhook],
    concurrency: usize,
    url: Option<&str>,
) -> (Instant, CpuTime, Ingested) {
    let (started, cpu_before) = (Instant::now(), CpuTime::now());
    let answers: Vec<u16> = futures_util::stream::iter(webhooks.iter().map(|w| async move {
        match url {
            Some(url) => shopify.send_to(url, w).await.0,
            None => shopify.send(w).await.0,
        }
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let errors = answers.iter().filter(|s| **s != 200).count();
    let accepted = (answers.len() - errors) as f64 / seconds;
    let ingested = Ingested {
        accepted_per_second: accepted,
        processed_per_second: url.map(|_| accepted),
        errors,
        cpu: CpuTime::now().per_unit_since(&cpu_before, webhooks.len()),
    };
    (started, cpu_before, ingested)
}

/// Waits until no stored delivery is left to apply; `None` past `limit`.
async fn wait_processed(pool: &PgPool, limit: Duration) -> Option<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM integration.shopify_deliveries WHERE processed_at IS NULL")
                .fetch_one(pool)
                .await
                .ok()?;
        if pending == 0 {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The least a durable receiver does: verify the signature in constant
/// time and store the body once per webhook id, then answer.
async fn floor_receiver(pool: PgPool) -> String {
    sqlx::query("CREATE TABLE public.floor_deliveries (webhook_id text PRIMARY KEY, body bytea NOT NULL)")
        .execute(&pool)
        .await
        .expect("creating the floor's table");
    async fn receive(State(pool): State<Arc<PgPool>>, headers: HeaderMap, body: Bytes) -> axum::http::StatusCode {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let expected = signature(CLIENT_SECRET, &body);
        let given = header("x-shopify-hmac-sha256");
        let same = expected.len() == given.len()
            && expected
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return axum::http::StatusCode::UNAUTHORIZED;
        }
        let stored = sqlx::query("INSERT INTO public.floor_deliveries VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(header("x-shopify-webhook-id"))
            .bind(body.to_vec())
            .execute(&*pool)
            .await;
        match stored {
            Ok(_) => axum::http::StatusCode::OK,
            Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    let app = Router::new().route("/", post(receive)).with_state(Arc::new(pool));
    let (addr, _task) = e2e::local_server::serve(app, "the floor receiver").await;
    format!("http://{addr}/")
}

async fn reconciliation(shopify: &ShopifyServer, stack: &TestStack, id: &str, pool: &PgPool) {
    let products = env("BENCH_PRODUCTS", 500);
    let orders = env("BENCH_ORDERS", 500);
    let bucket = env("BENCH_BUCKET", 1_000) as f64;
    let restore = env("BENCH_RESTORE", 100) as f64;
    for n in 0..products {
        shopify.put_product(product(100_000 + n, 1));
    }
    for n in 0..orders {
        shopify.put_order(
            json!({"id": 500_000 + n, "name": format!("#{n}"), "email": format!("c{}@example.com", n % 97),
            "customer": {"id": n % 97, "email": format!("c{}@example.com", n % 97)}, "financial_status": "paid",
            "fulfillment_status": null, "total_price": "19.90", "currency": "EUR",
            "line_items": [{"title": "Mug", "quantity": 1 + n % 3}], "fulfillments": [],
            "created_at": "2026-11-01T10:00:00Z", "updated_at": "2026-11-01T10:00:00Z", "cancelled_at": null}),
        );
    }
    let items = shopify.products().len() + shopify.orders().len();
    println!("reconciliation: {items} records read whole (products with their variants, and orders)\n");
    println!(
        "{:<30} {:>9} {:>10} {:>10} {:>10}  CPU per record",
        "cost limit", "seconds", "records/s", "ceiling/s", "of ceiling"
    );
    for (label, limit) in [
        (format!("{bucket:.0} points, {restore:.0}/s"), Some((bucket, restore))),
        ("none (the platform's bound)".to_owned(), None),
    ] {
        match limit {
            Some((bucket, restore)) => shopify.set_cost_limit(bucket, restore),
            None => shopify.set_cost_limit(1e12, 1e12),
        }
        sqlx::query("DELETE FROM integration.shopify_products")
            .execute(pool)
            .await
            .expect("emptying the catalog");
        sqlx::query("DELETE FROM integration.shopify_orders")
            .execute(pool)
            .await
            .expect("emptying the orders");
        let cost = total_actual_cost(shopify);
        let (started, cpu_before) = (Instant::now(), CpuTime::now());
        let queued = stack
            .client
            .post(&format!("/api/v1/integrations/{id}:sync"), json!({}))
            .await;
        let run_id = queued.json["id"].as_str().unwrap_or_default().to_owned();
        let finished = wait_run(stack, id, &run_id, Duration::from_secs(1_800)).await;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = CpuTime::now().per_unit_since(&cpu_before, items);
        let ceiling = limit.map(|(bucket, restore)| {
            let needed = (cost - bucket).max(0.0);
            items as f64 / (needed / restore).max(f64::EPSILON)
        });
        let rate = items as f64 / seconds;
        let (ceiling_text, share) = match ceiling {
            Some(c) => (format!("{c:.0}"), format!("{:.2}", rate / c)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let status = if finished { "" } else { " (not finished: rate so far)" };
        println!("{label:<30} {seconds:>9.1} {rate:>10.0} {ceiling_text:>10} {share:>10}  {cpu}{status}");
    }
    println!(
        "\nthe ceiling is what the bucket allows: the queries' actual cost, less the full bucket, at the restore rate"
    );
}

/// The actual cost of reading the store whole as the fake charges it (2 a
/// page, 1 a node), estimated from the page sizes integration-service uses.
fn total_actual_cost(shopify: &ShopifyServer) -> f64 {
    let products = shopify.products();
    let variants: usize = products
        .iter()
        .map(|p| p["variants"].as_array().map_or(0, Vec::len))
        .sum();
    let orders = shopify.orders();
    let line_items: usize = orders
        .iter()
        .map(|o| o["line_items"].as_array().map_or(0, Vec::len))
        .sum();
    let pages = products.len().div_ceil(20) + orders.len().div_ceil(10);
    (2 * pages + products.len() + variants + orders.len() + line_items) as f64
}

/// Waits for the run to finish; whether it did within `limit`.
async fn wait_run(stack: &TestStack, id: &str, run_id: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let runs = stack.client.get(&format!("/api/v1/integrations/{id}/syncs")).await;
        let run = runs.json["sync_runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["id"] == run_id).cloned())
            .unwrap_or(Value::Null);
        if run["status"] == "completed" || run["status"] == "failed" {
            return run["status"] == "completed";
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
