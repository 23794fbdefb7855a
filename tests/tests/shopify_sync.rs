//! Reconciliation: a store read whole through the GraphQL Admin API (cursor
//! pages, the cost bucket's pace) brings the platform in line with it,
//! catching up what webhooks missed (new, changed and deleted products,
//! orders) without overwriting anything newer, on request and on
//! schedule, and going on from where it stopped when the store was down.

use std::time::Duration;

use chrono::{DateTime, Utc};
use e2e::{
    Client, Options, TestStack,
    bots::create_bot,
    event_tap::EventTap,
    shopify_server::{CLIENT_SECRET, SHOP, ShopifyServer, Trouble, Webhook},
};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "shpat_admin_token";
const WAIT: Duration = Duration::from_secs(30);

async fn store_and_stack(options: Options) -> (ShopifyServer, TestStack) {
    let shopify = ShopifyServer::start(ADMIN_TOKEN, "shprt_unused", Duration::ZERO).await;
    let stack = TestStack::start_with(Options {
        shopify_url: Some(shopify.url.clone()),
        ..options
    })
    .await;
    (shopify, stack)
}

async fn connect(stack: &TestStack, bots: &[&str]) -> String {
    let request = json!({"kind": "shopify", "name": "Acme store", "settings": {"shop": SHOP, "bot_ids": bots},
        "credentials": {"access_token": ADMIN_TOKEN, "client_secret": CLIENT_SECRET}});
    let created = stack.client.post("/api/v1/integrations", request).await;
    assert_eq!(created.status, 200, "{}", created.text);
    created.json["id"].as_str().unwrap().to_owned()
}

/// A product's REST JSON with `variants` variants priced from `price`.
fn product(id: i64, title: &str, price: f64, variants: i64, status: &str) -> Value {
    let variants: Vec<Value> = (0..variants)
        .map(|n| {
            json!({"id": id * 1000 + n, "title": format!("Size {n}"), "sku": format!("SKU-{id}-{n}"),
            "price": format!("{:.2}", price + n as f64), "inventory_item_id": id * 1000 + 500 + n,
            "inventory_quantity": (id + n) % 7})
        })
        .collect();
    json!({"id": id, "title": title, "body_html": format!("<p>The <b>{title}</b> is made of stoneware.</p>"),
        "handle": title.to_lowercase().replace(' ', "-"), "status": status, "variants": variants})
}

fn order(id: i64, customer: i64, fulfilled: bool) -> Value {
    let fulfillments = match fulfilled {
        true => json!([{"tracking_numbers": [format!("1Z{id}")], "tracking_company": "UPS",
            "tracking_urls": [format!("https://ups.example/1Z{id}")]}]),
        false => json!([]),
    };
    json!({"id": id, "name": format!("#{id}"), "email": format!("customer{customer}@example.com"),
        "customer": {"id": customer, "email": format!("customer{customer}@example.com")},
        "financial_status": "paid", "fulfillment_status": if fulfilled { json!("fulfilled") } else { Value::Null },
        "total_price": format!("{}.50", id % 90), "currency": "EUR",
        "line_items": [{"title": "Mug", "quantity": id % 3 + 1}], "fulfillments": fulfillments,
        "created_at": "2026-11-01T10:00:00Z", "updated_at": "2026-11-02T10:00:00Z", "cancelled_at": null})
}

/// What the API should show of a product the store holds.
fn expected_product(rest: &Value) -> Value {
    let variants = rest["variants"].as_array().unwrap();
    let prices: Vec<f64> = variants
        .iter()
        .map(|v| v["price"].as_str().unwrap().parse().unwrap())
        .collect();
    let stock: i64 = variants.iter().map(|v| v["inventory_quantity"].as_i64().unwrap()).sum();
    json!({
        "id": rest["id"].as_i64().unwrap().to_string(),
        "title": rest["title"],
        "description": format!("The {} is made of stoneware.", rest["title"].as_str().unwrap()),
        "status": rest["status"],
        "price_min": format!("{:.2}", prices.iter().cloned().fold(f64::MAX, f64::min)),
        "price_max": format!("{:.2}", prices.iter().cloned().fold(f64::MIN, f64::max)),
        "stock": stock.to_string(),
    })
}

/// What the API should show of an order the store holds.
fn expected_order(rest: &Value) -> Value {
    let tracking: Vec<Value> = rest["fulfillments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!({"number": f["tracking_numbers"][0], "company": f["tracking_company"], "url": f["tracking_urls"][0]}))
        .collect();
    json!({
        "id": rest["id"].as_i64().unwrap().to_string(),
        "email": rest["email"], "customer_id": rest["customer"]["id"].as_i64().unwrap().to_string(),
        "financial_status": "paid",
        "fulfillment_status": rest["fulfillment_status"].as_str().unwrap_or("unfulfilled"),
        "total_price": rest["total_price"], "currency": "EUR", "tracking": tracking,
        "line_items": rest["line_items"].as_array().unwrap().iter()
            .map(|l| json!({"title": l["title"], "quantity": l["quantity"].as_i64().unwrap().to_string()}))
            .collect::<Vec<_>>(),
    })
}

/// Every page of a list, the fields `keys` of each row.
async fn all(api: &Client, path: &str, list: &str, keys: &[&str]) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = api.get(&format!("{path}?limit=50&cursor={cursor}")).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for row in page.json[list].as_array().unwrap() {
            let picked: serde_json::Map<String, Value> = keys
                .iter()
                .map(|k| (k.to_string(), row.get(*k).cloned().unwrap_or_else(|| json!([]))))
                .collect();
            rows.push(Value::Object(picked));
        }
        cursor = page.json["next_cursor"].as_str().unwrap_or_default().to_owned();
        if cursor.is_empty() {
            return rows;
        }
    }
}

/// The platform holds exactly what the store holds, field by field.
async fn assert_in_line(api: &Client, id: &str, shopify: &ShopifyServer) {
    let held = all(
        api,
        &format!("/api/v1/integrations/{id}/products"),
        "products",
        &PRODUCT_FIELDS,
    )
    .await;
    let source: Vec<Value> = shopify.products().iter().map(expected_product).collect();
    assert_eq!(held, source);
    let held = all(
        api,
        &format!("/api/v1/integrations/{id}/orders"),
        "orders",
        &ORDER_FIELDS,
    )
    .await;
    let source: Vec<Value> = shopify.orders().iter().map(expected_order).collect();
    assert_eq!(held, source);
}

async fn sync(api: &Client, id: &str) -> Value {
    let queued = api.post(&format!("/api/v1/integrations/{id}:sync"), json!({})).await;
    assert_eq!(queued.status, 200, "{}", queued.text);
    queued.json
}

/// Waits until the webhooks sent so far are applied: `products` products
/// and `orders` orders are shown.
async fn applied(api: &Client, id: &str, products: usize, orders: usize) {
    for (list, count) in [("products", products), ("orders", orders)] {
        api.get_until(&format!("/api/v1/integrations/{id}/{list}?limit=100"), WAIT, |page| {
            page[list].as_array().is_some_and(|rows| rows.len() == count)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_catches_up_what_webhooks_missed_and_removes_what_the_store_deleted() {
    let (shopify, stack) = store_and_stack(Options::default()).await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let bot = create_bot(api, "Shop assistant", json!({})).await;
    let id = connect(&stack, &[&bot]).await;

    // Five products and an order arrive by webhook...
    for n in 1..=5 {
        let body = product(n, &format!("Mug {n}"), 10.0, 1, "active");
        assert_eq!(shopify.send(&Webhook::new("products/create", body)).await.0, 200);
    }
    let webhook_order = Webhook::new("orders/create", order(900, 1, false));
    assert_eq!(shopify.send(&webhook_order).await.0, 200);
    applied(api, &id, 5, 1).await;
    // ...then webhooks stop: one product changes, one is deleted, forty
    // products (three drafts, one with 45 variants) and twelve orders are
    // added, and nobody is told.
    shopify.put_product(product(4, "Mug 4", 14.0, 2, "active"));
    shopify.remove_product(5);
    for n in 100..140 {
        let status = if n % 13 == 0 { "draft" } else { "active" };
        let variants = if n == 101 { 45 } else { 1 + n % 3 };
        shopify.put_product(product(
            n,
            &format!("Plate {n}"),
            5.0 + (n % 4) as f64,
            variants,
            status,
        ));
    }
    for n in 1000..1012 {
        shopify.put_order(order(n, n % 4, n % 2 == 0));
    }

    let queued = sync(api, &id).await;
    assert_eq!(
        (queued["trigger"].as_str(), queued["status"].as_str()),
        (Some("request"), Some("queued"))
    );
    let done = tap.skip_until("integration.sync_completed", WAIT).await;
    let run = &done["data"]["sync"];
    assert_eq!(done["data"]["integration_id"], id.as_str());
    assert_eq!(run["id"], queued["id"]);
    assert_eq!(
        run["counts"],
        json!({"created": 52, "updated": 1, "removed": 1, "failed": 0}),
        "40 products and 12 orders new, one product changed, one gone; what webhooks brought is unchanged"
    );
    assert_in_line(api, &id, &shopify).await;

    let runs = api.get(&format!("/api/v1/integrations/{id}/syncs")).await;
    let shown = &runs.json["sync_runs"][0];
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["phase"], "done");
    assert_eq!(
        shown["pages"],
        3 + 2,
        "44 products in pages of 20, 13 orders in pages of 10"
    );
    let integration = api.get(&format!("/api/v1/integrations/{id}")).await;
    assert!(integration.json["last_sync_at"].is_string(), "{}", integration.text);

    // The linked bot learns the active products and forgets the deleted one.
    let knowledge = format!("/api/v1/bots/{bot}/knowledge?limit=100");
    let items = api
        .get_until(&knowledge, WAIT, |page| {
            page["items"].as_array().is_some_and(|i| i.len() == 4 + 37)
        })
        .await;
    let titles: Vec<&str> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["document"]["title"].as_str())
        .collect();
    assert!(
        !titles.contains(&"Mug 5") && titles.contains(&"Plate 101"),
        "{titles:?}"
    );

    // A webhook Shopify produced before the sync read the store is stale.
    let started: DateTime<Utc> = run["started_at"].as_str().unwrap().parse().unwrap();
    let stale = Webhook::new("products/update", product(1, "Old name", 1.0, 1, "active"))
        .triggered_at(started - chrono::Duration::minutes(5));
    assert_eq!(shopify.send(&stale).await.0, 200);
    let newer = Webhook::new("products/update", product(2, "Mug 2 renamed", 10.0, 1, "active"));
    assert_eq!(shopify.send(&newer).await.0, 200);
    api.get_until(&format!("/api/v1/integrations/{id}/products?limit=100"), WAIT, |page| {
        page["products"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["title"] == "Mug 2 renamed")
    })
    .await;
    assert_in_line(api, &id, &shopify).await;

    // Nothing changed since: a second sync finds everything in line.
    let again = sync(api, &id).await;
    assert_ne!(again["id"], queued["id"]);
    let done = tap.skip_until("integration.sync_completed", WAIT).await;
    assert_eq!(
        done["data"]["sync"]["counts"],
        json!({"created": 0, "updated": 0, "removed": 0, "failed": 0})
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_is_read_at_the_pace_its_cost_bucket_allows() {
    let (shopify, stack) = store_and_stack(Options::default()).await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let id = connect(&stack, &[]).await;
    for n in 1..=100 {
        shopify.put_product(product(n, &format!("Bowl {n}"), 3.0, 1, "active"));
    }
    // Each page runs only when its requested 422 points are available
    // (then is charged the 42 it read); 1 000 fit the bucket, refilled at
    // 800 a second. Another app has just spent the bucket, and the first
    // call also meets a 429 asking to wait 0.3 s.
    shopify.set_cost_limit(1000.0, 800.0);
    shopify.drain_bucket();
    shopify.trouble_ahead(vec![Trouble::Throttled("0.3")]);
    sync(api, &id).await;
    let done = tap.skip_until("integration.sync_completed", WAIT).await;
    assert_eq!(done["data"]["sync"]["counts"]["created"], 100);
    // Each page waited until its requested cost was back. Only the drained
    // bucket's answer and, at most, the first orders query (a cost not
    // seen before) were THROTTLED.
    let throttled = shopify.throttled();
    assert!((1..=2).contains(&throttled), "{throttled} THROTTLED answers");
    assert_in_line(api, &id, &shopify).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_interrupted_by_an_outage_goes_on_from_where_it_stopped() {
    let (shopify, stack) = store_and_stack(Options::default()).await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let id = connect(&stack, &[]).await;
    for n in 1..=60 {
        shopify.put_product(product(n, &format!("Cup {n}"), 4.0, 1, "active"));
    }
    shopify.put_order(order(5000, 1, true));
    // Two pages go through, then Shopify answers 503 to everything.
    shopify.go_down_after(2, 503);
    sync(api, &id).await;
    let failed = tap.skip_until("integration.sync_failed", WAIT).await;
    let reason = failed["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("503"), "{reason}");
    let retry: DateTime<Utc> = failed["data"]["next_retry_at"].as_str().unwrap().parse().unwrap();
    assert!(retry > failed["timestamp"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap());
    let shown = api.get(&format!("/api/v1/integrations/{id}")).await;
    assert!(
        shown.json["last_error"].as_str().unwrap().contains("503"),
        "{}",
        shown.text
    );

    shopify.go_down(None);
    let done = tap.skip_until("integration.sync_completed", WAIT).await;
    assert_eq!(done["data"]["sync"]["counts"]["created"], 61);
    assert!(done["data"]["sync"]["attempts"].as_i64().unwrap() >= 2);
    let pages: Vec<(String, Option<String>)> = shopify.pages_served();
    let read = |resource: &str, after: Option<&str>| (resource.to_owned(), after.map(str::to_owned));
    assert_eq!(
        pages,
        [
            read("products", None),
            read("products", Some("after:20")),
            read("products", Some("after:40")),
            read("orders", None)
        ],
        "each page read once: the retry went on from the cursor it had stored"
    );
    assert_in_line(api, &id, &shopify).await;
    let shown = api.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(shown.json["last_error"], "", "{}", shown.text);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_are_reconciled_on_schedule_from_the_moment_they_connect() {
    let schedule = integration_service::SyncSchedule {
        every: Some(Duration::from_secs(2)),
        retry_after: Duration::from_secs(1),
    };
    let (shopify, stack) = store_and_stack(Options {
        sync: Some(schedule),
        ..Options::default()
    })
    .await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    for n in 1..=3 {
        shopify.put_product(product(n, &format!("Jug {n}"), 8.0, 1, "active"));
    }
    let id = connect(&stack, &[]).await;
    let first = tap.skip_until("integration.sync_completed", WAIT).await;
    assert_eq!(first["data"]["sync"]["trigger"], "schedule");
    assert_eq!(first["data"]["sync"]["counts"]["created"], 3);

    shopify.remove_product(2);
    let removed = loop {
        let next = tap.skip_until("integration.sync_completed", WAIT).await;
        if next["data"]["sync"]["counts"]["removed"] == 1 {
            break next;
        }
    };
    assert_eq!(removed["data"]["sync"]["trigger"], "schedule");
    assert_in_line(api, &id, &shopify).await;

    let unknown = api
        .post("/api/v1/integrations/int_doesnotexist0000000000:sync", json!({}))
        .await;
    unknown.assert_problem(404, "not-found");
    stack.stop().await;
}

const PRODUCT_FIELDS: [&str; 7] = [
    "id",
    "title",
    "description",
    "status",
    "price_min",
    "price_max",
    "stock",
];
const ORDER_FIELDS: [&str; 9] = [
    "id",
    "email",
    "customer_id",
    "financial_status",
    "fulfillment_status",
    "total_price",
    "currency",
    "tracking",
    "line_items",
];

/// How many fields of the store's records the platform holds the same, of
/// how many; a record the platform holds that the store does not have
/// counts as wrong in every field.
fn matching_fields(held: Vec<Value>, source: Vec<Value>, fields: &[&str]) -> (usize, usize) {
    let mut held: std::collections::HashMap<String, Value> = held
        .into_iter()
        .map(|row| (row["id"].as_str().unwrap().to_owned(), row))
        .collect();
    let mut matched = 0;
    for record in &source {
        if let Some(stored) = held.remove(record["id"].as_str().unwrap()) {
            matched += fields.iter().filter(|f| stored[**f] == record[**f]).count();
        }
    }
    (matched, (source.len() + held.len()) * fields.len())
}

/// Fields matched and fields in all, over every product and order.
async fn accuracy(api: &Client, id: &str, shopify: &ShopifyServer) -> (usize, usize) {
    let path = format!("/api/v1/integrations/{id}/products");
    let held = all(api, &path, "products", &PRODUCT_FIELDS).await;
    let products = matching_fields(
        held,
        shopify.products().iter().map(expected_product).collect(),
        &PRODUCT_FIELDS,
    );
    let path = format!("/api/v1/integrations/{id}/orders");
    let held = all(api, &path, "orders", &ORDER_FIELDS).await;
    let orders = matching_fields(
        held,
        shopify.orders().iter().map(expected_order).collect(),
        &ORDER_FIELDS,
    );
    (products.0 + orders.0, products.1 + orders.1)
}

/// Waits until every stored webhook delivery has been applied.
async fn deliveries_applied(stack: &TestStack) {
    let pool = sqlx::PgPool::connect(stack.database_url())
        .await
        .expect("the test database");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM integration.shopify_deliveries WHERE processed_at IS NULL")
                .fetch_one(&pool)
                .await
                .expect("counting deliveries");
        if pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} deliveries still pending"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends webhooks `concurrency` at a time; each must be accepted.
async fn send_all(shopify: &ShopifyServer, webhooks: Vec<Webhook>) {
    use futures_util::StreamExt;
    let answers: Vec<(u16, String)> = futures_util::stream::iter(webhooks.iter().map(|w| shopify.send(w)))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{:?}",
        answers.iter().find(|a| a.0 != 200)
    );
}

/// The seed's success metric: at least 99% of what the platform holds
/// matches the store. Thousands of products and orders arrive by webhook,
/// some dropped, some delivered twice, some retried after newer news; a
/// reconciliation then brings every field in line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_reconciliation_every_field_matches_the_store() {
    const PRODUCTS: i64 = 2000;
    const ORDERS: i64 = 2000;
    let (shopify, stack) = store_and_stack(Options::default()).await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let id = connect(&stack, &[]).await;
    shopify.set_cost_limit(20_000.0, 10_000.0);
    let base = Utc::now() - chrono::Duration::hours(1);
    let at = |n: i64, later: bool| base + chrono::Duration::milliseconds(n * 2 + later as i64);

    let (mut first, mut second) = (Vec::new(), Vec::new());
    for n in 1..=PRODUCTS {
        let created = product(n, &format!("Item {n}"), 2.0 + (n % 50) as f64, 1 + n % 3, "active");
        let changed = product(
            n,
            &format!("Item {n} (new)"),
            3.0 + (n % 50) as f64,
            1 + n % 3,
            "active",
        );
        let create = Webhook::new("products/create", created.clone()).triggered_at(at(n, false));
        let update = Webhook::new("products/update", changed.clone()).triggered_at(at(n, true));
        match n % 10 {
            // Dropped: the store has it, nobody was told.
            0 => shopify.put_product(created),
            // Retried out of order: the update lands before the create.
            1 => {
                first.push(update);
                second.push(create);
            }
            // Delivered twice (a retry with the same webhook id).
            3 => {
                let create = create.id(&format!("dup-product-{n}"));
                first.push(create.clone());
                second.push(create);
            }
            // Changed, the change dropped.
            5 => {
                first.push(create);
                shopify.put_product(changed);
            }
            _ => first.push(create),
        }
    }
    for n in 1..=ORDERS {
        let order_id = 100_000 + n;
        let placed = Webhook::new("orders/create", order(order_id, n % 300, false)).triggered_at(at(n, false));
        let fulfilled = Webhook::new("orders/updated", order(order_id, n % 300, true)).triggered_at(at(n, true));
        match n % 10 {
            0 => shopify.put_order(order(order_id, n % 300, false)),
            1 => {
                first.push(fulfilled);
                second.push(placed);
            }
            3 => {
                let placed = placed.id(&format!("dup-order-{n}"));
                first.push(placed.clone());
                second.push(placed);
            }
            _ => first.push(placed),
        }
    }
    send_all(&shopify, first).await;
    send_all(&shopify, second).await;
    // Deleted from the store: half told by webhook, half not.
    let mut deletes = Vec::new();
    for n in (7..=PRODUCTS).step_by(25) {
        match n % 50 == 7 {
            true => shopify.remove_product(n),
            false => deletes.push(Webhook::new("products/delete", json!({"id": n}))),
        }
    }
    send_all(&shopify, deletes).await;
    deliveries_applied(&stack).await;

    let (matched, total) = accuracy(api, &id, &shopify).await;
    let before = matched as f64 * 100.0 / total as f64;
    println!("sync accuracy from webhooks alone: {before:.2}% ({matched} of {total} fields)");
    assert!(
        before < 100.0,
        "dropped webhooks leave gaps only a reconciliation fills"
    );

    let started = std::time::Instant::now();
    sync(api, &id).await;
    let done = tap
        .skip_until("integration.sync_completed", Duration::from_secs(300))
        .await;
    let counts = &done["data"]["sync"]["counts"];
    let read = shopify.products().len() + shopify.orders().len();
    println!(
        "reconciliation: {read} records in {:.1} s, counts {counts}",
        started.elapsed().as_secs_f64()
    );
    let (matched, total) = accuracy(api, &id, &shopify).await;
    println!(
        "sync accuracy after reconciliation: {:.2}% ({matched} of {total} fields)",
        matched as f64 * 100.0 / total as f64
    );
    assert_eq!(matched, total);
    assert_in_line(api, &id, &shopify).await;
    assert_eq!(counts["removed"], 40, "the products deleted without a webhook");
    assert_eq!(counts["failed"], 0);
    stack.stop().await;
}
