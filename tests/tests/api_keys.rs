//! API keys as a workspace sees them: scopes enforced per route, and keys
//! created, listed and revoked by the workspace itself.

use e2e::{Client, TestStack};
use serde_json::json;

async fn key_with_scopes(stack: &TestStack, scopes: &[&str]) -> Client {
    let reply = stack
        .client
        .post("/api/v1/api-keys", json!({"name": "narrow", "scopes": scopes}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    Client::with_key(&stack.base_url, reply.json["api_key"]["key"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_requires_the_scope_its_proto_declares() {
    let stack = TestStack::start().await;
    let reader = key_with_scopes(&stack, &["read:conversations"]).await;
    assert_eq!(reader.get("/api/v1/conversations").await.status, 200);

    let refused = reader
        .post("/api/v1/conversations", json!({"user_id": "u", "channel": "web"}))
        .await;
    refused.assert_problem(403, "insufficient-scope");
    assert_eq!(
        refused.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"write:conversations\"")
    );
    reader
        .get("/api/v1/bots")
        .await
        .assert_problem(403, "insufficient-scope");
    reader
        .get("/api/v1/analytics/requests")
        .await
        .assert_problem(403, "insufficient-scope");
    reader
        .get("/api/v1/api-keys")
        .await
        .assert_problem(403, "insufficient-scope");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_creates_lists_and_revokes_its_keys() {
    let stack = TestStack::start().await;
    let admin = &stack.client;
    let created = admin
        .post(
            "/api/v1/api-keys",
            json!({"name": "billing sync", "scopes": ["read:bots"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let key = &created.json["api_key"];
    let id = key["id"].as_str().unwrap();
    let secret = key["key"].as_str().unwrap();
    assert_eq!(key["scopes"], json!(["read:bots"]));

    let user = Client::with_key(&stack.base_url, secret);
    assert_eq!(user.get("/api/v1/bots").await.status, 200);

    let listed = admin.get("/api/v1/api-keys").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let entry = listed.json["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(entry["name"], "billing sync");
    assert!(secret.starts_with(entry["prefix"].as_str().unwrap()));
    assert!(!listed.text.contains(secret), "a listed key never shows its secret");
    assert!(entry["revoked_at"].is_null());

    let revoked = admin.delete(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(revoked.json["revoked"], true);
    user.get("/api/v1/bots").await.assert_problem(401, "unauthenticated");
    let relisted = admin.get("/api/v1/api-keys").await;
    let entry = relisted.json["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap()
        .clone();
    assert!(entry["revoked_at"].is_string());

    admin
        .delete("/api/v1/api-keys/key_missing")
        .await
        .assert_problem(404, "not-found");
    let other = stack.new_workspace("other").await;
    other
        .delete(&format!("/api/v1/api-keys/{id}"))
        .await
        .assert_problem(404, "not-found");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_cannot_grant_more_than_it_holds() {
    let stack = TestStack::start().await;
    let manager = key_with_scopes(&stack, &["manage:api-keys", "read:bots"]).await;
    let narrower = manager.post("/api/v1/api-keys", json!({"scopes": ["read:bots"]})).await;
    assert_eq!(narrower.status, 201, "{}", narrower.text);
    let wider = manager
        .post("/api/v1/api-keys", json!({"scopes": ["write:bots"]}))
        .await;
    wider.assert_problem(403, "insufficient-scope");
    let unknown = manager.post("/api/v1/api-keys", json!({"scopes": ["root"]})).await;
    unknown.assert_problem(400, "invalid-argument");
    assert_eq!(unknown.json["field"], "scopes");
    let inherits = manager.post("/api/v1/api-keys", json!({"name": "same"})).await;
    assert_eq!(
        inherits.json["api_key"]["scopes"],
        json!(["manage:api-keys", "read:bots"])
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_working_at_once_on_every_gateway_replica() {
    let stack = TestStack::start_with(e2e::Options {
        extra_gateways: 1,
        ..e2e::Options::default()
    })
    .await;
    let created = stack.client.post("/api/v1/api-keys", json!({"name": "shared"})).await;
    let (id, secret) = (
        created.json["api_key"]["id"].as_str().unwrap(),
        created.json["api_key"]["key"].as_str().unwrap(),
    );
    let replicas: Vec<Client> = stack
        .gateway_urls
        .iter()
        .map(|url| Client::with_key(url, secret))
        .collect();
    // Both replicas have verified (and cached) the key.
    for replica in &replicas {
        for _ in 0..3 {
            assert_eq!(replica.get("/api/v1/conversations").await.status, 200);
        }
    }
    let admin_on_first = Client::with_key(&stack.gateway_urls[0], &stack.client_key_of_workspace().await);
    assert_eq!(
        admin_on_first.delete(&format!("/api/v1/api-keys/{id}")).await.status,
        200
    );

    replicas[0]
        .get("/api/v1/conversations")
        .await
        .assert_problem(401, "unauthenticated");
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        if replicas[1].get("/api/v1/conversations").await.status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the other replica still accepted the revoked key after 500 ms"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stack.stop().await;
}
