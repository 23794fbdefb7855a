//! Messages through the gateway: ordering, pagination by sequence,
//! idempotent send, and the ended-conversation rule.

use e2e::TestStack;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_keep_a_stable_per_conversation_order() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let conv = api.create_conversation("u").await;
    let path = format!("/api/v1/conversations/{conv}/messages");
    let roles = ["user", "bot", "agent", "system", "user"];
    for (i, role) in roles.iter().enumerate() {
        let sent = api
            .post(
                &path,
                json!({"role": role, "content": format!("message {i}"), "metadata": {"i": i}}),
            )
            .await;
        assert_eq!(sent.status, 200, "{}", sent.text);
        let message = &sent.json["message"];
        assert!(message["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(
            message["sequence"],
            (i + 1).to_string(),
            "sequence is 1-based, int64 as a JSON string"
        );
        assert_eq!(message["role"], *role);
        assert_eq!(message["conversation_id"], conv.as_str());
        assert_eq!(sent.json["replayed"], false);
    }

    let listed = api.get(&path).await;
    let contents: Vec<_> = listed.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(
        contents,
        (0..5).map(|i| json!(format!("message {i}"))).collect::<Vec<_>>()
    );

    let first_id = listed.json["messages"][0]["id"].as_str().unwrap();
    let one = api.get(&format!("{path}/{first_id}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json, listed.json["messages"][0]);
    api.get(&format!("{path}/msg_doesnotexist"))
        .await
        .assert_problem(404, "not-found");

    let conversation = api.get(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(conversation.json["message_count"], "5");
    assert_eq!(
        conversation.json["last_activity"],
        listed.json["messages"][4]["created_at"]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_pages_follow_the_sequence_without_gaps() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let conv = api.create_conversation("u").await;
    for i in 0..12 {
        api.send_message(&conv, &format!("m{i}")).await;
    }
    let mut cursor = String::new();
    let mut sequences = Vec::new();
    loop {
        let page = api
            .get(&format!(
                "/api/v1/conversations/{conv}/messages?limit=5&cursor={cursor}"
            ))
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        for m in page.json["messages"].as_array().unwrap() {
            sequences.push(m["sequence"].as_str().unwrap().parse::<i64>().unwrap());
        }
        cursor = page.json["next_cursor"].as_str().unwrap().to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(sequences, (1..=12).collect::<Vec<_>>());
    stack.stop().await;
}

/// Sends race to one conversation: each is stored once, numbered without
/// gaps or repeats, and counted, as a client sending from several tabs
/// would expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_to_one_conversation_are_each_stored_once_in_sequence() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let conv = api.create_conversation("u").await;
    let sends = (0..20).map(|i| {
        let (api, conv) = (api.clone(), conv.clone());
        tokio::spawn(async move { api.send_message(&conv, &format!("tab {i}")).await })
    });
    let mut returned = Vec::new();
    for sent in futures_util::future::join_all(sends).await {
        let message = sent.expect("a send task");
        returned.push(message["sequence"].as_str().unwrap().parse::<i64>().unwrap());
    }
    returned.sort_unstable();
    assert_eq!(returned, (1..=20).collect::<Vec<_>>());

    let listed = api
        .get(&format!("/api/v1/conversations/{conv}/messages?limit=50"))
        .await;
    let mut contents: Vec<String> = listed.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    contents.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("tab {i}")).collect();
    expected.sort();
    assert_eq!(contents, expected);
    let conversation = api.get(&format!("/api/v1/conversations/{conv}")).await;
    assert_eq!(conversation.json["message_count"], "20");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_with_the_same_idempotency_key_creates_nothing() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let conv = api.create_conversation("u").await;

    let first = api.send_with_key(&conv, "order-7-msg", "where is my order?").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["replayed"], false);
    let retry = api.send_with_key(&conv, "order-7-msg", "where is my order?").await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json["replayed"], true);
    assert_eq!(
        retry.json["message"], first.json["message"],
        "the first message comes back"
    );

    // Concurrent retries also converge on one message.
    let racers = (0..5).map(|_| api.send_with_key(&conv, "burst-key", "same"));
    let replies = futures_util::future::join_all(racers).await;
    let ids: std::collections::HashSet<_> = replies
        .iter()
        .map(|r| r.json["message"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "five concurrent sends with one key store one message");

    let reuse = api.send_with_key(&conv, "order-7-msg", "something else").await;
    reuse.assert_problem(409, "already-exists");

    let listed = api.get(&format!("/api/v1/conversations/{conv}/messages")).await;
    assert_eq!(listed.json["messages"].as_array().unwrap().len(), 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_to_an_ended_conversation_is_rejected() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let conv = api.create_conversation("u").await;
    let before = api.send_with_key(&conv, "k1", "hello").await;
    api.patch(&format!("/api/v1/conversations/{conv}"), json!({"status": "ended"}))
        .await;

    let after = api
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"role": "user", "content": "still there?"}),
        )
        .await;
    after.assert_problem(400, "failed-precondition");
    assert!(after.json["detail"].as_str().unwrap().contains("ended"));

    let retry = api.send_with_key(&conv, "k1", "hello").await;
    assert_eq!(
        retry.status, 200,
        "a retry of a message sent before the end still gets its answer"
    );
    assert_eq!(retry.json["message"]["id"], before.json["message"]["id"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_name_the_field() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let conv = api.create_conversation("u").await;
    let path = format!("/api/v1/conversations/{conv}/messages");
    for (body, field) in [
        (json!({"content": "hi"}), "role"),
        (json!({"role": "robot", "content": "hi"}), "role"),
        (json!({"role": "user"}), "content"),
        (json!({"role": "user", "content": "x".repeat(33 * 1024)}), "content"),
    ] {
        let reply = api.post(&path, body).await;
        reply.assert_problem(400, "invalid-argument");
        assert_eq!(reply.json["field"], field);
    }
    api.post(
        "/api/v1/conversations/conv_missing/messages",
        json!({"role": "user", "content": "hi"}),
    )
    .await
    .assert_problem(404, "not-found");
    stack.stop().await;
}
