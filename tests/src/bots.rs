//! Setting up bots through the REST API: knowledge, training, deployment,
//! and asking them questions.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Client, Reply};

pub async fn create_bot(api: &Client, name: &str, config: Value) -> String {
    let created = api.post("/api/v1/bots", json!({"name": name, "config": config})).await;
    assert_eq!(created.status, 200, "{}", created.text);
    created.json["id"].as_str().expect("a bot id").to_owned()
}

/// Adds FAQ pairs in batches; the new items' ids, in order.
pub async fn add_faqs(api: &Client, bot: &str, pairs: &[(String, String)]) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in pairs.chunks(1000) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|(q, a)| json!({"faq": {"question": q, "answer": a}}))
            .collect();
        ids.extend(add_items(api, bot, items).await);
    }
    ids
}

pub async fn add_items(api: &Client, bot: &str, items: Vec<Value>) -> Vec<String> {
    let added = api
        .post(
            &format!("/api/v1/bots/{bot}/knowledge:batchCreate"),
            json!({"items": items}),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.text);
    added.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().expect("an item id").to_owned())
        .collect()
}

/// Starts training (202) and waits for the job to finish; the finished job.
pub async fn train(api: &Client, bot: &str) -> Value {
    train_within(api, bot, Duration::from_secs(120)).await
}

/// [`train`], for a corpus that takes longer than tests' usual two minutes.
pub async fn train_within(api: &Client, bot: &str, within: Duration) -> Value {
    let started = api.post(&format!("/api/v1/bots/{bot}/train"), json!({})).await;
    assert_eq!(started.status, 202, "training answers 202 Accepted: {}", started.text);
    let job_id = started.json["id"].as_str().expect("a job id").to_owned();
    wait_for_job(api, bot, &job_id, within).await
}

pub async fn wait_for_job(api: &Client, bot: &str, job_id: &str, within: Duration) -> Value {
    let path = format!("/api/v1/bots/{bot}/training-jobs/{job_id}");
    api.get_until(&path, within, |job| {
        matches!(job["status"].as_str(), Some("succeeded" | "failed"))
    })
    .await
}

/// Deploys `version` (0: the newest trained one).
pub async fn deploy(api: &Client, bot: &str, version: i64) -> Reply {
    api.post(&format!("/api/v1/bots/{bot}/deploy"), json!({"version": version}))
        .await
}

/// Trains and deploys; the deployed version.
pub async fn train_and_deploy(api: &Client, bot: &str) -> i64 {
    let job = train(api, bot).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let deployed = deploy(api, bot, 0).await;
    assert_eq!(deployed.status, 200, "{}", deployed.text);
    deployed.json["deployed_version"].as_i64().expect("a version")
}

pub async fn conversation_with(api: &Client, bot: &str) -> String {
    let conv = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "customer-1", "channel": "web", "bot_id": bot}),
        )
        .await;
    assert_eq!(conv.status, 200, "{}", conv.text);
    conv.json["id"].as_str().expect("a conversation id").to_owned()
}

/// Sends a user message; the whole send response.
pub async fn ask(api: &Client, conversation: &str, text: &str) -> Reply {
    let sent = api
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            json!({"role": "user", "content": text}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    sent
}

/// Opens a conversation with `bot` for the verified `customer` (its
/// `metadata.customer`), asks `text`, and returns the bot's answer.
pub async fn ask_as(api: &Client, bot: &str, customer: Value, text: &str) -> String {
    let created = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "shopper", "channel": "web", "bot_id": bot, "metadata": {"customer": customer}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let conversation = created.json["id"].as_str().expect("a conversation id").to_owned();
    let sent = ask(api, &conversation, text).await;
    sent.json["reply"]["content"].as_str().unwrap_or_default().to_owned()
}

/// The bot's knowledge items once `done` holds of them (within 15 s).
pub async fn knowledge_until(api: &Client, bot: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let path = format!("/api/v1/bots/{bot}/knowledge");
    let listed = api
        .get_until(&path, Duration::from_secs(15), |page| {
            page["items"].as_array().is_some_and(|items| done(items))
        })
        .await;
    listed["items"].as_array().expect("a list of items").clone()
}
