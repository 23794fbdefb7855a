//! Bots through the gateway: typed configuration, validation, training
//! versions. Knowledge, deployment and replies are in `knowledge.rs`.

use e2e::TestStack;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_is_created_configured_and_trained() {
    let stack = TestStack::start().await;
    let api = &stack.client;

    let created = api
        .post(
            "/api/v1/bots",
            json!({"name": "Support", "description": "Answers order questions"}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("bot_"));
    assert_eq!(
        created.json["config"]["engine"], "knowledge",
        "a new bot gets the default engine"
    );
    assert_eq!(created.json["config"]["language"], "en");
    assert!(!created.json["config"]["fallback_message"].as_str().unwrap().is_empty());
    assert_eq!(created.json["latest_version"], 0);

    let configured = api
        .put(
            &format!("/api/v1/bots/{id}/config"),
            json!({
                "persona": "You are a friendly shop assistant.",
                "engine": "llm",
                "handoff_threshold": 0.6,
                "language": "pt-BR",
                "greeting": "Olá!",
                "llm": {"base_url": "http://localhost:11434/v1/", "model": "llama3", "temperature": 0.2}
            }),
        )
        .await;
    assert_eq!(configured.status, 200, "{}", configured.text);
    let config = &configured.json["config"];
    assert_eq!(config["engine"], "llm");
    assert_eq!(config["language"], "pt-BR");
    assert_eq!(
        config["llm"]["base_url"], "http://localhost:11434/v1",
        "trailing slash normalised"
    );
    assert_eq!(config["llm"]["max_tokens"], 512, "default filled in");
    assert!((config["handoff_threshold"].as_f64().unwrap() - 0.6).abs() < 1e-6);
    assert_ne!(configured.json["updated_at"], created.json["updated_at"]);

    let fetched = api.get(&format!("/api/v1/bots/{id}")).await;
    assert_eq!(
        fetched.json["config"], configured.json["config"],
        "the config is stored as sent"
    );

    let first = api.post(&format!("/api/v1/bots/{id}/train"), json!({})).await;
    assert_eq!(first.status, 202, "training starts in the background: {}", first.text);
    assert!(first.json["id"].as_str().unwrap().starts_with("job_"));
    assert_eq!(first.json["bot_id"], id.as_str());
    assert_eq!(first.json["version"], 1);
    assert_eq!(first.json["status"], "queued");
    let second = api.post(&format!("/api/v1/bots/{id}/train"), json!({})).await;
    assert_eq!(second.json["version"], 2, "each training makes a new version");
    assert_eq!(api.get(&format!("/api/v1/bots/{id}")).await.json["latest_version"], 2);

    api.post("/api/v1/bots/bot_nope/train", json!({}))
        .await
        .assert_problem(404, "not-found");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bot_configs_name_the_field() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let id = api.post("/api/v1/bots", json!({"name": "b"})).await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/bots/{id}/config");
    for (config, field) in [
        (json!({"engine": "magic"}), "config.engine"),
        (json!({"handoff_threshold": 2}), "config.handoff_threshold"),
        (json!({"language": "not a language"}), "config.language"),
        (json!({"engine": "llm"}), "config.llm"),
        (
            json!({"engine": "llm", "llm": {"base_url": "file:///etc", "model": "m"}}),
            "config.llm.base_url",
        ),
        (
            json!({"engine": "llm", "llm": {"base_url": "http://m", "model": ""}}),
            "config.llm.model",
        ),
        (
            json!({"engine": "llm", "llm": {"base_url": "http://m", "model": "m", "temperature": 3}}),
            "config.llm.temperature",
        ),
        (
            json!({"engine": "llm", "llm": {"base_url": "http://m", "model": "m", "max_tokens": 100000}}),
            "config.llm.max_tokens",
        ),
        (
            json!({"engine": "llm", "llm": {"base_url": "http://m", "model": "m", "api_key_ref": "../etc/passwd"}}),
            "config.llm.api_key_ref",
        ),
        (
            json!({"engine": "llm", "llm": {"base_url": "http://m", "model": "m", "api_key_ref": "not-held"}}),
            "config.llm.api_key_ref",
        ),
    ] {
        let reply = api.put(&path, config).await;
        reply.assert_problem(400, "invalid-argument");
        assert_eq!(reply.json["field"], field, "{}", reply.text);
    }
    let wrong_type = api.put(&path, json!({"handoff_threshold": "high"})).await;
    wrong_type.assert_problem(400, "invalid-argument");

    for (body, field) in [(json!({}), "name"), (json!({"name": "x".repeat(101)}), "name")] {
        let reply = api.post("/api/v1/bots", body).await;
        reply.assert_problem(400, "invalid-argument");
        assert_eq!(reply.json["field"], field);
    }
    assert_eq!(
        api.get(&format!("/api/v1/bots/{id}")).await.json["config"]["engine"],
        "knowledge",
        "nothing changed"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_are_listed_newest_first_in_pages() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(api.post("/api/v1/bots", json!({"name": format!("bot {i}")})).await.json["id"].clone());
    }
    ids.reverse();
    let first = api.get("/api/v1/bots?limit=4").await;
    let second = api
        .get(&format!(
            "/api/v1/bots?limit=4&cursor={}",
            first.json["next_cursor"].as_str().unwrap()
        ))
        .await;
    let mut seen: Vec<_> = first.json["bots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].clone())
        .collect();
    seen.extend(second.json["bots"].as_array().unwrap().iter().map(|b| b["id"].clone()));
    assert_eq!(seen, ids);
    assert_eq!(second.json["next_cursor"], "");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_can_belong_to_a_bot_of_its_workspace() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let bot = api.post("/api/v1/bots", json!({"name": "b"})).await.json["id"].clone();
    let conv = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "u", "channel": "sms", "bot_id": bot}),
        )
        .await;
    assert_eq!(conv.status, 200, "{}", conv.text);
    assert_eq!(conv.json["bot_id"], bot);
    stack.stop().await;
}
