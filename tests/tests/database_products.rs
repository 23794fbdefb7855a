//! A workspace's own database as a source of products: a mapping names
//! the table and columns, changed rows are read on schedule by their
//! change time, and a product whose stock falls below the threshold, or to
//! none, is announced once. Linked bots learn the products, and the
//! workspace's signed inventory webhook changes stock between reads.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use e2e::{
    Client, Reply, TestStack,
    bots::create_bot,
    customer_db::{CustomerDb, Engine},
    event_tap::EventTap,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(20);

fn mapping() -> Value {
    json!({"table": "items", "id": "sku", "title": "name", "description": "info", "price": "price",
        "stock": "qty", "updated_at": "changed_at"})
}

/// The products the connection shows once `done` holds of them.
async fn products_until(api: &Client, id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let path = format!("/api/v1/integrations/{id}/products?limit=100");
    let page = api
        .get_until(&path, WAIT, |page| page["products"].as_array().is_some_and(|p| done(p)))
        .await;
    page["products"].as_array().unwrap().clone()
}

async fn products_flow(engine: Engine) {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let db = CustomerDb::create(engine).await;
    let now = match engine {
        Engine::Postgres => "now()",
        Engine::Mariadb => "now(6)",
    };
    db.execute(&format!(
        "CREATE TABLE items (sku varchar(20) PRIMARY KEY, name varchar(100) NOT NULL, info text,
             price decimal(10,2), qty integer, changed_at timestamp(6) NOT NULL);
         INSERT INTO items VALUES ('SKU-1', 'Blue mug', 'Stoneware', 4.50, 20, {now}),
                                  ('SKU-2', 'Bowl', NULL, 12.00, 12, {now}),
                                  ('SKU-3', 'Plate', 'Porcelain', 7.25, 0, {now});"
    ))
    .await;

    let mut request = db.connect_request(&db.password);
    request["settings"]["products"] = mapping();
    request["settings"]["poll_seconds"] = json!(1);
    let created = api.post("/api/v1/integrations", request).await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["settings"]["products"], mapping());
    // Settings travel as a protobuf Struct, whose numbers are doubles.
    assert_eq!(created.json["settings"]["low_stock_threshold"].as_f64(), Some(10.0));
    let id = created.json["id"].as_str().unwrap().to_owned();

    let products = products_until(api, &id, |p| p.len() == 3).await;
    assert_eq!(products[0]["external_id"], "SKU-1");
    assert_eq!(products[0]["title"], "Blue mug");
    assert_eq!(products[0]["description"], "Stoneware");
    assert_eq!(products[0]["price_min"], "4.50");
    assert_eq!(products[0]["stock"], "20");

    // Below the threshold, then none left: each announced once.
    db.execute(&format!(
        "UPDATE items SET qty = 5, changed_at = {now} WHERE sku = 'SKU-1'"
    ))
    .await;
    let low = tap.skip_until("product.low_stock", WAIT).await;
    assert_eq!(low["data"]["product"]["id"], "SKU-1");
    assert_eq!(low["data"]["product"]["stock"], 5);
    assert_eq!(low["data"]["threshold"], 10);
    db.execute(&format!(
        "UPDATE items SET qty = 0, changed_at = {now} WHERE sku = 'SKU-1'"
    ))
    .await;
    let out = tap.skip_until("product.out_of_stock", WAIT).await;
    assert_eq!(out["data"]["product"]["id"], "SKU-1");
    products_until(api, &id, |p| p[0]["stock"] == "0").await;
    db.execute("DELETE FROM items WHERE sku = 'SKU-2'").await;
    let left = products_until(api, &id, |p| p.len() == 2).await;
    assert_eq!(
        (left[0]["external_id"].as_str(), left[1]["external_id"].as_str()),
        (Some("SKU-1"), Some("SKU-3"))
    );

    // What is read may change; where it is read from may not.
    let path = format!("/api/v1/integrations/{id}");
    let changed = api.patch(&path, json!({"settings": {"low_stock_threshold": 3}})).await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.json["settings"]["low_stock_threshold"].as_f64(), Some(3.0));
    api.patch(&path, json!({"settings": {"host": "10.0.0.1"}}))
        .await
        .assert_problem(400, "invalid-argument");
    // A new mapping is tried as the first one was.
    let mut missing = mapping();
    missing["table"] = json!("no_such_items");
    let refused = api.patch(&path, json!({"settings": {"products": missing}})).await;
    refused.assert_problem(422, "unprocessable");
    assert!(refused.text.contains("no_such_items"), "{}", refused.text);

    let mut spliced = db.connect_request(&db.password);
    spliced["settings"]["products"] = json!({"table": "items; DROP TABLE items", "id": "sku", "title": "name",
        "stock": "qty", "updated_at": "changed_at"});
    let refused = api.post("/api/v1/integrations", spliced).await;
    refused.assert_problem(400, "invalid-argument");
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap()
            .contains("settings.products.table")
    );
    db.remove().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_read_from_a_workspaces_postgres_and_stock_crossings_announced() {
    products_flow(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_read_from_a_workspaces_mariadb_and_stock_crossings_announced() {
    products_flow(Engine::Mariadb).await;
}

const INVENTORY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// An inventory webhook as the workspace's system would send it, signed
/// the Standard Webhooks way with `secret`, timestamped `age` ago.
async fn send_inventory(stack: &TestStack, id: &str, webhook_id: &str, age: i64, body: Value, secret: &str) -> Reply {
    let body = body.to_string();
    let timestamp = chrono::Utc::now().timestamp() - age;
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{webhook_id}.{timestamp}.{body}").as_bytes());
    let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let anonymous = Client::anonymous(&stack.base_url);
    let request = anonymous
        .request(reqwest::Method::POST, &format!("/hooks/inventory/{id}"))
        .header("content-type", "application/json")
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    Client::send(request).await
}

fn text_of<'a>(items: &'a [Value], title: &str) -> &'a str {
    items
        .iter()
        .find(|item| item["document"]["title"] == title)
        .and_then(|item| item["document"]["text"].as_str())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_bots_learn_a_databases_products_and_its_inventory_webhook_moves_stock() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let db = CustomerDb::create(Engine::Postgres).await;
    db.execute(
        "CREATE TABLE items (sku varchar(20) PRIMARY KEY, name varchar(100) NOT NULL, info text,
             price decimal(10,2), qty integer, changed_at timestamp(6) NOT NULL);
         INSERT INTO items VALUES ('SKU-1', 'Blue mug', 'Stoneware', 4.50, 20, now()),
                                  ('SKU-2', 'Bowl', NULL, 12.00, 12, now());",
    )
    .await;
    let bot = create_bot(api, "Shop assistant", json!({})).await;
    let mut request = db.connect_request(&db.password);
    request["settings"]["products"] = mapping();
    request["settings"]["poll_seconds"] = json!(1);
    request["settings"]["bot_ids"] = json!([bot]);
    request["credentials"]["inventory_webhook_secret"] = json!(INVENTORY_SECRET);
    let created = api.post("/api/v1/integrations", request).await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["webhook_topics"], json!(["inventory"]));
    assert!(!created.text.contains(INVENTORY_SECRET));
    let id = created.json["id"].as_str().unwrap().to_owned();

    let items = e2e::bots::knowledge_until(api, &bot, |items| items.len() == 2).await;
    assert!(
        items.iter().all(|item| item["source"] == format!("postgres:{id}")),
        "{items:?}"
    );
    let mug = text_of(&items, "Blue mug");
    assert!(
        mug.contains("Stoneware") && mug.contains("Price: 4.50.") && mug.contains("In stock: 20 available."),
        "{mug}"
    );

    // The webhook moves stock at once: announced, and the bot told.
    let low = send_inventory(
        &stack,
        &id,
        "msg_1",
        0,
        json!({"product_id": "SKU-1", "stock": 3}),
        INVENTORY_SECRET,
    )
    .await;
    assert_eq!(low.status, 200, "{}", low.text);
    assert_eq!(
        (low.json["updated"].as_i64(), low.json["duplicate"].as_bool()),
        (Some(1), Some(false))
    );
    let event = tap.skip_until("product.low_stock", WAIT).await;
    assert_eq!(
        (
            event["data"]["product"]["id"].as_str(),
            event["data"]["product"]["stock"].as_i64()
        ),
        (Some("SKU-1"), Some(3))
    );
    assert_eq!(event["data"]["product"]["title"], "Blue mug");
    e2e::bots::knowledge_until(api, &bot, |items| {
        text_of(items, "Blue mug").contains("Low stock: only 3 left.")
    })
    .await;

    // Retried, late or about a product not read yet: nothing changes.
    let again = send_inventory(
        &stack,
        &id,
        "msg_1",
        0,
        json!({"product_id": "SKU-1", "stock": 3}),
        INVENTORY_SECRET,
    )
    .await;
    assert_eq!(again.json["duplicate"], true, "{}", again.text);
    let late = json!([{"product_id": "SKU-1", "stock": 50}, {"product_id": "SKU-9", "stock": 1}]);
    let late = send_inventory(&stack, &id, "msg_0", 60, late, INVENTORY_SECRET).await;
    assert_eq!(late.status, 200, "{}", late.text);
    assert_eq!(late.json["stale"], 1);
    assert_eq!(late.json["unknown_product_ids"], json!(["SKU-9"]));
    let products = products_until(api, &id, |p| !p.is_empty()).await;
    assert_eq!(products[0]["stock"], "3");

    // Forged, replayed or unsigned: refused, and nothing changes.
    let forged = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let body = json!({"product_id": "SKU-2", "stock": 0});
    send_inventory(&stack, &id, "msg_2", 0, body.clone(), forged)
        .await
        .assert_problem(401, "unauthenticated");
    send_inventory(&stack, &id, "msg_3", 600, body.clone(), INVENTORY_SECRET)
        .await
        .assert_problem(401, "unauthenticated");
    let unsigned = Client::anonymous(&stack.base_url)
        .request(reqwest::Method::POST, &format!("/hooks/inventory/{id}"))
        .body(body.to_string());
    Client::send(unsigned).await.assert_problem(400, "invalid-argument");

    // The database itself is the truth: the next read of a changed row wins.
    db.execute("UPDATE items SET qty = 0, changed_at = now() WHERE sku = 'SKU-1'")
        .await;
    let out = tap.skip_until("product.out_of_stock", WAIT).await;
    assert_eq!(out["data"]["product"]["id"], "SKU-1");
    e2e::bots::knowledge_until(api, &bot, |items| text_of(items, "Blue mug").contains("Out of stock.")).await;
    let products = products_until(api, &id, |p| p[1]["stock"] == "12").await;
    assert_eq!(products[1]["external_id"], "SKU-2", "the forged change was not applied");

    // A deleted row leaves the list and the bot's knowledge.
    db.execute("DELETE FROM items WHERE sku = 'SKU-2'").await;
    products_until(api, &id, |p| p.len() == 1).await;
    let items = e2e::bots::knowledge_until(api, &bot, |items| items.len() == 1).await;
    assert_eq!(items[0]["document"]["title"], "Blue mug");

    // Unlinked, the bot forgets them.
    let unlinked = api
        .patch(
            &format!("/api/v1/integrations/{id}"),
            json!({"settings": {"bot_ids": []}}),
        )
        .await;
    assert_eq!(unlinked.status, 200, "{}", unlinked.text);
    e2e::bots::knowledge_until(api, &bot, <[Value]>::is_empty).await;
    db.remove().await;
    stack.stop().await;
}
