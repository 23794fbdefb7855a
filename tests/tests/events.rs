//! Events from state changes: recorded with the change, published to the
//! events exchange in order, and never lost while RabbitMQ is away.

use std::time::Duration;

use e2e::{Options, TestStack, event_tap::EventTap, tcp_proxy::TcpProxy};
use serde_json::{Value, json};

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["event"].as_str().unwrap_or("?")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_state_change_publishes_its_event_in_order() {
    let stack = TestStack::start().await;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let api = &stack.client;

    let conv = api.create_conversation("customer-9").await;
    let user = api.send_message(&conv, "where is my order?").await;
    let bot = api
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"role": "bot", "content": "on its way"}),
        )
        .await;
    api.post(
        &format!("/api/v1/conversations/{conv}/messages"),
        json!({"role": "system", "content": "note"}),
    )
    .await;
    api.patch(
        &format!("/api/v1/conversations/{conv}"),
        json!({"status": "waiting", "metadata": {"vip": true}}),
    )
    .await;
    api.patch(&format!("/api/v1/conversations/{conv}"), json!({"status": "ended"}))
        .await;

    let events = tap.take(6, Duration::from_secs(10)).await;
    assert_eq!(
        types(&events),
        [
            "conversation.started",
            "message.received",
            "message.sent",
            "conversation.updated",
            "conversation.updated",
            "conversation.ended"
        ]
    );
    for event in &events {
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(event["version"], "1.0");
        assert_eq!(event["workspace_id"], stack.workspace_id.as_str());
        assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(events[0]["data"]["conversation"]["id"], conv.as_str());
    assert_eq!(events[1]["data"]["message"]["id"], user["id"]);
    assert_eq!(events[1]["data"]["message"]["content"], "where is my order?");
    assert_eq!(events[2]["data"]["message"]["id"], bot.json["message"]["id"]);
    let changes = &events[3]["data"]["changes"];
    assert!(
        changes
            .as_array()
            .unwrap()
            .contains(&json!({"field": "status", "old_value": "active", "new_value": "waiting"}))
    );
    assert!(
        changes
            .as_array()
            .unwrap()
            .contains(&json!({"field": "metadata", "old_value": {}, "new_value": {"vip": true}}))
    );
    assert_eq!(
        events[4]["data"]["changes"],
        json!([{"field": "status", "old_value": "waiting", "new_value": "ended"}])
    );

    // A refused change records no event.
    let refused = api
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"role": "user", "content": "hello?"}),
        )
        .await;
    assert_eq!(refused.status, 400);
    tap.expect_none(Duration::from_millis(500)).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_in_the_outbox_while_rabbitmq_is_unreachable_and_flow_in_order_after() {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let stack = TestStack::start_with(Options {
        chatbot_amqp_url: Some(format!("amqp://guest:guest@{}/%2f", proxy.addr)),
        ..Options::default()
    })
    .await;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let api = &stack.client;
    let first = api.create_conversation("before the outage").await;
    let before = tap.take(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(before["data"]["conversation"]["id"], first.as_str());

    proxy.cut();
    let conv = api.create_conversation("during the outage").await;
    for i in 0..5 {
        api.send_message(&conv, &format!("message {i}")).await;
    }
    tap.expect_none(Duration::from_secs(1)).await;

    proxy.restore();
    // Delivery is at least once: if the cut fell between the broker's
    // confirm and the relay recording it, the first event comes again.
    // Consumers deduplicate by id, and so does this test.
    let mut events = Vec::new();
    let mut seen = std::collections::HashSet::from([before["id"].as_str().unwrap().to_owned()]);
    while events.len() < 6 {
        let event = tap.take(1, Duration::from_secs(30)).await.remove(0);
        if seen.insert(event["id"].as_str().unwrap().to_owned()) {
            events.push(event);
        }
    }
    assert_eq!(events[0]["event"], "conversation.started");
    let contents: Vec<&str> = events[1..]
        .iter()
        .map(|e| e["data"]["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["message 0", "message 1", "message 2", "message 3", "message 4"],
        "in commit order"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_service_replicas_relay_each_event_once_and_in_order() {
    let stack = TestStack::start_with(Options {
        chatbot_replicas: 2,
        ..Options::default()
    })
    .await;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let conv = stack.client.create_conversation("u").await;
    for i in 0..20 {
        stack.client.send_message(&conv, &format!("m{i}")).await;
    }
    let events = tap.take(21, Duration::from_secs(15)).await;
    let ids: std::collections::HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 21, "no event published twice");
    let contents: Vec<String> = events[1..]
        .iter()
        .map(|e| e["data"]["message"]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(contents, (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    tap.expect_none(Duration::from_millis(500)).await;
    stack.stop().await;
}
