//! Analytics through the gateway: conversation, message and bot statistics
//! that add up exactly for a known mix of traffic, counted once however
//! often an event arrives and rebuilt from the events stream when the
//! schema is lost; the API usage report from what the gateway recorded;
//! and webhook delivery statistics.

use std::time::Duration;

use e2e::{
    Client, TestStack,
    bots::{add_faqs, ask, conversation_with, create_bot, train_and_deploy},
    event_tap::EventTap,
    webhook_receiver::Receiver,
};
use lapin::{BasicProperties, options::BasicPublishOptions};
use serde_json::{Value, json};

const FAQ: &[(&str, &str)] = &[
    (
        "how many days does shipping take?",
        "Shipping takes 3 to 5 business days.",
    ),
    (
        "can i return an item?",
        "Returns are accepted within 30 days of delivery.",
    ),
];

const PATIENCE: Duration = Duration::from_secs(20);

/// Sends what the counts below expect: three conversations (two with the
/// bot, on two channels), four user messages, two answers, one fallback
/// with a handoff, one agent message, one conversation ended.
async fn known_mix(api: &Client, bot: &str) {
    let web = conversation_with(api, bot).await;
    assert_eq!(
        ask(api, &web, "how many days does shipping take?").await.json["reply"]["content"],
        FAQ[0].1
    );
    assert_eq!(
        ask(api, &web, "can I return an item?").await.json["reply"]["content"],
        FAQ[1].1
    );
    let ended = api
        .patch(&format!("/api/v1/conversations/{web}"), json!({"status": "ended"}))
        .await;
    assert_eq!(ended.status, 200, "{}", ended.text);

    let chat = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "customer-2", "channel": "whatsapp", "bot_id": bot}),
        )
        .await;
    let chat = chat.json["id"].as_str().expect("a conversation").to_owned();
    let unsure = ask(api, &chat, "Which team won the football world cup in 1998?").await;
    assert_eq!(unsure.json["reply"]["metadata"]["handoff"]["reason"], "low_confidence");

    let email = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "customer-3", "channel": "email"}),
        )
        .await;
    let email = email.json["id"].as_str().expect("a conversation").to_owned();
    let path = format!("/api/v1/conversations/{email}/messages");
    for (role, content) in [("user", "Hello, anyone there?"), ("agent", "Yes, how can I help?")] {
        let sent = api.post(&path, json!({"role": role, "content": content})).await;
        assert_eq!(sent.status, 200, "{}", sent.text);
    }
}

fn counts(stats: &Value, keys: [&str; 3]) -> [String; 3] {
    keys.map(|k| stats[k].as_str().unwrap_or("0").to_owned())
}

/// The conversation and message reports once `started` conversations are
/// counted, in the given zone's hours.
async fn reports(api: &Client, started: &str) -> (Value, Value) {
    let conversations = api
        .get_until(
            "/api/v1/analytics/conversations?bucket=hour&time_zone=Asia/Kolkata&limit=100",
            PATIENCE,
            |stats| stats["total"]["started"] == started,
        )
        .await;
    let messages = api
        .get_until("/api/v1/analytics/messages?limit=100", PATIENCE, |stats| {
            stats["total"]["received"] == "4" && stats["total"]["sent"] == "4"
        })
        .await;
    (conversations, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_add_up_count_each_event_once_and_rebuild_from_the_stream() {
    let mut stack = TestStack::start().await;
    let api = stack.client.clone();
    let mut tap = EventTap::subscribe(e2e::AMQP_URL, &stack.exchange).await;
    let pairs: Vec<(String, String)> = FAQ.iter().map(|(q, a)| (q.to_string(), a.to_string())).collect();
    let bot = create_bot(&api, "Support", json!({"fallback_message": "Let me get a colleague."})).await;
    add_faqs(&api, &bot, &pairs).await;
    train_and_deploy(&api, &bot).await;
    known_mix(&api, &bot).await;

    let (conversations, messages) = reports(&api, "3").await;
    let total = ["started", "ended", "handed_off"];
    assert_eq!(counts(&conversations["total"], total), ["3", "1", "1"]);
    let groups = conversations["by_bot_and_channel"].as_array().unwrap();
    let group = |bot_id: &str, channel: &str| {
        groups
            .iter()
            .find(|g| g["bot_id"].as_str().unwrap_or("") == bot_id && g["channel"] == channel)
            .map(|g| counts(&g["counts"], total))
            .unwrap_or_else(|| panic!("no group {bot_id}/{channel}: {groups:?}"))
    };
    assert_eq!(group(&bot, "web"), ["1", "1", "0"]);
    assert_eq!(group(&bot, "whatsapp"), ["1", "0", "1"]);
    assert_eq!(group("", "email"), ["1", "0", "0"]);
    // Hours in India start at half past in UTC, and the buckets add up.
    let buckets = conversations["buckets"].as_array().unwrap();
    assert!(buckets.len() >= 24, "a day of hours: {}", buckets.len());
    assert!(buckets.iter().all(|b| b["start"].as_str().unwrap().contains(":30:00")));
    let started: i64 = buckets
        .iter()
        .map(|b| b["counts"]["started"].as_str().unwrap_or("0").parse::<i64>().unwrap())
        .sum();
    assert_eq!(started, 3);
    // The unsure answer is a fallback, not an engine failure.
    assert_eq!(
        counts(&messages["total"], ["received", "sent", "failed"]),
        ["4", "4", "0"]
    );

    let stats = api.get(&format!("/api/v1/analytics/bots/{bot}")).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    let stats = stats.json;
    assert_eq!(counts(&stats, ["questions", "answered", "fallbacks"]), ["3", "2", "1"]);
    assert!(
        (stats["answer_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
        "{stats}"
    );
    assert!((stats["fallback_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        counts(&stats, ["conversations", "handoffs", "questions"])[..2],
        ["2", "1"]
    );
    assert_eq!(stats["handoff_rate"], 0.5);
    let p50 = stats["reply_latency_p50_ms"].as_f64().unwrap();
    let p95 = stats["reply_latency_p95_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p95 >= p50, "{stats}");
    assert_eq!(
        stats["top_unanswered"],
        json!([{"question": "which team won the football world cup in 1998", "count": "1"}])
    );

    // The same event published again is not counted again.
    let first = tap.skip_until("conversation.started", PATIENCE).await;
    republish(&stack.exchange, &first).await;
    let marker = api
        .post(
            "/api/v1/conversations",
            json!({"user_id": "customer-4", "channel": "sms"}),
        )
        .await;
    assert_eq!(marker.status, 200);
    let (conversations, messages) = reports(&api, "4").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = api
        .get("/api/v1/analytics/conversations?bucket=hour&time_zone=Asia/Kolkata&limit=100")
        .await;
    assert_eq!(settled.json["total"], conversations["total"], "a duplicate was counted");

    // A replica whose schema is gone rebuilds the same numbers.
    stack.stop_service("analytics", 0).await;
    drop_schema(stack.database_url()).await;
    stack.restart_service("analytics", 0).await;
    let (rebuilt, rebuilt_messages) = reports(&api, "4").await;
    assert_eq!(rebuilt["total"], conversations["total"]);
    assert_eq!(rebuilt["by_bot_and_channel"], conversations["by_bot_and_channel"]);
    assert_eq!(rebuilt_messages["total"], messages["total"]);
    let again = api.get(&format!("/api/v1/analytics/bots/{bot}")).await.json;
    assert_eq!(counts(&again, ["questions", "answered", "fallbacks"]), ["3", "2", "1"]);
    stack.stop().await;
}

async fn republish(exchange: &str, event: &Value) {
    let connection = event_pipeline::broker::connect(e2e::AMQP_URL).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let body = serde_json::to_vec(event).unwrap();
    channel
        .basic_publish(
            exchange.into(),
            event["event"].as_str().unwrap().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
}

async fn drop_schema(database_url: &str) {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(database_url).await.unwrap();
    sqlx::query("DROP SCHEMA analytics CASCADE")
        .execute(&mut db)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_refuse_bad_windows_zones_buckets_and_cursors() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    for (query, field) in [
        ("time_zone=Mars/Olympus", "time_zone"),
        ("time_zone=PST", "time_zone"),
        ("bucket=week", "bucket"),
        ("since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z", "since"),
        ("since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
        ("cursor=not-a-cursor", "cursor"),
        ("limit=1000", "limit"),
    ] {
        let reply = api.get(&format!("/api/v1/analytics/conversations?{query}")).await;
        reply.assert_problem(400, "invalid-argument");
        assert_eq!(reply.json["field"], field, "{query}: {}", reply.text);
    }
    api.get("/api/v1/analytics/bots/not-a-bot")
        .await
        .assert_problem(404, "not-found");
    // Day buckets page through the window, oldest first.
    let page = api
        .get("/api/v1/analytics/messages?since=2026-11-01T00:00:00Z&until=2026-11-08T00:00:00Z&limit=5")
        .await;
    assert_eq!(page.json["buckets"].as_array().unwrap().len(), 5, "{}", page.text);
    let cursor = page.json["next_cursor"].as_str().unwrap();
    let rest = api
        .get(&format!(
            "/api/v1/analytics/messages?since=2026-11-01T00:00:00Z&until=2026-11-08T00:00:00Z&limit=5&cursor={cursor}"
        ))
        .await;
    let starts: Vec<&str> = rest.json["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["start"].as_str().unwrap())
        .collect();
    assert_eq!(starts, ["2026-11-06T00:00:00Z", "2026-11-07T00:00:00Z"]);
    assert_eq!(rest.json["next_cursor"], "");
    stack.stop().await;
}

/// The usage report's route entry for `method route`.
fn route<'a>(usage: &'a Value, method: &str, template: &str) -> Option<&'a Value> {
    usage["routes"]
        .as_array()?
        .iter()
        .find(|r| r["method"] == method && r["route"] == template)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_usage_report_shows_each_workspaces_requests_by_route_and_the_platforms_uptime() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let mut request_ids = Vec::new();
    for _ in 0..3 {
        let listed = api.get("/api/v1/conversations").await;
        assert_eq!(listed.status, 200);
        request_ids.push(listed.header("x-request-id").unwrap().to_owned());
    }
    api.get("/api/v1/conversations/conv_doesnotexist")
        .await
        .assert_problem(404, "not-found");
    let anonymous = Client::anonymous(&stack.base_url);
    assert_eq!(anonymous.get("/api/v1/conversations").await.status, 401);

    // The first readiness check may come before the gateway has checked
    // its replicas; the next, 5 s later, finds them serving. Waited for on
    // the operator's report, so the polls stay out of the workspace's
    // slowest requests.
    stack
        .admin()
        .get_until("/admin/v1/api-usage?limit=100", PATIENCE, |usage| {
            usage["uptime"]["passed"].as_str().unwrap_or("0") != "0"
        })
        .await;
    let usage = api
        .get_until("/api/v1/analytics/api-usage?limit=100", PATIENCE, |usage| {
            route(usage, "GET", "/api/v1/conversations/{conversation_id}").is_some()
        })
        .await;
    let list = route(&usage, "GET", "/api/v1/conversations").expect("the list route");
    assert_eq!(list["summary"]["requests"], "3", "{usage}");
    assert_eq!(list["summary"]["statuses"], json!([{"status": 200, "count": "3"}]));
    let latency = &list["summary"]["latency"];
    assert!(latency["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(latency["p99_ms"].as_f64().unwrap() >= latency["p50_ms"].as_f64().unwrap());
    let one = route(&usage, "GET", "/api/v1/conversations/{conversation_id}").unwrap();
    assert_eq!(one["summary"]["client_errors"], "1");
    assert_eq!(one["summary"]["client_error_rate"], 1.0);
    // The anonymous 401 belongs to no workspace.
    assert!(
        usage["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["summary"]["statuses"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["status"] != 401)),
        "{usage}"
    );
    // Every request is slow in tests (threshold 0): the slowest are listed
    // with their request ids.
    let slowest: Vec<&str> = usage["slowest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["request_id"].as_str().unwrap())
        .collect();
    assert!(request_ids.iter().any(|id| slowest.contains(&id.as_str())), "{usage}");
    let uptime = &usage["uptime"];
    assert!(
        uptime["checks"].as_str().unwrap().parse::<i64>().unwrap() >= 1,
        "{usage}"
    );
    // Measured, not claimed: a check before the services were up failed.
    let passed: i64 = uptime["passed"].as_str().unwrap_or("0").parse().unwrap();
    assert!(passed >= 1, "{usage}");
    let ratio = uptime["ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{usage}");
    let components: Vec<&str> = uptime["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["component"].as_str().unwrap())
        .collect();
    assert!(components.contains(&"chatbot") && components.contains(&"database"));

    let totals = api.get("/api/v1/analytics/requests").await;
    let total: i64 = totals.json["total_requests"].as_str().unwrap().parse().unwrap();
    assert!(total >= 4, "{}", totals.text);
    assert!(totals.json["error_requests"].as_str().unwrap().parse::<i64>().unwrap() >= 1);

    // Another workspace sees none of it; the operator sees all of it.
    let other = stack.new_workspace("other").await;
    let theirs = other.get("/api/v1/analytics/api-usage").await;
    assert!(
        route(&theirs.json, "GET", "/api/v1/conversations").is_none(),
        "{}",
        theirs.text
    );
    // (Refused before a route is resolved, it counts under the API's
    // catch-all template, never under its raw path.)
    let platform = stack
        .admin()
        .get_until("/admin/v1/api-usage?limit=100", PATIENCE, |usage| {
            route(usage, "GET", "/api/{*path}")
                .is_some_and(|r| r["summary"]["statuses"] == json!([{"status": 401, "count": "1"}]))
        })
        .await;
    assert!(route(&platform, "GET", "/api/v1/conversations").is_some());
    assert_eq!(platform["workspace_id"], "", "{platform}");
    stack
        .admin()
        .get("/admin/v1/api-usage?since=yesterday")
        .await
        .assert_problem(400, "invalid-argument");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_statistics_count_each_endpoints_deliveries() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    let receiver = Receiver::start().await;
    let created = api
        .post(
            "/api/v1/webhooks/endpoints",
            json!({"url": receiver.url, "event_types": ["conversation.started"]}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let endpoint = created.json["endpoint"]["id"].as_str().unwrap().to_owned();
    for user in ["a", "b"] {
        api.post("/api/v1/conversations", json!({"user_id": user, "channel": "web"}))
            .await;
    }
    receiver.wait_for(2, PATIENCE).await;
    let stats = api
        .get_until("/api/v1/analytics/webhooks", PATIENCE, |stats| {
            stats["endpoints"][0]["succeeded"] == "2"
        })
        .await;
    let row = &stats["endpoints"][0];
    assert_eq!(row["endpoint_id"], endpoint.as_str());
    assert_eq!(row["deliveries"], "2");
    assert_eq!(row["success_rate"], 1.0);
    assert!(row["delivery_latency_p95_ms"].as_f64().unwrap() > 0.0, "{stats}");
    // One attempt each: the receiver answered 200 at once.
    assert_eq!(row["attempts"], "2", "{stats}");
    let other = stack.new_workspace("other").await;
    let theirs = other.get("/api/v1/analytics/webhooks").await;
    assert_eq!(theirs.json["endpoints"], json!([]), "{}", theirs.text);
    stack.stop().await;
}
