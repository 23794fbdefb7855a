//! A Shopify store's webhooks, end to end: registered when a store is
//! connected with its app's client secret and removed when it disconnects;
//! sent by a local Shopify with real headers and signatures to the
//! gateway's public `/hooks/shopify/{id}` route (no API key); verified,
//! stored once, and processed into the products, stock and orders the API
//! lists, with stale retries never overwriting newer news and the privacy
//! topics doing what they say.

use std::time::Duration;

use chrono::{DateTime, Utc};
use e2e::{
    Client, Options, Reply, TestStack,
    event_tap::EventTap,
    shopify_server::{CLIENT_SECRET, SHOP, ShopifyServer, Webhook},
};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "shpat_admin_token";
const WAIT: Duration = Duration::from_secs(10);
/// 2^53 + 1: a float would read it as 2^53.
const BIG_ID: i64 = 9_007_199_254_740_993;
const TOPICS: [&str; 7] = [
    "orders/create",
    "orders/updated",
    "products/create",
    "products/update",
    "products/delete",
    "inventory_levels/update",
    "app/uninstalled",
];

async fn store_and_stack() -> (ShopifyServer, TestStack) {
    let shopify = ShopifyServer::start(ADMIN_TOKEN, "shprt_unused", Duration::ZERO).await;
    let stack = TestStack::start_with(Options {
        shopify_url: Some(shopify.url.clone()),
        ..Options::default()
    })
    .await;
    (shopify, stack)
}

async fn connect(stack: &TestStack, credentials: Value) -> Reply {
    let request =
        json!({"kind": "shopify", "name": "Acme store", "settings": {"shop": SHOP}, "credentials": credentials});
    stack.client.post("/api/v1/integrations", request).await
}

/// A store connected with its app's secret; its integration id.
async fn connected(stack: &TestStack) -> String {
    let created = connect(
        stack,
        json!({"access_token": ADMIN_TOKEN, "client_secret": CLIENT_SECRET}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text);
    created.json["id"].as_str().unwrap().to_owned()
}

/// Polls `path` until `done` holds of its answer.
async fn eventually(client: &Client, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    client.get_until(path, WAIT, done).await
}

fn product(id: i64, title: &str, price: &str, quantity: i64) -> Value {
    json!({
        "id": id, "title": title, "body_html": format!("<p>The <b>{title}</b>, hand made.</p>"),
        "handle": title.to_lowercase().replace(' ', "-"), "status": "active",
        "updated_at": "2026-12-01T10:00:00Z",
        "variants": [
            {"id": id + 1, "title": "Small", "sku": "S", "price": price, "inventory_item_id": id + 100, "inventory_quantity": quantity},
            {"id": id + 2, "title": "Large", "sku": "L", "price": "99.00", "inventory_item_id": id + 200, "inventory_quantity": 1}
        ]
    })
}

fn order(id: i64, customer_id: i64, email: &str, tracking: Option<&str>) -> Value {
    let fulfillments = match tracking {
        Some(number) => {
            json!([{"tracking_number": number, "tracking_company": "UPS", "tracking_url": format!("https://ups.example/{number}")}])
        }
        None => json!([]),
    };
    json!({
        "id": id, "name": format!("#{}", id % 10_000), "email": email,
        "customer": {"id": customer_id, "email": email},
        "financial_status": "paid",
        "fulfillment_status": if tracking.is_some() { Value::from("fulfilled") } else { Value::Null },
        "total_price": "42.50", "currency": "EUR",
        "line_items": [{"title": "Mug", "quantity": 2}],
        "fulfillments": fulfillments,
        "created_at": "2026-11-30T09:00:00Z", "updated_at": "2026-12-01T09:00:00Z"
    })
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_with_the_apps_secret_registers_every_topic_and_disconnecting_removes_them() {
    let (shopify, stack) = store_and_stack().await;
    let without_secret = connect(&stack, json!({"access_token": ADMIN_TOKEN})).await;
    assert_eq!(
        without_secret.json["webhook_topics"],
        json!([]),
        "nothing could verify them"
    );
    assert!(shopify.subscriptions().is_empty());

    let id = connected(&stack).await;
    let shown = stack.client.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(shown.json["webhook_topics"], json!(TOPICS));
    let subscriptions = shopify.subscriptions();
    let mut topics: Vec<&str> = subscriptions.iter().map(|s| s.topic.as_str()).collect();
    topics.sort();
    let mut expected = TOPICS.to_vec();
    expected.sort();
    assert_eq!(topics, expected);
    let callback = format!("{}/hooks/shopify/{id}", stack.base_url);
    assert!(
        subscriptions.iter().all(|s| s.callback == callback),
        "{subscriptions:?}"
    );

    let deleted = stack.client.delete(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert!(shopify.subscriptions().is_empty(), "disconnecting unregisters");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_stored_once_with_its_exact_id_and_its_tracking_once_fulfilled() {
    let (shopify, stack) = store_and_stack().await;
    let id = connected(&stack).await;
    let created = Webhook::new("orders/create", order(BIG_ID, 7, "ann@example.com", None)).id("order-created-1");
    let (status, body) = shopify.send(&created).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"accepted": true, "duplicate": false})
    );
    let (status, body) = shopify.send(&created).await;
    assert_eq!((status, body.contains("\"duplicate\":true")), (200, true), "{body}");

    let orders_path = format!("/api/v1/integrations/{id}/orders");
    let listed = eventually(&stack.client, &orders_path, |o| {
        o["orders"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let stored = &listed["orders"][0];
    assert_eq!(
        stored["id"],
        BIG_ID.to_string(),
        "64-bit ids travel exactly, as strings"
    );
    assert_eq!(stored["customer_id"], "7");
    assert_eq!(stored["email"], "ann@example.com");
    assert_eq!(stored["fulfillment_status"], "unfulfilled");
    assert_eq!(stored["total_price"], "42.50");
    assert_eq!(stored["line_items"], json!([{"title": "Mug", "quantity": "2"}]));

    let fulfilled = Webhook::new("orders/updated", order(BIG_ID, 7, "ann@example.com", Some("1Z999")));
    assert_eq!(shopify.send(&fulfilled).await.0, 200);
    let listed = eventually(&stack.client, &orders_path, |o| {
        o["orders"][0]["fulfillment_status"] == "fulfilled"
    })
    .await;
    assert_eq!(
        listed["orders"][0]["tracking"],
        json!([{"number": "1Z999", "company": "UPS", "url": "https://ups.example/1Z999"}])
    );
    assert_eq!(listed["orders"].as_array().unwrap().len(), 1, "stored once");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_and_foreign_deliveries_are_refused_with_problems() {
    let (shopify, stack) = store_and_stack().await;
    let id = connected(&stack).await;
    let url = format!("{}/hooks/shopify/{id}", stack.base_url);
    let body = order(1, 7, "ann@example.com", None);

    let forged = Webhook {
        secret: Some("not-the-apps-secret".into()),
        ..Webhook::new("orders/create", body.clone())
    };
    let (status, text) = shopify.send_to(&url, &forged).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("X-Shopify-Hmac-Sha256"), "{text}");
    let foreign = Webhook {
        shop: Some("other-store.myshopify.com".into()),
        ..Webhook::new("orders/create", body.clone())
    };
    let (status, text) = shopify.send_to(&url, &foreign).await;
    assert_eq!(status, 401, "another store signed by the same app: {text}");
    let unsigned = Webhook {
        without: vec!["x-shopify-hmac-sha256"],
        ..Webhook::new("orders/create", body.clone())
    };
    let (status, text) = shopify.send_to(&url, &unsigned).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("x-shopify-hmac-sha256"), "{text}");
    let (status, _) = shopify
        .send_to(
            &format!("{}/hooks/shopify/int_00000000000000000000", stack.base_url),
            &Webhook::new("orders/create", body),
        )
        .await;
    assert_eq!(status, 404);
    let read = reqwest::get(&url).await.unwrap();
    assert_eq!(read.status(), 405);

    // None of them was stored.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let orders = stack.client.get(&format!("/api/v1/integrations/{id}/orders")).await;
    assert_eq!(orders.json["orders"], json!([]));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_retries_never_overwrite_newer_news() {
    let (shopify, stack) = store_and_stack().await;
    let id = connected(&stack).await;
    let products = format!("/api/v1/integrations/{id}/products");
    let newer = Webhook::new("products/update", product(BIG_ID, "Blue mug", "12.50", 4))
        .triggered_at(at("2026-12-01T10:00:02Z"));
    let older = Webhook::new("products/update", product(BIG_ID, "Red mug", "10.00", 9))
        .triggered_at(at("2026-12-01T10:00:01Z"));
    assert_eq!(shopify.send(&newer).await.0, 200);
    let listed = eventually(&stack.client, &products, |p| p["products"][0]["title"] == "Blue mug").await;
    let mug = &listed["products"][0];
    assert_eq!(mug["id"], BIG_ID.to_string());
    assert_eq!(mug["description"], "The Blue mug, hand made.");
    assert_eq!(
        (mug["price_min"].as_str(), mug["price_max"].as_str()),
        (Some("12.50"), Some("99.00"))
    );
    assert_eq!(mug["stock"], "5");

    assert_eq!(shopify.send(&older).await.0, 200);
    // One location now holds 20 of the small mug's item; the large one has no
    // levels reported, so its product quantity still counts.
    let level = json!({"inventory_item_id": BIG_ID + 100, "location_id": 1, "available": 20, "updated_at": "2026-12-01T10:00:03Z"});
    assert_eq!(
        shopify.send(&Webhook::new("inventory_levels/update", level)).await.0,
        200
    );
    let listed = eventually(&stack.client, &products, |p| p["products"][0]["stock"] == "21").await;
    assert_eq!(
        listed["products"][0]["title"], "Blue mug",
        "the older update was applied after, yet lost"
    );

    let deleted = Webhook::new("products/delete", json!({"id": BIG_ID})).triggered_at(at("2026-12-01T10:00:05Z"));
    let late = Webhook::new("products/update", product(BIG_ID, "Green mug", "11.00", 2))
        .triggered_at(at("2026-12-01T10:00:04Z"));
    assert_eq!(shopify.send(&deleted).await.0, 200);
    eventually(&stack.client, &products, |p| p["products"] == json!([])).await;
    assert_eq!(shopify.send(&late).await.0, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = stack.client.get(&products).await;
    assert_eq!(
        listed.json["products"],
        json!([]),
        "a late update does not revive a deleted product"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_keeps_verifying_what_was_signed_before() {
    let (shopify, stack) = store_and_stack().await;
    let id = connected(&stack).await;
    let rotated = stack
        .client
        .patch(
            &format!("/api/v1/integrations/{id}"),
            json!({"credentials": {"client_secret": "rotated-secret"}}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert!(!rotated.text.contains("rotated-secret"));
    let url = format!("{}/hooks/shopify/{id}", stack.base_url);
    let signed_with = |secret: &str| Webhook {
        secret: Some(secret.to_owned()),
        ..Webhook::new("orders/create", order(1, 7, "ann@example.com", None))
    };
    assert_eq!(shopify.send_to(&url, &signed_with("rotated-secret")).await.0, 200);
    assert_eq!(
        shopify.send_to(&url, &signed_with(CLIENT_SECRET)).await.0,
        200,
        "the previous secret still verifies"
    );
    assert_eq!(shopify.send_to(&url, &signed_with("never-configured")).await.0, 401);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_requests_export_and_erase_what_is_stored() {
    let (shopify, stack) = store_and_stack().await;
    let id = connected(&stack).await;
    let orders = format!("/api/v1/integrations/{id}/orders");
    for (order_id, customer, email) in [
        (101, 7, "ann@example.com"),
        (102, 7, "ann@example.com"),
        (201, 8, "bob@example.com"),
    ] {
        assert_eq!(
            shopify
                .send(&Webhook::new("orders/create", order(order_id, customer, email, None)))
                .await
                .0,
            200
        );
    }
    assert_eq!(
        shopify
            .send(&Webhook::new("products/create", product(5, "Mug", "9.00", 3)))
            .await
            .0,
        200
    );
    eventually(&stack.client, &orders, |o| {
        o["orders"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;

    let asked = json!({"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 7, "email": "ann@example.com"},
        "orders_requested": [101, 102], "data_request": {"id": 9999}});
    assert_eq!(
        shopify.send(&Webhook::new("customers/data_request", asked)).await.0,
        200
    );
    let requests = eventually(
        &stack.client,
        &format!("/api/v1/integrations/{id}/data-requests"),
        |r| r["data_requests"].as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let request = &requests["data_requests"][0];
    assert_eq!(
        (request["id"].as_str(), request["customer_email"].as_str()),
        (Some("9999"), Some("ann@example.com"))
    );
    let exported: Vec<&str> = request["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(exported, ["101", "102"], "Ann's orders, and only hers");

    let redact = json!({"shop_id": 1, "shop_domain": SHOP, "customer": {"id": 7, "email": "ann@example.com"}, "orders_to_redact": [101, 102]});
    assert_eq!(shopify.send(&Webhook::new("customers/redact", redact)).await.0, 200);
    let left = eventually(&stack.client, &orders, |o| {
        o["orders"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(left["orders"][0]["email"], "bob@example.com");

    assert_eq!(
        shopify
            .send(&Webhook::new("shop/redact", json!({"shop_id": 1, "shop_domain": SHOP})))
            .await
            .0,
        200
    );
    eventually(&stack.client, &orders, |o| o["orders"] == json!([])).await;
    let products = stack.client.get(&format!("/api/v1/integrations/{id}/products")).await;
    assert_eq!(products.json["products"], json!([]));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstalling_the_app_disconnects_the_integration_and_says_so() {
    let (shopify, stack) = store_and_stack().await;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let id = connected(&stack).await;
    let shop = json!({"id": 1, "name": "Acme Test", "domain": SHOP, "myshopify_domain": SHOP});
    assert_eq!(shopify.send(&Webhook::new("app/uninstalled", shop)).await.0, 200);
    let shown = eventually(&stack.client, &format!("/api/v1/integrations/{id}"), |i| {
        i["status"] == "disconnected"
    })
    .await;
    assert_eq!(shown["webhook_topics"], json!([]));
    assert!(shown["last_error"].as_str().unwrap().contains("uninstalled"), "{shown}");
    let event = tap.skip_until("integration.disconnected", WAIT).await;
    assert_eq!(event["data"]["integration"]["id"], id.as_str());
    stack.stop().await;
}
