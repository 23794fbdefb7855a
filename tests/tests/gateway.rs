//! What the gateway itself answers: authentication, the admin API, routing
//! errors, body limits, formats, request ids, health and dead upstreams.

use std::time::{Duration, Instant};

use e2e::{Client, Options, TestStack};
use reqwest::Method;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_api_key_are_refused() {
    let stack = TestStack::start().await;
    let anonymous = Client::anonymous(&stack.base_url);
    let missing = anonymous.get("/api/v1/conversations").await;
    missing.assert_problem(401, "unauthenticated");
    assert!(missing.header("www-authenticate").unwrap().starts_with("Bearer"));

    let forged = Client::with_key(
        &stack.base_url,
        "cbk_AAAAAAAAAAAABBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
    );
    forged
        .get("/api/v1/conversations")
        .await
        .assert_problem(401, "unauthenticated");
    let garbage = Client::with_key(&stack.base_url, "hello");
    garbage
        .get("/api/v1/conversations")
        .await
        .assert_problem(401, "unauthenticated");

    // X-API-Key works as well as Authorization: Bearer.
    let key_header = Client::send(
        anonymous
            .request(Method::GET, "/api/v1/conversations")
            .header("X-API-Key", stack.client_key().await),
    )
    .await;
    assert_eq!(key_header.status, 200, "{}", key_header.text);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_platform_admin_creates_workspaces_and_keys() {
    let stack = TestStack::start().await;
    let anonymous = Client::anonymous(&stack.base_url);
    anonymous
        .post("/admin/v1/workspaces", json!({"name": "x"}))
        .await
        .assert_problem(401, "unauthenticated");
    // A workspace API key is not an admin token.
    stack
        .client
        .post("/admin/v1/workspaces", json!({"name": "x"}))
        .await
        .assert_problem(401, "unauthenticated");

    let admin = stack.admin();
    let created = admin.post("/admin/v1/workspaces", json!({"name": "Acme"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let workspace = created.json["workspace"]["id"].as_str().unwrap();
    assert!(workspace.starts_with("ws_"));
    let key = created.json["api_key"]["key"].as_str().unwrap();
    assert!(key.starts_with(created.json["api_key"]["prefix"].as_str().unwrap()));

    let second = admin
        .post(
            &format!("/admin/v1/workspaces/{workspace}/api-keys"),
            json!({"name": "ci"}),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.text);
    let second_key = second.json["api_key"]["key"].as_str().unwrap();
    assert_ne!(second_key, key);

    // Both keys act for the same workspace.
    let one = Client::with_key(&stack.base_url, key);
    let two = Client::with_key(&stack.base_url, second_key);
    let conv = one.create_conversation("u").await;
    assert_eq!(two.get(&format!("/api/v1/conversations/{conv}")).await.status, 200);

    admin
        .post("/admin/v1/workspaces/ws_missing/api-keys", json!({}))
        .await
        .assert_problem(404, "not-found");
    let bad_scope = admin
        .post(
            &format!("/admin/v1/workspaces/{workspace}/api-keys"),
            json!({"scopes": ["root"]}),
        )
        .await;
    bad_scope.assert_problem(400, "invalid-argument");
    admin
        .post("/admin/v1/workspaces", json!({"name": ""}))
        .await
        .assert_problem(400, "invalid-argument");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_errors_are_problems_with_their_own_status() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    api.get("/api/v1/nothing-here")
        .await
        .assert_problem(404, "route-not-found");
    api.get("/elsewhere").await.assert_problem(404, "route-not-found");

    let wrong_method = api.put("/api/v1/conversations", json!({})).await;
    wrong_method.assert_problem(405, "method-not-allowed");
    assert_eq!(wrong_method.header("allow"), Some("GET, POST"));

    let malformed = Client::send(
        api.request(Method::POST, "/api/v1/conversations")
            .header("content-type", "application/json")
            .body("{\"user_id\": "),
    )
    .await;
    malformed.assert_problem(400, "malformed-json");

    let wrong_type = api
        .post("/api/v1/conversations", json!({"user_id": 42, "channel": "web"}))
        .await;
    wrong_type.assert_problem(400, "invalid-argument");
    assert_eq!(wrong_type.json["field"], "user_id");

    let unknown_field = api
        .post("/api/v1/conversations", json!({"user": "u", "channel": "web"}))
        .await;
    unknown_field.assert_problem(400, "invalid-argument");
    assert_eq!(unknown_field.json["field"], "user");

    let unknown_param = api.get("/api/v1/conversations?colour=red").await;
    unknown_param.assert_problem(400, "unknown-parameter");

    let not_a_number = api.get("/api/v1/conversations?limit=lots").await;
    not_a_number.assert_problem(400, "invalid-argument");
    assert_eq!(not_a_number.json["field"], "limit");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let stack = TestStack::start_with(Options {
        max_body_bytes: Some(2048),
        ..Options::default()
    })
    .await;
    let api = &stack.client;
    let big = json!({"user_id": "u", "channel": "web", "metadata": {"blob": "x".repeat(4096)}});
    let reply = api.post("/api/v1/conversations", big).await;
    reply.assert_problem(413, "payload-too-large");

    // Chunked bodies with no Content-Length are cut off the same way.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..10).map(|_| Ok(vec![b' '; 512])).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let chunked = Client::send(api.request(Method::POST, "/api/v1/conversations").body(stream)).await;
    chunked.assert_problem(413, "payload-too-large");

    let small = api
        .post("/api/v1/conversations", json!({"user_id": "u", "channel": "web"}))
        .await;
    assert_eq!(small.status, 200);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_is_returned_on_request_with_the_same_content() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let conv = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "a<b&c", "channel": "email", "metadata": {"order id": "7"}}),
        )
        .await;
    let id = conv.json["id"].as_str().unwrap();

    let by_accept = Client::send(
        api.request(Method::GET, &format!("/api/v1/conversations/{id}"))
            .header("accept", "application/xml"),
    )
    .await;
    assert_eq!(by_accept.status, 200);
    assert_eq!(by_accept.header("content-type"), Some("application/xml"));
    assert!(by_accept.text.starts_with("<?xml"));
    assert!(by_accept.text.contains(&format!("<id>{id}</id>")));
    assert!(by_accept.text.contains("<user_id>a&lt;b&amp;c</user_id>"));
    assert!(by_accept.text.contains("<entry key=\"order id\">7</entry>"));

    let by_query = api.get(&format!("/api/v1/conversations/{id}?format=xml")).await;
    assert_eq!(by_query.text, by_accept.text);

    let problem = api.get("/api/v1/conversations/conv_missing?format=xml").await;
    assert_eq!(problem.status, 404);
    assert_eq!(problem.header("content-type"), Some("application/problem+xml"));
    assert!(problem.text.contains("<status>404</status>"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_accepted_or_generated_and_returned() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let given = Client::send(
        api.request(Method::GET, "/api/v1/conversations")
            .header("X-Request-Id", "trace-me-123"),
    )
    .await;
    assert_eq!(given.header("x-request-id"), Some("trace-me-123"));

    let hostile = Client::send(
        api.request(Method::GET, "/api/v1/conversations")
            .header("X-Request-Id", "a b\"<script>".repeat(3)),
    )
    .await;
    assert!(
        hostile.header("x-request-id").unwrap().starts_with("req_"),
        "unsafe ids are replaced"
    );
    let too_long = Client::send(
        api.request(Method::GET, "/api/v1/conversations")
            .header("X-Request-Id", "x".repeat(200)),
    )
    .await;
    assert!(too_long.header("x-request-id").unwrap().starts_with("req_"));

    let generated = api.get("/api/v1/conversations").await;
    let id = generated.header("x-request-id").unwrap();
    assert!(id.starts_with("req_") && id.len() > 20);

    let problem = Client::send(
        api.request(Method::GET, "/api/v1/conversations/conv_nope")
            .header("X-Request-Id", "trace-problem"),
    )
    .await;
    assert_eq!(problem.json["request_id"], "trace-problem");
    assert_eq!(problem.header("x-request-id"), Some("trace-problem"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_report_every_upstream() {
    let stack = TestStack::start().await;
    let anonymous = Client::anonymous(&stack.base_url);
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    assert_eq!(
        anonymous.get("/readyz").await.status,
        404,
        "readiness, which names the upstreams, is for probes on the admin listener"
    );
    let ready = stack.gateway_admin().get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.json["upstreams"],
        json!({"chatbot": "SERVING", "integration": "SERVING", "analytics": "SERVING", "webhooks": "SERVING"})
    );
    // The skeleton services answer through their routes.
    assert_eq!(
        stack.client.get("/api/v1/integrations").await.json,
        json!({"integrations": [], "next_cursor": ""})
    );
    assert_eq!(
        stack.client.get("/api/v1/webhooks/endpoints").await.json,
        json!({"endpoints": [], "next_cursor": ""})
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_gives_503_and_not_ready() {
    let stack = TestStack::start_with(Options {
        dead_upstreams: vec!["analytics"],
        ..Options::default()
    })
    .await;
    let down = stack.client.get("/api/v1/analytics/requests").await;
    down.assert_problem(503, "upstream-unavailable");
    assert!(down.header("retry-after").is_some());
    assert!(!down.text.contains("127.0.0.1"), "internal addresses are not leaked");

    let ready = stack.gateway_admin().get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json["upstreams"]["analytics"], "NOT_SERVING");
    assert_eq!(ready.json["upstreams"]["chatbot"], "SERVING");
    assert_eq!(
        stack.client.get("/api/v1/conversations").await.status,
        200,
        "other routes keep working"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_are_chosen_by_header_and_echoed() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let latest = api.get("/api/v1/conversations").await;
    assert_eq!(
        latest.header("x-api-version"),
        Some("2024-01"),
        "absent means the latest"
    );
    let pinned = Client::send(
        api.request(Method::GET, "/api/v1/conversations")
            .header("X-API-Version", "2024-01"),
    )
    .await;
    assert_eq!(pinned.status, 200);
    assert_eq!(pinned.header("x-api-version"), Some("2024-01"));
    let unknown = Client::send(
        api.request(Method::GET, "/api/v1/conversations")
            .header("X-API-Version", "1999-12"),
    )
    .await;
    unknown.assert_problem(400, "unsupported-api-version");
    assert!(
        unknown.json["detail"].as_str().unwrap().contains("2024-01"),
        "lists the supported versions"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_security_headers_and_cors_only_for_allowed_origins() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    for reply in [api.get("/api/v1/conversations").await, api.get("/api/v1/nope").await] {
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert!(reply.header("content-security-policy").is_some());
    }
    let preflight = |origin: &'static str| {
        api.request(Method::OPTIONS, "/api/v1/conversations")
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
    };
    let allowed = Client::send(preflight(e2e::CORS_ORIGIN)).await;
    assert_eq!(allowed.header("access-control-allow-origin"), Some(e2e::CORS_ORIGIN));
    assert!(allowed.header("access-control-allow-methods").unwrap().contains("POST"));
    let foreign = Client::send(preflight("https://evil.example")).await;
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    stack.stop().await;
}

/// How long the gateway keeps a connection that `trickle` feeds, until it
/// closes it (`None`: still open after 5 s).
async fn held_open(addr: &str, first: &[u8], trickle: &[u8]) -> Option<Duration> {
    let mut connection = TcpStream::connect(addr).await.expect("the gateway accepts");
    let started = Instant::now();
    connection.write_all(first).await.expect("a first write");
    let mut answer = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(5) {
        if !trickle.is_empty() && connection.write_all(trickle).await.is_err() {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(Duration::from_millis(200), connection.read(&mut answer)).await {
            // Closed, after whatever it said (hyper may answer 408 first).
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_trickle_or_withhold_their_headers_are_cut_off() {
    let stack = TestStack::start_with(Options {
        header_read_timeout: Some(Duration::from_millis(500)),
        ..Options::default()
    })
    .await;
    let addr = stack.base_url.trim_start_matches("http://");
    // A slowloris client: a header line every 200 ms, never the blank line.
    let trickled = held_open(addr, b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n", b"X-Slow: 1\r\n").await;
    // A client that connects and says nothing.
    let silent = held_open(addr, b"", b"").await;
    for (what, held) in [("trickling its headers", trickled), ("silent", silent)] {
        let held = held.unwrap_or_else(|| panic!("a client {what} still held its connection after 5 s"));
        assert!(
            held >= Duration::from_millis(400),
            "{what}: cut at {held:?}, before the timeout"
        );
    }
    // A client that sends its request and keeps the connection is served.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert_eq!(Client::anonymous(&stack.base_url).get("/healthz").await.status, 200);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sent_a_byte_does_not_hold_up_shutdown() {
    let stack = TestStack::start_with(e2e::Options {
        header_read_timeout: Some(Duration::from_secs(60)),
        ..e2e::Options::default()
    })
    .await;
    // As an HTTP client's pool does when it opened a connection it then
    // did not need.
    let addr = stack.base_url.trim_start_matches("http://").to_owned();
    let _silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // stop() fails unless the gateway is done within 10 s; the connection
    // alone would hold it for the 60 s header timeout.
    stack.stop().await;
}
