//! The `llm` reply engine against a local server speaking the OpenAI wire
//! format: prompt assembly, the API key reference, streaming through the
//! gateway as Server-Sent Events, retries, and the fallback on failure.

use std::time::Duration;

use e2e::{
    TestStack,
    bots::{add_faqs, ask, conversation_with, create_bot, train_and_deploy},
    event_tap::EventTap,
    model_server::{Answer, ModelServer},
};
use reqwest::Method;
use serde_json::{Value, json};

const FALLBACK: &str = "One moment, a colleague will take over.";

fn llm_config(base_url: &str) -> Value {
    json!({
        "engine": "llm",
        "persona": "You are Ava, the support assistant of Acme Shop.",
        "fallback_message": FALLBACK,
        "llm": {"base_url": base_url, "model": "acme-chat-1", "api_key_ref": e2e::MODEL_KEY_REF,
                "temperature": 0.25, "max_tokens": 200}
    })
}

/// A bot on the model server at `base_url`, its API key the workspace's
/// own secret bound to that server.
async fn llm_bot(api: &e2e::Client, base_url: &str) -> String {
    let secret = json!({"name": e2e::MODEL_KEY_REF, "value": e2e::MODEL_KEY, "origin": base_url});
    let mut created = api.post("/api/v1/secrets", secret.clone()).await;
    if created.status == 409 {
        created = api
            .put(&format!("/api/v1/secrets/{}", e2e::MODEL_KEY_REF), secret)
            .await;
    }
    assert!(matches!(created.status, 200 | 201), "{}", created.text);
    create_bot(api, "Ava", llm_config(base_url)).await
}

/// Sends with `Accept: text/event-stream`; the response, body unread.
async fn send_streaming(api: &e2e::Client, conversation: &str, text: &str) -> reqwest::Response {
    api.request(Method::POST, &format!("/api/v1/conversations/{conversation}/messages"))
        .header("accept", "text/event-stream")
        .json(&json!({"role": "user", "content": text}))
        .send()
        .await
        .expect("the gateway answers")
}

/// The (event, data) pairs of a Server-Sent Events body.
fn parse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = "message".to_owned();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            (!data.is_empty()).then(|| (name, serde_json::from_str(&data).expect("event data is JSON")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_carries_persona_knowledge_and_history_and_the_answer_is_stored() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let model = ModelServer::start(vec![
        Answer::Text("Hello! How can I help?".into()),
        Answer::Text("Refunds reach your card within 5 to 10 days.".into()),
    ])
    .await;
    let bot = llm_bot(api, &model.base_url).await;
    let fetched = api.get(&format!("/api/v1/bots/{bot}")).await;
    assert_eq!(fetched.json["config"]["llm"]["api_key_ref"], e2e::MODEL_KEY_REF);
    assert!(!fetched.text.contains(e2e::MODEL_KEY), "the key itself is never shown");
    let ids = add_faqs(
        api,
        &bot,
        &[(
            "When will my refund arrive?".into(),
            "Refunds take 5 to 10 business days.".into(),
        )],
    )
    .await;
    train_and_deploy(api, &bot).await;

    let conv = conversation_with(api, &bot).await;
    ask(api, &conv, "hi there").await;
    let sent = ask(api, &conv, "when do I get my refund?").await;
    let reply = &sent.json["reply"];
    assert_eq!(reply["content"], "Refunds reach your card within 5 to 10 days.");
    assert_eq!(reply["metadata"]["engine"], "llm");
    assert_eq!(reply["metadata"]["model"], "acme-chat-1");
    assert_eq!(reply["metadata"]["citations"], json!([ids[0]]));
    assert_eq!(reply["metadata"]["usage"]["total_tokens"].as_f64(), Some(15.0));

    let received = model.received();
    assert_eq!(received.len(), 2);
    let request = &received[1];
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {}", e2e::MODEL_KEY).as_str())
    );
    assert_eq!(request.body["model"], "acme-chat-1");
    assert_eq!(request.body["max_tokens"], 200);
    assert!((request.body["temperature"].as_f64().unwrap() - 0.25).abs() < 1e-6);
    assert_eq!(request.body["stream"], false);
    let messages = request.body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.starts_with("You are Ava"), "{system}");
    assert!(
        system.contains("Refunds take 5 to 10 business days."),
        "retrieved knowledge is given: {system}"
    );
    let history: Vec<(&str, &str)> = messages[1..]
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [
            ("user", "hi there"),
            ("assistant", "Hello! How can I help?"),
            ("user", "when do I get my refund?")
        ]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_stream_through_the_gateway_as_server_sent_events() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let pieces = ["Your ", "order ", "ships ", "today."].map(String::from).to_vec();
    let model = ModelServer::start(vec![Answer::Stream {
        pieces,
        pause: Duration::from_millis(20),
    }])
    .await;
    let bot = llm_bot(api, &model.base_url).await;
    let conv = conversation_with(api, &bot).await;

    let response = send_streaming(api, &conv, "when does my order ship?").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message"), "{names:?}");
    assert_eq!(names.last(), Some(&"reply"), "{names:?}");
    assert!(names[1..names.len() - 1].iter().all(|n| *n == "delta"), "{names:?}");
    assert_eq!(events[0].1["content"], "when does my order ship?");
    let streamed: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, "Your order ships today.");
    let reply = &events.last().unwrap().1;
    assert_eq!(reply["content"], "Your order ships today.");
    assert_eq!(model.received()[0].body["stream"], true, "the model is asked to stream");

    let stored = api.get(&format!("/api/v1/conversations/{conv}/messages")).await;
    let contents: Vec<&str> = stored.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["when does my order ship?", "Your order ships today."]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_still_finds_the_whole_reply_stored() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let pieces: Vec<String> = (0..12).map(|i| format!("part{i} ")).collect();
    let whole: String = pieces.concat();
    let model = ModelServer::start(vec![Answer::Stream {
        pieces,
        pause: Duration::from_millis(60),
    }])
    .await;
    let bot = llm_bot(api, &model.base_url).await;
    let conv = conversation_with(api, &bot).await;

    let mut response = send_streaming(api, &conv, "tell me everything").await;
    let first = response.chunk().await.expect("a first chunk");
    assert!(first.is_some());
    drop(response);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = api.get(&format!("/api/v1/conversations/{conv}/messages")).await;
        let messages = stored.json["messages"].as_array().unwrap().clone();
        if messages.len() == 2 {
            assert_eq!(messages[1]["content"], whole.as_str());
            assert_eq!(messages[1]["role"], "bot");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reply was never stored: {}",
            stored.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_server_errors_and_timeouts_are_retried() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let model = ModelServer::start(vec![
        Answer::Error {
            status: 429,
            message: "Rate limit reached for requests".into(),
            retry_after: Some(0),
        },
        Answer::Hang,
        Answer::Text("Third time lucky.".into()),
    ])
    .await;
    let bot = llm_bot(api, &model.base_url).await;
    let conv = conversation_with(api, &bot).await;
    let sent = ask(api, &conv, "are you there?").await;
    assert_eq!(sent.json["reply"]["content"], "Third time lucky.");
    assert_eq!(model.received().len(), 3, "one 429, one time-out, one answer");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_model_keeps_failing_the_bot_sends_the_fallback_and_hands_off() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let model = ModelServer::start(vec![Answer::Error {
        status: 503,
        message: "The engine is currently overloaded".into(),
        retry_after: None,
    }])
    .await;
    let bot = llm_bot(api, &model.base_url).await;
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let conv = conversation_with(api, &bot).await;
    // Subscribed first, so its start is seen however late it is relayed.
    tap.skip_until("conversation.started", Duration::from_secs(10)).await;

    let sent = ask(api, &conv, "where is my order ORD-123?").await;
    assert_eq!(
        sent.json["message"]["content"], "where is my order ORD-123?",
        "the user's message is kept"
    );
    let reply = &sent.json["reply"];
    assert_eq!(reply["content"], FALLBACK);
    let reason = reply["metadata"]["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("503") && reason.contains("overloaded"), "{reason}");
    assert!(!sent.text.contains(e2e::MODEL_KEY));
    assert_eq!(model.received().len(), 3, "a bounded number of attempts");
    assert_eq!(
        api.get(&format!("/api/v1/conversations/{conv}")).await.json["status"],
        "waiting"
    );

    let events = tap.take(4, Duration::from_secs(10)).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "message.received",
            "message.sent",
            "message.failed",
            "conversation.updated"
        ]
    );
    assert_eq!(events[2]["data"]["message"]["content"], "where is my order ORD-123?");
    assert!(events[2]["data"]["reason"].as_str().unwrap().contains("503"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_servers_on_internal_addresses_are_refused_unless_allowed() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let bot = llm_bot(api, "http://169.254.169.254/v1").await;
    let conv = conversation_with(api, &bot).await;
    let sent = ask(api, &conv, "hello?").await;
    assert_eq!(sent.json["reply"]["content"], FALLBACK);
    let reason = sent.json["reply"]["metadata"]["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("refused"), "{reason}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_server_quoting_the_api_key_in_an_error_never_gets_it_stored() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let model = ModelServer::start(vec![Answer::Error {
        status: 401,
        message: format!("Incorrect API key provided: {}", e2e::MODEL_KEY),
        retry_after: None,
    }])
    .await;
    let bot = llm_bot(api, &model.base_url).await;
    let conv = conversation_with(api, &bot).await;
    let sent = ask(api, &conv, "hello?").await;
    assert_eq!(sent.json["reply"]["content"], FALLBACK);
    let reason = sent.json["reply"]["metadata"]["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("401") && reason.contains("[redacted]"), "{reason}");
    assert!(!sent.text.contains(e2e::MODEL_KEY));
    assert_eq!(model.received().len(), 1, "a 401 is not retried");
    let stored = api.get(&format!("/api/v1/conversations/{conv}/messages")).await;
    assert!(!stored.text.contains(e2e::MODEL_KEY));
    stack.stop().await;
}
