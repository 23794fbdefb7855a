//! The seed's success metric for a workspace's own database: thousands of
//! products, stock moved by the signed inventory webhook with some
//! deliveries dropped, some sent twice and some retried late, titles
//! changed and rows deleted and added with no webhook at all. A sync then
//! brings every field in line with the database.

use std::{collections::HashMap, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use e2e::{
    Client, TestStack,
    customer_db::{CustomerDb, Engine},
    event_tap::EventTap,
};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const PRODUCTS: i64 = 2000;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const FIELDS: [&str; 3] = ["title", "price", "stock"];

/// Changes per delivery, as a system batching its stock updates sends.
const BATCH: usize = 50;

/// One inventory webhook: its id, its age in seconds and its body.
#[derive(Clone)]
struct Delivery {
    id: String,
    age: i64,
    body: String,
}

impl Delivery {
    /// Deliveries of `changes` (sku number, stock), `BATCH` to each.
    fn batches(name: &str, age: i64, changes: &[(i64, i64)]) -> Vec<Self> {
        changes
            .chunks(BATCH)
            .enumerate()
            .map(|(n, chunk)| {
                let body: Vec<Value> = chunk
                    .iter()
                    .map(|(sku, stock)| json!({"product_id": format!("SKU-{sku}"), "stock": stock}))
                    .collect();
                Self {
                    id: format!("{name}-{n}"),
                    age,
                    body: Value::from(body).to_string(),
                }
            })
            .collect()
    }
}

async fn send(stack: &TestStack, integration: &str, delivery: &Delivery) -> u16 {
    let timestamp = chrono::Utc::now().timestamp() - delivery.age;
    let key = STANDARD.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{timestamp}.{}", delivery.id, delivery.body).as_bytes());
    let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let request = Client::anonymous(&stack.base_url)
        .request(reqwest::Method::POST, &format!("/hooks/inventory/{integration}"))
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.body.clone());
    Client::send(request).await.status
}

/// Sends each batch in turn, each 16 deliveries at a time; all accepted.
async fn send_all(stack: &TestStack, integration: &str, batches: &[Vec<Delivery>]) {
    for batch in batches {
        let statuses: Vec<u16> = futures_util::stream::iter(batch.iter().map(|d| send(stack, integration, d)))
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
}

/// The database's products as the platform should show them, by id.
async fn source(db: &CustomerDb) -> HashMap<String, Value> {
    db.json_rows("SELECT sku AS id, name AS title, price::text AS price, qty::text AS stock FROM items")
        .await
        .into_iter()
        .map(|row| (row["id"].as_str().unwrap().to_owned(), row))
        .collect()
}

/// Every product the platform shows, by id.
async fn held(api: &Client, integration: &str) -> HashMap<String, Value> {
    let mut rows = HashMap::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/integrations/{integration}/products?limit=100&cursor={cursor}");
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for product in page.json["products"].as_array().unwrap() {
            let row = json!({"title": product["title"], "price": product["price_min"], "stock": product["stock"]});
            rows.insert(product["external_id"].as_str().unwrap().to_owned(), row);
        }
        cursor = page.json["next_cursor"].as_str().unwrap_or_default().to_owned();
        if cursor.is_empty() {
            return rows;
        }
    }
}

/// Fields the platform holds as the database does, of all fields; a
/// product it holds that the database does not counts wrong in each.
fn accuracy(mut held: HashMap<String, Value>, source: &HashMap<String, Value>) -> (usize, usize) {
    let mut matched = 0;
    for (id, row) in source {
        if let Some(stored) = held.remove(id) {
            matched += FIELDS.iter().filter(|f| stored[**f] == row[**f]).count();
        }
    }
    (matched, (source.len() + held.len()) * FIELDS.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sync_every_field_matches_the_workspaces_database() {
    // Two replicas read the database; each read is one replica's alone.
    let stack = TestStack::start_with(e2e::Options {
        integration_replicas: 2,
        ..e2e::Options::default()
    })
    .await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let db = CustomerDb::create(Engine::Postgres).await;
    db.execute(&format!(
        "CREATE TABLE items (sku text PRIMARY KEY, name text NOT NULL, price numeric(10,2), qty integer,
             changed_at timestamp(6) NOT NULL DEFAULT now());
         INSERT INTO items (sku, name, price, qty)
             SELECT 'SKU-' || n, 'Item ' || n, 2 + n % 50, 100 + n % 7 FROM generate_series(1, {PRODUCTS}) n;"
    ))
    .await;
    let mut request = db.connect_request(&db.password);
    request["settings"]["products"] = json!({"table": "items", "id": "sku", "title": "name", "price": "price",
        "stock": "qty", "updated_at": "changed_at"});
    // Read once now, then only when a sync is asked for.
    request["settings"]["poll_seconds"] = json!(86_400);
    request["credentials"]["inventory_webhook_secret"] = json!(SECRET);
    let created = api.post("/api/v1/integrations", request).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    // The first read is done once its ids were compared: the connection
    // then shows when it was last synced.
    api.get_until(&format!("/api/v1/integrations/{id}"), Duration::from_secs(60), |row| {
        row["last_sync_at"].is_string()
    })
    .await;
    assert_eq!(held(api, &id).await.len(), PRODUCTS as usize);

    // Stock moves in the database; the webhook tells of most of it.
    db.execute("UPDATE items SET qty = qty - 90 - (substr(sku, 5)::int % 5), changed_at = now()")
        .await;
    let (mut told, mut late, mut twice) = (Vec::new(), Vec::new(), Vec::new());
    for n in 1..=PRODUCTS {
        let stock = 100 + n % 7 - 90 - n % 5;
        match n % 10 {
            // Dropped: nobody was told.
            0 => {}
            // Retried late: an older delivery lands after the newer one.
            1 => {
                told.push((n, stock));
                late.push((n, 999));
            }
            // Delivered twice.
            3 => twice.push((n, stock)),
            _ => told.push((n, stock)),
        }
    }
    let twice = Delivery::batches("twice", 0, &twice);
    let mut first = Delivery::batches("told", 0, &told);
    first.extend(twice.iter().cloned());
    let mut second = Delivery::batches("late", 60, &late);
    second.extend(twice);
    let sending = std::time::Instant::now();
    let sent = first.len() + second.len();
    send_all(&stack, &id, &[first, second]).await;
    println!("{sent} inventory webhooks in {:.1} s", sending.elapsed().as_secs_f64());
    // And what no webhook tells of: renamed, deleted and added rows.
    db.execute(&format!(
        "UPDATE items SET name = name || ' (new)', changed_at = now() WHERE substr(sku, 5)::int % 10 = 5;
         DELETE FROM items WHERE substr(sku, 5)::int % 50 = 7;
         INSERT INTO items (sku, name, price, qty)
             SELECT 'SKU-' || n, 'Item ' || n, 9, 3 FROM generate_series({}, {}) n;",
        PRODUCTS + 1,
        PRODUCTS + 20
    ))
    .await;

    let source = source(&db).await;
    let told = held(api, &id).await;
    for sku in ["SKU-1", "SKU-3", "SKU-11"] {
        assert_eq!(
            told[sku]["stock"], source[sku]["stock"],
            "{sku}: late or repeated news changed nothing"
        );
    }
    let (matched, total) = accuracy(told, &source);
    let before = matched as f64 * 100.0 / total as f64;
    println!("database sync accuracy from inventory webhooks alone: {before:.2}% ({matched} of {total} fields)");
    assert!(before < 100.0, "what no webhook told of needs a sync");

    let started = std::time::Instant::now();
    let queued = api.post(&format!("/api/v1/integrations/{id}:sync"), json!({})).await;
    assert_eq!(queued.status, 200, "{}", queued.text);
    let done = loop {
        let event = tap
            .skip_until("integration.sync_completed", Duration::from_secs(120))
            .await;
        if event["data"]["integration_id"] == id.as_str() && event["data"]["sync"]["id"] == queued.json["id"] {
            break event;
        }
    };
    let counts = &done["data"]["sync"]["counts"];
    println!(
        "database sync: {} rows in {:.1} s, counts {counts}",
        source.len(),
        started.elapsed().as_secs_f64()
    );
    let after = held(api, &id).await;
    let (matched, total) = accuracy(after, &source);
    println!(
        "database sync accuracy after the sync: {:.2}% ({matched} of {total} fields)",
        matched as f64 * 100.0 / total as f64
    );
    assert_eq!(matched, total);
    assert_eq!(
        counts["updated"],
        PRODUCTS - PRODUCTS / 50,
        "each changed row read once"
    );
    assert_eq!(counts["removed"], PRODUCTS / 50, "the rows deleted with no webhook");
    assert_eq!(counts["created"], 20, "the rows added with no webhook");
    db.remove().await;
    stack.stop().await;
}
