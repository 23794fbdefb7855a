//! A workspace's model API keys: written once and never shown again,
//! usable by its own bots alone and only toward the origin they are bound
//! to; the operator's keys only where the operator granted them.

use e2e::{
    TestStack,
    bots::{ask, conversation_with, create_bot},
    model_server::{Answer, ModelServer},
};
use serde_json::{Value, json};

fn llm_config(base_url: &str, key: &str) -> Value {
    json!({"engine": "llm", "fallback_message": "A colleague will take over.",
           "llm": {"base_url": base_url, "model": "m", "api_key_ref": key}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_write_only_and_their_names_unique_per_workspace() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let value = "sk-live-4f1c9a7e2b";
    let created = api
        .post(
            "/api/v1/secrets",
            json!({"name": "openai", "value": value, "origin": "https://api.openai.com/v1"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["origin"], "https://api.openai.com");
    let fingerprint = created.json["fingerprint"].as_str().unwrap().to_owned();
    assert!(fingerprint.starts_with("sha256:"), "{fingerprint}");
    for reply in [
        &created,
        &api.get("/api/v1/secrets").await,
        &api.get("/api/v1/secrets/openai").await,
    ] {
        assert!(matches!(reply.status, 200 | 201), "{}", reply.text);
        assert!(!reply.text.contains(value), "the value is never shown: {}", reply.text);
    }
    let listed = api.get("/api/v1/secrets").await;
    assert_eq!(listed.json["secrets"][0]["name"], "openai");

    let again = api
        .post(
            "/api/v1/secrets",
            json!({"name": "openai", "value": "sk-2", "origin": "https://a.example"}),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text);

    let updated = api
        .put(
            "/api/v1/secrets/openai",
            json!({"value": "sk-rotated-8d2e", "origin": "https://api.openai.com"}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_ne!(
        updated.json["fingerprint"],
        fingerprint.as_str(),
        "a new value, a new fingerprint"
    );

    for (body, field) in [
        (
            json!({"name": "../x", "value": "v", "origin": "https://a.example"}),
            "name",
        ),
        (
            json!({"name": "k", "value": "", "origin": "https://a.example"}),
            "value",
        ),
        (
            json!({"name": "k", "value": "a\r\nb", "origin": "https://a.example"}),
            "value",
        ),
        (
            json!({"name": "k", "value": "v", "origin": "ftp://a.example"}),
            "origin",
        ),
        (
            json!({"name": "k", "value": "v", "origin": "https://u:p@a.example"}),
            "origin",
        ),
    ] {
        let refused = api.post("/api/v1/secrets", body).await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert!(refused.text.contains(field), "{field}: {}", refused.text);
    }

    assert_eq!(api.delete("/api/v1/secrets/openai").await.status, 200);
    assert_eq!(api.get("/api/v1/secrets/openai").await.status, 404);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_workspaces_secret_is_never_sent_to_a_model_server() {
    let stack = TestStack::start().await;
    let owner = &stack.client;
    let owners_model = ModelServer::start(vec![Answer::Text("Hello from the owner's model.".into())]).await;
    let key = "sk-owner-only-9b3f";
    let created = owner
        .post(
            "/api/v1/secrets",
            json!({"name": "team-key", "value": key, "origin": owners_model.base_url}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);

    // Another workspace names it, with a model server of its own.
    let (intruder, _) = stack.create_workspace("intruder").await;
    let intruders_model = ModelServer::start(vec![Answer::Text("stolen?".into())]).await;
    let foreign = intruder
        .post(
            "/api/v1/bots",
            json!({"name": "thief", "config": llm_config(&intruders_model.base_url, "team-key")}),
        )
        .await;
    let ghost = intruder
        .post(
            "/api/v1/bots",
            json!({"name": "thief", "config": llm_config(&intruders_model.base_url, "no-such-key")}),
        )
        .await;
    assert_eq!(foreign.status, 400, "{}", foreign.text);
    assert_eq!(
        (foreign.status, foreign.json["detail"].as_str()),
        (
            ghost.status,
            ghost.json["detail"]
                .as_str()
                .map(|d| d.replace("no-such-key", "team-key"))
                .as_deref()
        ),
        "a foreign name and an unknown one get the same answer"
    );
    assert_eq!(intruder.get("/api/v1/secrets/team-key").await.status, 404);
    assert_eq!(intruder.delete("/api/v1/secrets/team-key").await.status, 404);

    // The owner's own bot uses it, but only toward the bound origin.
    let bot = create_bot(owner, "Ava", llm_config(&owners_model.base_url, "team-key")).await;
    let conversation = conversation_with(owner, &bot).await;
    let sent = ask(owner, &conversation, "Hi").await;
    assert_eq!(
        sent.json["reply"]["content"], "Hello from the owner's model.",
        "{}",
        sent.text
    );
    let elsewhere = owner
        .put(
            &format!("/api/v1/bots/{bot}/config"),
            llm_config(&intruders_model.base_url, "team-key"),
        )
        .await;
    assert_eq!(elsewhere.status, 400, "{}", elsewhere.text);
    assert!(elsewhere.text.contains("may only be sent to"), "{}", elsewhere.text);

    // Moving the secret's origin does not move the key with the bot: the
    // reply fails rather than send it to a server the secret is not for.
    let moved = owner
        .put(
            "/api/v1/secrets/team-key",
            json!({"value": key, "origin": "https://elsewhere.example"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    let sent = ask(owner, &conversation, "Still there?").await;
    assert_eq!(
        sent.json["reply"]["content"], "A colleague will take over.",
        "{}",
        sent.text
    );
    let reason = sent.json["reply"]["metadata"]["failure"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("may only be sent to https://elsewhere.example"),
        "{reason}"
    );

    let seen: Vec<_> = owners_model
        .received()
        .into_iter()
        .chain(intruders_model.received())
        .collect();
    assert_eq!(seen.len(), 1, "one request reached a model server: {seen:?}");
    assert_eq!(seen[0].authorization.as_deref(), Some(format!("Bearer {key}").as_str()));
    assert!(
        intruders_model.received().is_empty(),
        "the intruder's server saw nothing"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_key_serves_only_the_workspaces_it_is_granted_to() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let model = ModelServer::start(vec![Answer::Text("Granted.".into())]).await;
    let config = llm_config(&model.base_url, e2e::MODEL_KEY_REF);
    let refused = api.post("/api/v1/bots", json!({"name": "b", "config": config})).await;
    assert_eq!(refused.status, 400, "not granted yet: {}", refused.text);

    stack.grant_model_key(&stack.workspace_id, &model.base_url);
    let bot = create_bot(api, "Ava", config).await;
    let conversation = conversation_with(api, &bot).await;
    assert_eq!(ask(api, &conversation, "Hi").await.json["reply"]["content"], "Granted.");
    let received = model.received();
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(format!("Bearer {}", e2e::MODEL_KEY).as_str())
    );

    let (other, _) = stack.create_workspace("not granted").await;
    let config = llm_config(&model.base_url, e2e::MODEL_KEY_REF);
    let refused = other.post("/api/v1/bots", json!({"name": "b", "config": config})).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    stack.stop().await;
}
