//! A workspace's own database as a source of products: a mapping names
//! the table and columns, changed rows are read on schedule by their
//! change time, and a product whose stock falls below the threshold, or to
//! none, is announced once.

use std::time::Duration;

use e2e::{
    Client, TestStack,
    customer_db::{CustomerDb, Engine},
    event_tap::EventTap,
};
use serde_json::{Value, json};

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

    // What is read may change; where it is read from may not.
    let path = format!("/api/v1/integrations/{id}");
    let changed = api.patch(&path, json!({"settings": {"low_stock_threshold": 3}})).await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.json["settings"]["low_stock_threshold"].as_f64(), Some(3.0));
    api.patch(&path, json!({"settings": {"host": "10.0.0.1"}}))
        .await
        .assert_problem(400, "invalid-argument");

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
