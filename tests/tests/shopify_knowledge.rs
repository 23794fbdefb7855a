//! A store's products as knowledge of the bots linked to it: each active
//! product one item kept up to date through the store's webhooks, removed
//! with the product or when the bot is unlinked or the store disconnected,
//! answered from once trained, and, when asked for, trained and deployed
//! by itself once the products are quiet.

use std::time::Duration;

use e2e::{
    Options, TestStack,
    bots::{ask, conversation_with, create_bot, train_and_deploy},
    shopify_server::{CLIENT_SECRET, SHOP, ShopifyServer, Webhook},
};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "shpat_admin_token";

async fn store_and_stack() -> (ShopifyServer, TestStack) {
    let shopify = ShopifyServer::start(ADMIN_TOKEN, "shprt_unused", Duration::ZERO).await;
    let stack = TestStack::start_with(Options {
        shopify_url: Some(shopify.url.clone()),
        ..Options::default()
    })
    .await;
    (shopify, stack)
}

/// Connects the store with `settings` added to its own; the integration id.
async fn connect(stack: &TestStack, settings: Value) -> String {
    let mut all = json!({"shop": SHOP});
    all.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let request = json!({"kind": "shopify", "name": "Acme store", "settings": all,
        "credentials": {"access_token": ADMIN_TOKEN, "client_secret": CLIENT_SECRET}});
    let created = stack.client.post("/api/v1/integrations", request).await;
    assert_eq!(created.status, 200, "{}", created.text);
    created.json["id"].as_str().unwrap().to_owned()
}

fn product(id: i64, title: &str, price: &str, quantity: i64, status: &str) -> Value {
    json!({
        "id": id, "title": title, "body_html": format!("<p>The {title} is made of stoneware.</p>"),
        "handle": title.to_lowercase().replace(' ', "-"), "status": status,
        "variants": [{"id": id + 1, "title": "Default", "price": price, "inventory_item_id": id + 100, "inventory_quantity": quantity}]
    })
}

fn text(item: &Value) -> &str {
    item["document"]["text"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_bot_learns_each_active_product_and_answers_from_it() {
    let (shopify, stack) = store_and_stack().await;
    let api = &stack.client;
    let bot = create_bot(api, "Shop assistant", json!({})).await;
    let id = connect(&stack, json!({"bot_ids": [bot]})).await;

    let mug = product(7001, "Blue mug", "12.50", 5, "active");
    let draft = product(7002, "Secret teapot", "30.00", 1, "draft");
    for body in [mug, draft] {
        assert_eq!(shopify.send(&Webhook::new("products/create", body)).await.0, 200);
    }
    let items = e2e::bots::knowledge_until(api, &bot, |items| items.len() == 1).await;
    let item = &items[0];
    assert_eq!(item["source"], format!("shopify:{id}"));
    assert_eq!(item["document"]["title"], "Blue mug");
    assert_eq!(
        item["document"]["source_url"],
        format!("https://{SHOP}/products/blue-mug")
    );
    assert!(
        text(item).contains("Price: 12.50.") && text(item).contains("In stock: 5 available."),
        "{item}"
    );
    let item_id = item["id"].as_str().unwrap().to_owned();

    let level =
        json!({"inventory_item_id": 7101, "location_id": 1, "available": 0, "updated_at": "2030-01-01T00:00:00Z"});
    assert_eq!(
        shopify.send(&Webhook::new("inventory_levels/update", level)).await.0,
        200
    );
    let items = e2e::bots::knowledge_until(api, &bot, |items| {
        items.len() == 1 && text(&items[0]).contains("Out of stock")
    })
    .await;
    assert_eq!(items[0]["id"], item_id.as_str(), "the same item, updated in place");

    train_and_deploy(api, &bot).await;
    let conversation = conversation_with(api, &bot).await;
    let sent = ask(api, &conversation, "Is the blue mug in stock?").await;
    let reply = &sent.json["reply"];
    assert_eq!(
        reply["metadata"]["candidates"][0]["item_id"],
        item_id.as_str(),
        "{}",
        sent.text
    );

    let deleted = Webhook::new("products/delete", json!({"id": 7001}));
    assert_eq!(shopify.send(&deleted).await.0, 200);
    e2e::bots::knowledge_until(api, &bot, <[Value]>::is_empty).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlinking_forgets_relinking_relearns_and_disconnecting_forgets_again() {
    let (shopify, stack) = store_and_stack().await;
    let api = &stack.client;
    let bot = create_bot(api, "Shop assistant", json!({})).await;
    let manual = api
        .post(
            &format!("/api/v1/bots/{bot}/knowledge"),
            json!({"faq": {"question": "Opening hours?", "answer": "9 to 5."}}),
        )
        .await;
    assert_eq!(manual.status, 200, "{}", manual.text);
    let id = connect(&stack, json!({"bot_ids": [bot]})).await;
    for n in 0..3 {
        let body = product(8000 + n * 10, &format!("Mug {n}"), "9.00", 3, "active");
        assert_eq!(shopify.send(&Webhook::new("products/create", body)).await.0, 200);
    }
    e2e::bots::knowledge_until(api, &bot, |items| items.len() == 4).await;

    let path = format!("/api/v1/integrations/{id}");
    let unlinked = api.patch(&path, json!({"settings": {"bot_ids": []}})).await;
    assert_eq!(unlinked.status, 200, "{}", unlinked.text);
    assert_eq!(unlinked.json["settings"]["bot_ids"], json!([]));
    let left = e2e::bots::knowledge_until(api, &bot, |items| items.len() == 1).await;
    assert_eq!(
        left[0]["faq"]["question"], "Opening hours?",
        "items of its own are kept"
    );

    let relinked = api.patch(&path, json!({"settings": {"bot_ids": [bot]}})).await;
    assert_eq!(relinked.status, 200, "{}", relinked.text);
    e2e::bots::knowledge_until(api, &bot, |items| items.len() == 4).await;

    assert_eq!(api.delete(&path).await.status, 200);
    e2e::bots::knowledge_until(api, &bot, |items| items.len() == 1).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_of_another_workspace_or_none_at_all_cannot_be_linked() {
    let (_shopify, stack) = store_and_stack().await;
    let (other, _) = stack.create_workspace("another workspace").await;
    let foreign = create_bot(&other, "Theirs", json!({})).await;
    for bot_ids in [json!([foreign]), json!(["bot_doesnotexist0000000"])] {
        let request = json!({"kind": "shopify", "name": "Acme", "settings": {"shop": SHOP, "bot_ids": bot_ids},
            "credentials": {"access_token": ADMIN_TOKEN}});
        let refused = stack.client.post("/api/v1/integrations", request).await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert_eq!(refused.json["field"], "settings.bot_ids", "{}", refused.text);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_retrains_and_deploys_the_bot_once_it_is_quiet() {
    let (shopify, stack) = store_and_stack().await;
    let api = &stack.client;
    let bot = create_bot(api, "Shop assistant", json!({})).await;
    connect(&stack, json!({"bot_ids": [bot], "retrain_after_seconds": 2})).await;
    for n in 0..3 {
        let body = product(9000 + n * 10, &format!("Plate {n}"), "4.00", 10, "active");
        assert_eq!(shopify.send(&Webhook::new("products/create", body)).await.0, 200);
    }
    let bot_path = format!("/api/v1/bots/{bot}");
    let deployed = api
        .get_until(&bot_path, Duration::from_secs(60), |b| {
            b["deployed_version"].as_i64() >= Some(1)
        })
        .await;
    assert_eq!(deployed["deployed_version"], 1);
    let jobs = api.get(&format!("/api/v1/bots/{bot}/training-jobs")).await;
    assert_eq!(
        jobs.json["jobs"].as_array().unwrap().len(),
        1,
        "one training for the burst: {}",
        jobs.text
    );
    let conversation = conversation_with(api, &bot).await;
    let sent = ask(api, &conversation, "How much is plate 2?").await;
    assert!(
        sent.json["reply"]["metadata"]["candidates"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{}",
        sent.text
    );
    stack.stop().await;
}
