//! Webhooks end to end: a conversation driven through the gateway reaches a
//! subscribed receiver as signed webhooks that the Standard Webhooks
//! reference library verifies; filters and workspaces are respected;
//! failures are retried with one idempotency key; internal targets are
//! refused; rotated secrets sign side by side.

use std::time::Duration;

use e2e::{
    Client, Options, TestStack,
    webhook_receiver::{Receiver, verify_independently},
};
use serde_json::{Value, json};

async fn subscribe(api: &Client, url: &str, event_types: Value) -> (String, String) {
    let reply = api
        .post(
            "/api/v1/webhooks/endpoints",
            json!({"url": url, "event_types": event_types}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let secret = reply.json["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    (reply.json["endpoint"]["id"].as_str().unwrap().to_owned(), secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_reaches_a_subscribed_receiver_as_verifiable_signed_webhooks() {
    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    let bystander = Receiver::start().await;
    let (_, secret) = subscribe(
        &stack.client,
        &receiver.url,
        json!(["conversation.*", "message.received"]),
    )
    .await;
    let other = stack.new_workspace("other").await;
    subscribe(&other, &bystander.url, json!([])).await;

    let conv = stack.client.create_conversation("customer-1").await;
    stack.client.send_message(&conv, "hello").await;
    stack
        .client
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"role": "bot", "content": "hi!"}),
        )
        .await;

    let webhooks = receiver.wait_for(2, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let webhooks = if receiver.received().len() > webhooks.len() {
        receiver.received()
    } else {
        webhooks
    };
    // Deliveries to one endpoint run concurrently, so arrival order is free.
    let mut types: Vec<String> = webhooks
        .iter()
        .map(|w| w.json()["event"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(
        types,
        ["conversation.started", "message.received"],
        "message.sent is filtered out"
    );
    verify_independently(&secret, &webhooks)
        .await
        .expect("the reference verifier accepts every webhook");
    for webhook in &webhooks {
        assert_eq!(webhook.header("content-type"), "application/json");
        assert_eq!(webhook.header("webhook-id"), webhook.json()["id"].as_str().unwrap());
        assert!(webhook.header("x-signature").starts_with("sha256="));
        assert!(webhook.header("x-idempotency-key").starts_with("dlv_"));
        assert_eq!(webhook.header("x-attempt"), "1");
        assert!(webhook.header("user-agent").starts_with("chatbot-platform-webhooks/"));
        assert_eq!(webhook.json()["workspace_id"], stack.workspace_id.as_str());
    }
    assert!(
        bystander.received().is_empty(),
        "another workspace's endpoint hears nothing"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_with_one_idempotency_key_until_it_succeeds() {
    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    receiver.answer_with(&[500, 503]);
    let (endpoint, _) = subscribe(&stack.client, &receiver.url, json!(["conversation.started"])).await;
    stack.client.create_conversation("u").await;

    let attempts = receiver.wait_for(3, Duration::from_secs(15)).await;
    let keys: std::collections::HashSet<&str> = attempts.iter().map(|a| a.header("x-idempotency-key")).collect();
    assert_eq!(keys.len(), 1, "every attempt carries the same idempotency key");
    let numbers: Vec<&str> = attempts.iter().map(|a| a.header("x-attempt")).collect();
    assert_eq!(numbers, ["1", "2", "3"]);

    let listed = stack
        .client
        .get(&format!("/api/v1/webhooks/endpoints/{endpoint}/deliveries"))
        .await;
    let delivery = listed.json["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let detail = loop {
        let detail = stack
            .client
            .get(&format!("/api/v1/webhooks/endpoints/{endpoint}/deliveries/{delivery}"))
            .await;
        if detail.json["status"] == "succeeded" || std::time::Instant::now() > deadline {
            break detail;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(detail.json["status"], "succeeded", "{}", detail.text);
    assert_eq!(detail.json["attempts"], 3);
    let statuses: Vec<i64> = detail.json["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["http_status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 503, 200]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secrets_sign_side_by_side_and_each_verifies() {
    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    let (endpoint, old) = subscribe(&stack.client, &receiver.url, json!(["conversation.started"])).await;
    let rotated = stack
        .client
        .post(
            &format!("/api/v1/webhooks/endpoints/{endpoint}/rotate-secret"),
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new = rotated.json["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    stack.client.create_conversation("u").await;
    let webhooks = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(
        webhooks[0].header("webhook-signature").split(' ').count(),
        2,
        "one signature per active secret"
    );
    verify_independently(&new, &webhooks)
        .await
        .expect("the new secret verifies");
    verify_independently(&old, &webhooks)
        .await
        .expect("the old secret still verifies during the grace period");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_validated_and_belong_to_their_workspace() {
    let stack = TestStack::start().await;
    let api = &stack.client;
    for (body, field) in [
        (json!({"url": "ftp://example.com"}), "url"),
        (
            json!({"url": "https://example.com", "event_types": ["Message.*"]}),
            "event_types",
        ),
    ] {
        let reply = api.post("/api/v1/webhooks/endpoints", body).await;
        reply.assert_problem(400, "invalid-argument");
        assert_eq!(reply.json["field"], field);
    }
    let (endpoint, secret) = subscribe(api, "https://hooks.example.com/in", json!(["message.*"])).await;
    let fetched = api.get(&format!("/api/v1/webhooks/endpoints/{endpoint}")).await;
    assert_eq!(fetched.json["event_types"], json!(["message.*"]));
    assert!(
        !fetched.text.contains(&secret),
        "the secret is shown on create and rotate only"
    );
    let updated = api
        .patch(
            &format!("/api/v1/webhooks/endpoints/{endpoint}"),
            json!({"enabled": false, "description": "paused"}),
        )
        .await;
    assert_eq!(updated.json["enabled"], false, "{}", updated.text);
    assert_eq!(updated.json["event_types"], json!(["message.*"]), "unsent fields stay");
    let other = stack.new_workspace("other").await;
    other
        .get(&format!("/api/v1/webhooks/endpoints/{endpoint}"))
        .await
        .assert_problem(404, "not-found");
    assert_eq!(
        api.delete(&format!("/api/v1/webhooks/endpoints/{endpoint}"))
            .await
            .status,
        200
    );
    api.get(&format!("/api/v1/webhooks/endpoints/{endpoint}"))
        .await
        .assert_problem(404, "not-found");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_when_private_networks_are_not_allowed() {
    let stack = TestStack::start_with(e2e::Options {
        forbid_internal_webhook_targets: true,
        ..e2e::Options::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let mut endpoints = Vec::new();
    for url in [
        receiver.url.clone(),
        by_name,
        "http://169.254.169.254/latest/meta-data".into(),
    ] {
        endpoints.push(subscribe(&stack.client, &url, json!(["conversation.started"])).await.0);
    }
    stack.client.create_conversation("u").await;

    for endpoint in endpoints {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let attempt = loop {
            let listed = stack
                .client
                .get(&format!("/api/v1/webhooks/endpoints/{endpoint}/deliveries"))
                .await;
            if let Some(id) = listed.json["deliveries"][0]["id"].as_str() {
                let detail = stack
                    .client
                    .get(&format!("/api/v1/webhooks/endpoints/{endpoint}/deliveries/{id}"))
                    .await;
                if let Some(first) = detail.json["attempt_log"].as_array().and_then(|a| a.first()).cloned() {
                    break first;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no attempt was recorded for {endpoint}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(attempt["http_status"], 0, "no HTTP exchange happened");
        assert!(attempt["error"].as_str().unwrap().contains("refused"), "{attempt}");
    }
    assert!(receiver.received().is_empty(), "nothing reached the internal receiver");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_the_receiver_is_respected() {
    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    receiver.answer_with(&[429]);
    receiver.ask_to_retry_after(2);
    subscribe(&stack.client, &receiver.url, json!(["conversation.started"])).await;
    stack.client.create_conversation("u").await;
    let attempts = receiver.wait_for(2, Duration::from_secs(15)).await;
    let gap = attempts[1].at - attempts[0].at;
    // The schedule alone would retry after 200 ms.
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?} despite Retry-After: 2"
    );
    stack.stop().await;
}

/// An event relayed while no queue is bound to the exchange (the
/// dispatcher's queue was deleted, or it has not started yet) is not
/// dropped by the broker: it waits in the outbox and is delivered once the
/// dispatcher has declared its queue again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_relayed_while_the_dispatchers_queue_is_missing_are_delivered_when_it_returns() {
    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    subscribe(&stack.client, &receiver.url, json!(["conversation.started"])).await;
    let connection = event_pipeline::broker::connect(e2e::AMQP_URL).await.expect("RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .queue_delete(
            webhook_dispatcher::queue_name(&stack.exchange).as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .expect("deleting the dispatcher's queue");

    let conv = stack.client.create_conversation("while-unbound").await;
    let arrived = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(arrived[0].json()["data"]["conversation"]["id"], conv.as_str());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_hangs_does_not_slow_delivery_to_another() {
    let stack = TestStack::start().await;
    let hanging = Receiver::start().await;
    hanging.respond_after(Duration::from_secs(10));
    let healthy = Receiver::start().await;
    subscribe(&stack.client, &hanging.url, json!(["conversation.started"])).await;
    subscribe(&stack.client, &healthy.url, json!(["conversation.started"])).await;

    let started = std::time::Instant::now();
    for i in 0..12 {
        stack.client.create_conversation(&format!("u{i}")).await;
    }
    healthy.wait_for(12, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the healthy endpoint waited {:?}",
        started.elapsed()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_queued_behind_a_slow_endpoint_longer_than_their_lease_are_sent_once() {
    // One request at a time, each taking 1 s: the last of nine waits about
    // 8 s in memory, past its 7 s lease (the 2 s test timeout plus 5 s).
    let stack = TestStack::start_with(Options {
        webhook_concurrency: Some(1),
        ..Options::default()
    })
    .await;
    let slow = Receiver::start().await;
    slow.respond_after(Duration::from_secs(1));
    subscribe(&stack.client, &slow.url, json!(["conversation.started"])).await;
    for i in 0..9 {
        stack.client.create_conversation(&format!("u{i}")).await;
    }
    slow.wait_for(9, Duration::from_secs(20)).await;
    // Anything claimed twice would arrive within the next request or two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let keys: std::collections::HashSet<String> = slow
        .received()
        .iter()
        .map(|w| w.header("x-idempotency-key").to_owned())
        .collect();
    assert_eq!(keys.len(), 9, "nine deliveries");
    assert_eq!(slow.received().len(), 9, "none was sent twice");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_can_be_retried_now_and_events_replayed_with_the_same_keys() {
    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    receiver.answer_with(&[500, 500, 500, 500]);
    let (endpoint, _) = subscribe(&stack.client, &receiver.url, json!(["conversation.started"])).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    stack.client.create_conversation("u").await;
    receiver.wait_for(4, Duration::from_secs(15)).await;

    let base = format!("/api/v1/webhooks/endpoints/{endpoint}/deliveries");
    let delivery = stack.client.get(&base).await.json["deliveries"][0].clone();
    let id = delivery["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stack.client.get(&format!("{base}/{id}")).await.json["status"] != "failed" {
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery never failed after its last attempt"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let retried = stack.client.post(&format!("{base}/{id}/retry"), json!({})).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    let after_retry = receiver.wait_for(5, Duration::from_secs(10)).await;
    assert_eq!(after_retry[4].header("x-idempotency-key"), id);

    let replay = stack
        .client
        .post(
            &format!("/api/v1/webhooks/endpoints/{endpoint}/replay"),
            json!({"since": since.to_rfc3339()}),
        )
        .await;
    assert_eq!(replay.status, 202, "{}", replay.text);
    assert_eq!(replay.json["status"], "running");
    let progress = format!(
        "/api/v1/webhooks/endpoints/{endpoint}/replays/{}",
        replay.json["id"].as_str().unwrap()
    );
    let done = stack
        .client
        .get_until(&progress, Duration::from_secs(10), |r| r["status"] == "done")
        .await;
    assert_eq!(
        (done["examined"].as_str(), done["replayed"].as_str()),
        (Some("1"), Some("1")),
        "{done}"
    );
    let replayed = receiver.wait_for(6, Duration::from_secs(10)).await;
    assert_eq!(
        replayed[5].header("x-idempotency-key"),
        id,
        "a replay keeps the delivery's idempotency key"
    );
    assert_eq!(replayed[5].header("webhook-id"), replayed[0].header("webhook-id"));

    let test = stack
        .client
        .post(&format!("/api/v1/webhooks/endpoints/{endpoint}/test"), json!({}))
        .await;
    assert_eq!(test.status, 200, "{}", test.text);
    let all = receiver.wait_for(7, Duration::from_secs(10)).await;
    assert_eq!(all[6].json()["event"], "webhook.test");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_continuously_is_disabled_and_its_workspace_told() {
    let stack = TestStack::start_with(e2e::Options {
        webhook_disable_after: Some(Duration::from_millis(300)),
        ..e2e::Options::default()
    })
    .await;
    let broken = Receiver::start().await;
    broken.answer_with(&[500; 20]);
    let watcher = Receiver::start().await;
    let (failing, _) = subscribe(&stack.client, &broken.url, json!(["conversation.started"])).await;
    subscribe(&stack.client, &watcher.url, json!(["webhook.endpoint.disabled"])).await;
    stack.client.create_conversation("u").await;

    let told = watcher.wait_for(1, Duration::from_secs(15)).await;
    let event = told[0].json();
    assert_eq!(event["event"], "webhook.endpoint.disabled");
    assert_eq!(event["data"]["endpoint_id"], failing.as_str());
    assert!(
        event["data"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("failing continuously since")
    );
    let endpoint = stack.client.get(&format!("/api/v1/webhooks/endpoints/{failing}")).await;
    assert_eq!(endpoint.json["enabled"], false);
    assert_eq!(endpoint.json["disabled_reason"], event["data"]["reason"]);

    // Re-enabling clears the reason; the owner fixed their receiver.
    let enabled = stack
        .client
        .patch(
            &format!("/api/v1/webhooks/endpoints/{failing}"),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(enabled.json["enabled"], true, "{}", enabled.text);
    assert_eq!(enabled.json["disabled_reason"], "");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_rate_limit_spaces_deliveries_out() {
    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    let reply = stack
        .client
        .post(
            "/api/v1/webhooks/endpoints",
            json!({"url": receiver.url, "event_types": ["conversation.started"], "rate_limit_per_second": 5}),
        )
        .await;
    assert_eq!(reply.json["endpoint"]["rate_limit_per_second"], 5, "{}", reply.text);
    for i in 0..15 {
        stack.client.create_conversation(&format!("u{i}")).await;
    }
    let arrivals = receiver.wait_for(15, Duration::from_secs(20)).await;
    let span = arrivals.last().unwrap().at - arrivals.first().unwrap().at;
    // A burst of 5, then 5 a second: the last 10 need about 2 s.
    assert!(
        span >= Duration::from_millis(1500),
        "15 deliveries at 5/s arrived within {span:?}"
    );
    let attempts: Vec<&str> = arrivals.iter().map(|a| a.header("x-attempt")).collect();
    assert!(
        attempts.iter().all(|a| *a == "1"),
        "waiting for the rate limit is not a failed attempt"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_endpoint_gets_each_conversations_events_in_order_despite_a_retry() {
    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    receiver.answer_with(&[500]);
    let reply = stack
        .client
        .post(
            "/api/v1/webhooks/endpoints",
            json!({"url": receiver.url, "event_types": ["message.received"], "ordered_by_conversation": true}),
        )
        .await;
    assert_eq!(
        reply.json["endpoint"]["ordered_by_conversation"], true,
        "{}",
        reply.text
    );
    let conv = stack.client.create_conversation("u").await;
    for i in 0..8 {
        stack.client.send_message(&conv, &format!("m{i}")).await;
    }
    let arrivals = receiver.wait_for(9, Duration::from_secs(20)).await;
    // The first delivery failed once and was retried; nothing overtook it.
    let contents: Vec<String> = arrivals
        .iter()
        .map(|a| a.json()["data"]["message"]["content"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = vec!["m0".to_owned()];
    expected.extend((0..8).map(|i| format!("m{i}")));
    assert_eq!(contents, expected);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_burst_loses_nothing_and_duplicates_are_recognisable() {
    let mut stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    subscribe(&stack.client, &receiver.url, json!(["conversation.started"])).await;
    let client = stack.client.clone();
    let burst = tokio::spawn(async move {
        for i in 0..60 {
            client.create_conversation(&format!("burst-{i}")).await;
        }
    });
    receiver.wait_for(10, Duration::from_secs(15)).await;
    stack.kill_dispatcher();
    burst.await.expect("the burst completes while the dispatcher is down");
    stack.restart_service("webhooks", 0).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let mut keys = std::collections::HashMap::new();
    loop {
        keys.clear();
        for webhook in receiver.received() {
            let key = keys
                .entry(webhook.header("webhook-id").to_owned())
                .or_insert_with(|| webhook.header("x-idempotency-key").to_owned());
            assert_eq!(
                *key,
                webhook.header("x-idempotency-key"),
                "a redelivery carries the same idempotency key"
            );
        }
        if keys.len() == 60 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 60 events arrived after the crash",
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_the_retention_is_pruned_and_recent_history_stays() {
    let stack = TestStack::start().await;
    let receiver = Receiver::start().await;
    let (endpoint, _) = subscribe(&stack.client, &receiver.url, json!([])).await;
    for _ in 0..2 {
        let test = stack
            .client
            .post(&format!("/api/v1/webhooks/endpoints/{endpoint}/test"), json!({}))
            .await;
        assert_eq!(test.status, 200, "{}", test.text);
    }
    receiver.wait_for(2, Duration::from_secs(10)).await;
    let path = format!("/api/v1/webhooks/endpoints/{endpoint}/deliveries");
    let page = stack
        .client
        .get_until(&path, Duration::from_secs(10), |page| {
            page["deliveries"]
                .as_array()
                .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["status"] == "succeeded"))
        })
        .await;
    let old = page["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let recent = page["deliveries"][1]["id"].as_str().unwrap().to_owned();

    let options: sqlx::postgres::PgConnectOptions = stack.database_url().parse().unwrap();
    let pool = sqlx::PgPool::connect_with(options.options([("search_path", webhook_dispatcher::SCHEMA)]))
        .await
        .unwrap();
    // Forty days pass for one delivery and its event.
    sqlx::query(
        "WITH aged AS (UPDATE deliveries SET updated_at = now() - interval '40 days' WHERE id = $1 RETURNING event_id)
         UPDATE events SET received_at = now() - interval '40 days' WHERE id IN (SELECT event_id FROM aged)",
    )
    .bind(&old)
    .execute(&pool)
    .await
    .unwrap();
    let thirty_days = Duration::from_secs(30 * 86_400);
    let removed = webhook_dispatcher::retention::prune(&pool, thirty_days, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        removed,
        webhook_dispatcher::retention::Removed {
            deliveries: 1,
            events: 1
        }
    );
    stack
        .client
        .get(&format!("{path}/{old}"))
        .await
        .assert_problem(404, "not-found");
    let kept = stack.client.get(&format!("{path}/{recent}")).await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(kept.json["attempt_log"].as_array().map(Vec::len), Some(1));
    let again = webhook_dispatcher::retention::prune(&pool, thirty_days, &Default::default())
        .await
        .unwrap();
    assert_eq!(again, Default::default(), "nothing recent goes");
    pool.close().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_replay_runs_in_pages_stops_at_its_cap_and_resumes() {
    let stack = TestStack::start_with(Options {
        webhook_replay_max_events: Some(700),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let (endpoint, _) = subscribe(&stack.client, &receiver.url, json!(["conversation.started"])).await;
    let options: sqlx::postgres::PgConnectOptions = stack.database_url().parse().unwrap();
    let pool = sqlx::PgPool::connect_with(options.options([("search_path", webhook_dispatcher::SCHEMA)]))
        .await
        .unwrap();
    // 1200 events an hour ago, one a second; every fourth is not wanted.
    sqlx::query(
        "INSERT INTO events (id, workspace_id, event_type, body, received_at)
         SELECT 'evt_replay' || lpad(n::text, 6, '0'), $1,
                CASE WHEN n % 4 = 0 THEN 'message.sent' ELSE 'conversation.started' END,
                convert_to('{}', 'UTF8'), now() - interval '1 hour' + n * interval '1 second'
         FROM generate_series(1, 1200) AS n",
    )
    .bind(&stack.workspace_id)
    .execute(&pool)
    .await
    .unwrap();
    let since = chrono::Utc::now() - chrono::Duration::hours(2);
    let replay_path = format!("/api/v1/webhooks/endpoints/{endpoint}/replay");
    let first = stack
        .client
        .post(&replay_path, json!({"since": since.to_rfc3339()}))
        .await;
    assert_eq!(first.status, 202, "{}", first.text);
    let progress = |id: &str| format!("/api/v1/webhooks/endpoints/{endpoint}/replays/{id}");
    let capped = stack
        .client
        .get_until(
            &progress(first.json["id"].as_str().unwrap()),
            Duration::from_secs(30),
            |r| r["status"] != "running",
        )
        .await;
    assert_eq!(capped["status"], "capped", "{capped}");
    assert_eq!(capped["examined"], "700");
    assert_eq!(capped["replayed"], "525", "three in four of the first 700");
    let resume = capped["resume_since"].as_str().expect("where to resume").to_owned();

    let second = stack.client.post(&replay_path, json!({"since": resume})).await;
    assert_eq!(second.status, 202, "{}", second.text);
    let done = stack
        .client
        .get_until(
            &progress(second.json["id"].as_str().unwrap()),
            Duration::from_secs(30),
            |r| r["status"] != "running",
        )
        .await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["examined"], "501", "from the 700th event, again, to the last");

    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE endpoint_id = $1")
        .bind(&endpoint)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        deliveries, 900,
        "each wanted event once, the one replayed twice included"
    );
    receiver.wait_for(900, Duration::from_secs(60)).await;
    pool.close().await;
    stack.stop().await;
}
