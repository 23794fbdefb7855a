//! When a customer's order ships, they hear it in their open conversation:
//! the one whose `metadata.customer` (set by the workspace's backend) names
//! them by email or Shopify customer id. Each tracking number is told once,
//! to that customer only.

use std::time::Duration;

use e2e::{
    Client, Options, TestStack,
    shopify_server::{CLIENT_SECRET, SHOP, ShopifyServer, Webhook},
};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "shpat_admin_token";
const WAIT: Duration = Duration::from_secs(15);

/// A stack with a store connected; the path of the store's orders.
async fn connected_store() -> (ShopifyServer, TestStack, String) {
    let shopify = ShopifyServer::start(ADMIN_TOKEN, "shprt_unused", Duration::ZERO).await;
    let stack = TestStack::start_with(Options {
        shopify_url: Some(shopify.url.clone()),
        ..Options::default()
    })
    .await;
    let request = json!({"kind": "shopify", "name": "Acme store", "settings": {"shop": SHOP},
        "credentials": {"access_token": ADMIN_TOKEN, "client_secret": CLIENT_SECRET}});
    let created = stack.client.post("/api/v1/integrations", request).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let orders = format!("/api/v1/integrations/{}/orders", created.json["id"].as_str().unwrap());
    (shopify, stack, orders)
}

async fn conversation(api: &Client, customer: Value) -> String {
    let created = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "shopper", "channel": "web", "metadata": {"customer": customer}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    created.json["id"].as_str().unwrap().to_owned()
}

async fn messages(api: &Client, conversation: &str) -> Vec<Value> {
    let listed = api.get(&format!("/api/v1/conversations/{conversation}/messages")).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    listed.json["messages"].as_array().cloned().unwrap_or_default()
}

fn order(id: i64, email: &str, customer_id: i64, tracking: &[&str]) -> Value {
    let fulfillments: Vec<Value> = tracking
        .iter()
        .map(|number| {
            json!({"tracking_numbers": [number], "tracking_company": "UPS",
            "tracking_urls": [format!("https://ups.example/{number}")]})
        })
        .collect();
    json!({"id": id, "name": format!("#{id}"), "email": email, "customer": {"id": customer_id, "email": email},
        "financial_status": "paid", "fulfillment_status": if tracking.is_empty() { Value::Null } else { json!("fulfilled") },
        "total_price": "25.00", "currency": "EUR", "line_items": [{"title": "Mug", "quantity": 1}],
        "fulfillments": fulfillments})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_order_is_told_once_in_its_customers_open_conversation_only() {
    let (shopify, stack, orders) = connected_store().await;
    let api = &stack.client;

    let ann = conversation(api, json!({"email": "Ann@Example.com"})).await;
    let ended = conversation(api, json!({"email": "ann@example.com"})).await;
    let closed = api
        .request(reqwest::Method::PATCH, &format!("/api/v1/conversations/{ended}"))
        .json(&json!({"status": "ended"}));
    assert_eq!(Client::send(closed).await.status, 200);
    let bob = conversation(api, json!({"shopify_customer_id": "207119551"})).await;
    let other = conversation(api, json!({"email": "carol@example.com"})).await;

    let placed = Webhook::new("orders/create", order(1001, "ann@example.com", 1, &[]));
    assert_eq!(shopify.send(&placed).await.0, 200);
    let bobs = Webhook::new("orders/create", order(1002, "bob@example.com", 207_119_551, &[]));
    assert_eq!(shopify.send(&bobs).await.0, 200);
    api.get_until(&orders, WAIT, |page| {
        page["orders"].as_array().is_some_and(|o| o.len() == 2)
    })
    .await;
    // Placing an order tells nobody anything.
    assert!(messages(api, &ann).await.is_empty());

    let shipped = Webhook::new("orders/updated", order(1001, "ann@example.com", 1, &["1Z999"]));
    assert_eq!(shopify.send(&shipped).await.0, 200);
    let path = format!("/api/v1/conversations/{ann}/messages");
    let told = api
        .get_until(&path, WAIT, |page| {
            page["messages"].as_array().is_some_and(|m| !m.is_empty())
        })
        .await;
    let message = &told["messages"][0];
    assert_eq!(message["role"], "bot");
    let text = message["content"].as_str().unwrap();
    assert!(
        text.contains("#1001") && text.contains("1Z999") && text.contains("https://ups.example/1Z999"),
        "{text}"
    );

    // Bob's order ships, matched by his Shopify customer id; Ann's is
    // updated again with the same tracking number.
    let bob_shipped = Webhook::new("orders/updated", order(1002, "bob@example.com", 207_119_551, &["LX42"]));
    assert_eq!(shopify.send(&bob_shipped).await.0, 200);
    let again = Webhook::new("orders/updated", order(1001, "ann@example.com", 1, &["1Z999"]));
    assert_eq!(shopify.send(&again).await.0, 200);
    let path = format!("/api/v1/conversations/{bob}/messages");
    let told = api
        .get_until(&path, WAIT, |page| {
            page["messages"].as_array().is_some_and(|m| !m.is_empty())
        })
        .await;
    assert!(told["messages"][0]["content"].as_str().unwrap().contains("LX42"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(messages(api, &ann).await.len(), 1, "each tracking number is told once");
    assert!(
        messages(api, &ended).await.is_empty(),
        "an ended conversation hears nothing"
    );
    assert!(messages(api, &other).await.is_empty(), "another customer hears nothing");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_answers_where_is_my_order_for_the_verified_customer_only() {
    let (shopify, stack, orders) = connected_store().await;
    let api = &stack.client;
    for (topic, body) in [
        ("orders/create", order(1001, "ann@example.com", 1, &["1Z999"])),
        ("orders/create", order(1003, "ann@example.com", 1, &[])),
        ("orders/create", order(2001, "bob@example.com", 207_119_551, &["LX42"])),
    ] {
        assert_eq!(shopify.send(&Webhook::new(topic, body)).await.0, 200);
    }
    api.get_until(&orders, WAIT, |page| {
        page["orders"].as_array().is_some_and(|o| o.len() == 3)
    })
    .await;
    let bot = e2e::bots::create_bot(api, "Shop assistant", json!({})).await;
    let ask = |customer: Value| {
        let bot = bot.clone();
        async move { e2e::bots::ask_as(api, &bot, customer, "Where is my order? It's #2001 by the way").await }
    };

    let ann = ask(json!({"email": "ANN@example.com"})).await;
    assert!(
        ann.contains("#1001") && ann.contains("1Z999") && ann.contains("#1003"),
        "{ann}"
    );
    assert!(ann.contains("not shipped yet"), "{ann}");
    assert!(
        !ann.contains("LX42"),
        "naming another order number shows nothing of it: {ann}"
    );
    let bob = ask(json!({"shopify_customer_id": "207119551"})).await;
    assert!(bob.contains("LX42") && !bob.contains("1Z999"), "{bob}");
    let nobody = ask(json!({})).await;
    assert!(!nobody.contains("1Z999") && !nobody.contains("LX42"), "{nobody}");
    let stranger = ask(json!({"email": "carol@example.com"})).await;
    assert!(stranger.starts_with("I could not find any orders"), "{stranger}");
    stack.stop().await;
}

/// The tool answers a model server received, by call id.
fn tool_answers(received: &[e2e::model_server::Received]) -> Vec<Value> {
    received
        .iter()
        .flat_map(|r| r.body["messages"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["role"] == "tool")
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_calls_order_and_product_tools_for_the_verified_customer_only() {
    use e2e::model_server::{Answer, ModelServer};
    let (shopify, stack, orders) = connected_store().await;
    let api = &stack.client;
    let mug = json!({"id": 7001, "title": "Blue 50% mug", "body_html": "<p>Stoneware.</p>", "handle": "blue-mug",
        "status": "active", "variants": [{"id": 7002, "title": "Default", "price": "12.50", "inventory_quantity": 4}]});
    for (topic, body) in [
        ("orders/create", order(1001, "ann@example.com", 1, &["1Z999"])),
        ("orders/create", order(2001, "bob@example.com", 207_119_551, &["LX42"])),
        ("products/create", mug),
    ] {
        assert_eq!(shopify.send(&Webhook::new(topic, body)).await.0, 200);
    }
    api.get_until(&orders, WAIT, |page| {
        page["orders"].as_array().is_some_and(|o| o.len() == 2)
    })
    .await;

    let model = ModelServer::start(vec![
        Answer::ToolCalls(vec![
            ("order_status".into(), json!({"order_number": "#2001"})),
            ("customer_orders".into(), json!({})),
            ("product_info".into(), json!({"query": "50% MUG"})),
        ]),
        Answer::Text("Your order #1001 shipped with UPS.".into()),
    ])
    .await;
    let config = json!({"engine": "llm", "llm": {"base_url": model.base_url, "model": "acme-chat-1",
        "tools": ["customer_orders", "order_status", "product_info", "order_status"]}});
    let bot = e2e::bots::create_bot(api, "Ava", config).await;
    let shown = api.get(&format!("/api/v1/bots/{bot}")).await;
    assert_eq!(
        shown.json["config"]["llm"]["tools"],
        json!(["customer_orders", "order_status", "product_info"])
    );
    let conversation = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "ann", "channel": "web", "bot_id": bot, "metadata": {"customer": {"email": "ann@example.com"}}}),
        )
        .await;
    let conversation = conversation.json["id"].as_str().unwrap().to_owned();
    let sent = e2e::bots::ask(api, &conversation, "Where is order #2001? And do you sell mugs?").await;
    assert_eq!(sent.json["reply"]["content"], "Your order #1001 shipped with UPS.");
    assert_eq!(
        sent.json["reply"]["metadata"]["tools_called"],
        json!(["order_status", "customer_orders", "product_info"])
    );

    let received = model.received();
    let offered: Vec<&str> = received[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["customer_orders", "order_status", "product_info"]);
    let answers = tool_answers(&received);
    assert_eq!(
        answers[0]["error"], "this customer has no order with that number",
        "Bob's order is not Ann's to see"
    );
    let orders = answers[1]["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["number"], "#1001");
    assert_eq!(orders[0]["tracking"][0]["number"], "1Z999");
    assert!(!answers[1].to_string().contains("LX42"));
    assert_eq!(answers[2]["products"][0]["title"], "Blue 50% mug");
    assert_eq!(answers[2]["products"][0]["price_min"], "12.50");

    // Without a verified customer only the catalog is offered.
    let anonymous = e2e::bots::conversation_with(api, &bot).await;
    e2e::bots::ask(api, &anonymous, "Do you sell mugs?").await;
    let last = model.received().last().unwrap().body.clone();
    let offered: Vec<&str> = last["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["product_info"]);
    stack.stop().await;
}
