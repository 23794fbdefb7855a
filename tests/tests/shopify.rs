//! Shopify connections against a local server speaking Shopify's wire
//! format: connected with an Admin API token or an expiring offline token,
//! refused with Shopify's own reason, retried through throttling and
//! outages as the vendor policy says, and an expiring token refreshed
//! exactly once however many replicas need it at the same moment.

use std::time::{Duration, Instant};

use e2e::{
    Options, Reply, TestStack,
    shopify_server::{CLIENT_ID, CLIENT_SECRET, SCOPES, SHOP, ShopifyServer, Trouble},
};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "shpat_admin_token";
const REFRESH_TOKEN: &str = "shprt_first";

/// A fake store whose access tokens live `token_lifetime` (zero: forever)
/// and a stack with `integration_replicas` integration-services using it.
async fn store_and_stack(token_lifetime: Duration, integration_replicas: usize) -> (ShopifyServer, TestStack) {
    let shopify = ShopifyServer::start(ADMIN_TOKEN, REFRESH_TOKEN, token_lifetime).await;
    let stack = TestStack::start_with(Options {
        shopify_url: Some(shopify.url.clone()),
        integration_replicas,
        ..Options::default()
    })
    .await;
    (shopify, stack)
}

async fn connect_with_admin_token(stack: &TestStack) -> Reply {
    stack
        .client
        .post("/api/v1/integrations", connect(json!({"access_token": ADMIN_TOKEN})))
        .await
}

fn connect(credentials: Value) -> Value {
    json!({"kind": "shopify", "name": "Acme store", "settings": {"shop": SHOP}, "credentials": credentials})
}

fn expiring() -> Value {
    json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_is_connected_with_an_admin_api_token_and_shows_the_scopes_it_granted() {
    let (shopify, stack) = store_and_stack(Duration::ZERO, 1).await;
    let created = connect_with_admin_token(&stack).await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["kind"], "shopify");
    assert_eq!(created.json["status"], "connected");
    assert_eq!(created.json["scopes"], json!(SCOPES));
    assert_eq!(
        created.json["settings"],
        json!({"shop": SHOP, "api_version": "2025-07", "bot_ids": []})
    );
    assert!(!created.text.contains(ADMIN_TOKEN), "the token is never shown");
    let id = created.json["id"].as_str().unwrap();
    let checked = stack
        .client
        .post(&format!("/api/v1/integrations/{id}:check"), json!({}))
        .await;
    assert_eq!(checked.status, 200, "{}", checked.text);
    assert_eq!(checked.json["status"], "connected");
    assert_eq!(shopify.graphql_calls(), 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_shopify_refuses_is_422_with_shopifys_reason() {
    let (_shopify, stack) = store_and_stack(Duration::ZERO, 1).await;
    let refused = stack
        .client
        .post("/api/v1/integrations", connect(json!({"access_token": "shpat_wrong"})))
        .await;
    refused.assert_problem(422, "unprocessable");
    let detail = refused.json["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("Invalid API key or access token"), "{detail}");
    assert!(!detail.contains("shpat_wrong"));
    let wrong_grant = json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": "shprt_forged"});
    let refused = stack.client.post("/api/v1/integrations", connect(wrong_grant)).await;
    refused.assert_problem(422, "unprocessable");
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("already used")
    );
    assert_eq!(
        stack.client.get("/api/v1/integrations").await.json["integrations"],
        json!([])
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_outages_are_retried_waiting_as_long_as_shopify_asks() {
    let (shopify, stack) = store_and_stack(Duration::ZERO, 1).await;
    shopify.trouble_ahead(vec![Trouble::Throttled("0.6"), Trouble::Down(503)]);
    let started = Instant::now();
    let created = connect_with_admin_token(&stack).await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(shopify.graphql_calls(), 3, "throttled, down, then answered");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the fractional Retry-After was waited out: {:?}",
        started.elapsed()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_refreshed_once_however_many_replicas_need_it() {
    let (shopify, stack) = store_and_stack(Duration::from_millis(300), 2).await;
    let created = stack.client.post("/api/v1/integrations", connect(expiring())).await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(shopify.refreshes(), 1, "the first access token is fetched at once");
    let id = created.json["id"].as_str().unwrap().to_owned();

    // The token lapses; five checks, spread over both replicas, all find it
    // refused at once. Were each to refresh, the rotating refresh token
    // would be spent twice and the later refreshes refused.
    shopify.expire_access_tokens();
    let checks = (0..5).map(|_| {
        let (client, path) = (stack.client.clone(), format!("/api/v1/integrations/{id}:check"));
        tokio::spawn(async move { client.post(&path, json!({})).await })
    });
    for check in futures_util::future::join_all(checks).await {
        let checked = check.expect("a check");
        assert_eq!(checked.status, 200, "{}", checked.text);
        assert_eq!(checked.json["status"], "connected", "{}", checked.text);
    }
    assert_eq!(shopify.refreshes(), 2, "one refresh for the five checks");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_keeps_failing_is_paused_by_its_breaker_and_the_check_says_why() {
    let (shopify, stack) = store_and_stack(Duration::ZERO, 1).await;
    let created = connect_with_admin_token(&stack).await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/integrations/{id}:check");
    let check = || stack.client.post(&path, json!({}));

    shopify.go_down(Some(502));
    let failing = check().await;
    assert_eq!(failing.status, 200, "{}", failing.text);
    assert_eq!(failing.json["status"], "error");
    assert!(
        failing.json["last_error"].as_str().unwrap().contains("502"),
        "{}",
        failing.text
    );
    let paused = check().await;
    assert!(
        paused.json["last_error"].as_str().unwrap().contains("paused"),
        "five failures in a row open the breaker: {}",
        paused.text
    );
    let calls = shopify.graphql_calls();
    let still_paused = check().await;
    assert_eq!(still_paused.json["status"], "error");
    assert_eq!(shopify.graphql_calls(), calls, "an open breaker spares the store");
    let shown = stack.client.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(shown.json["status"], "error");
    assert_eq!(shown.json["last_error"], still_paused.json["last_error"]);
    stack.stop().await;
}
