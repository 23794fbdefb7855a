//! Rate limits as clients see them: buckets per principal, refill at the
//! configured rate, one budget across gateway replicas sharing Redis, and
//! no hanging when Redis goes away.

use std::time::{Duration, Instant};

use e2e::{Client, Options, TestStack, redis_server::RedisServer};
use gateway::{
    config::{RateLimitConfig, parse_plans},
    rate_limit::{Quota, RedisFailure},
};

fn limits(plans: &str, redis: Option<&RedisServer>) -> RateLimitConfig {
    RateLimitConfig {
        plans: parse_plans(plans).unwrap(),
        per_ip: Quota {
            burst: 1000,
            per_second: 1000.0,
        },
        per_ip_webhooks: Quota {
            burst: 1000,
            per_second: 1000.0,
        },
        redis_url: redis.map(|r| r.url.clone()),
        redis_timeout: Duration::from_millis(50),
        redis_key_prefix: "test:".into(),
        on_redis_failure: RedisFailure::Local,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_after_the_burst_is_refused_and_the_bucket_refills() {
    let stack = TestStack::start_with(Options {
        rate_limits: Some(limits("default:3:5,pro:50:50", None)),
        ..Options::default()
    })
    .await;
    let api = &stack.client;
    for expected_remaining in ["2", "1", "0"] {
        let reply = api.get("/api/v1/conversations").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("ratelimit-remaining"), Some(expected_remaining));
        assert!(reply.header("ratelimit-reset").is_some());
    }
    let refused = api.get("/api/v1/conversations").await;
    refused.assert_problem(429, "rate-limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));

    // Another workspace has its own bucket.
    let other = stack.new_workspace("other").await;
    assert_eq!(other.get("/api/v1/conversations").await.status, 200);

    // 5 tokens a second: one is back after 200 ms.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(api.get("/api/v1/conversations").await.status, 200);
    // On a loaded machine more may have refilled meanwhile; the bucket
    // still runs dry again after a few.
    let mut refused = None;
    for _ in 0..5 {
        let reply = api.get("/api/v1/conversations").await;
        if reply.status == 429 {
            refused = Some(reply);
            break;
        }
    }
    refused
        .expect("the bucket runs dry again")
        .assert_problem(429, "rate-limited");

    // A workspace on a bigger plan gets the bigger quota.
    let created = stack
        .admin()
        .post(
            "/admin/v1/workspaces",
            serde_json::json!({"name": "big", "plan": "pro"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let pro = Client::with_key(&stack.base_url, created.json["api_key"]["key"].as_str().unwrap());
    assert_eq!(
        pro.get("/api/v1/conversations").await.header("ratelimit-limit"),
        Some("50")
    );
    let unknown_plan = stack
        .admin()
        .post("/admin/v1/workspaces", serde_json::json!({"name": "x", "plan": "gold"}))
        .await;
    unknown_plan.assert_problem(400, "invalid-argument");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_enforce_one_budget() {
    let redis = RedisServer::start().await;
    let stack = TestStack::start_with(Options {
        rate_limits: Some(limits("default:6:0.01", Some(&redis))),
        extra_gateways: 1,
        ..Options::default()
    })
    .await;
    let key = stack.client_key().await;
    let clients: Vec<Client> = stack
        .gateway_urls
        .iter()
        .map(|url| Client::with_key(url, &key))
        .collect();
    wait_for_redis(&clients[0], &stack.gateway_admin_urls[0]).await;

    let requests = (0..14).map(|i| clients[i % 2].get("/api/v1/conversations"));
    let replies = futures_util::future::join_all(requests).await;
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        (admitted, refused),
        (6 - 1, 14 - 5),
        "one shared burst of 6 (one token spent on the probe)"
    );
    stack.stop().await;
}

/// Redis connects in the background: waits until a request is decided by
/// Redis (the fallback counter does not move). Spends one Redis token, and
/// returns how many local tokens the requests before it spent.
async fn wait_for_redis(client: &Client, admin_url: &str) -> usize {
    let metrics = Client::anonymous(admin_url);
    let fallbacks = || async {
        let text = metrics.get("/metrics").await.text;
        text.lines()
            .find_map(|l| l.strip_prefix("gateway_rate_limit_redis_fallbacks_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("the fallback counter is exported")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut local_tokens = 0;
    loop {
        let before = fallbacks().await;
        let reply = client.get("/api/v1/conversations").await;
        if fallbacks().await != before {
            local_tokens += 1;
        } else if reply.status == 200 {
            return local_tokens;
        }
        assert!(Instant::now() < deadline, "the gateway never used Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_mid_run_never_hangs_requests() {
    let mut redis = RedisServer::start().await;
    let stack = TestStack::start_with(Options {
        rate_limits: Some(limits("default:4:0.01", Some(&redis))),
        ..Options::default()
    })
    .await;
    let api = &stack.client;
    let local_spent = wait_for_redis(api, &stack.gateway_admin_urls[0]).await;
    redis.stop();

    let mut statuses = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        statuses.push(api.get("/api/v1/conversations").await.status);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a request waited {:?} on a dead Redis",
            started.elapsed()
        );
    }
    // The local fallback has its own bucket of 4, less what it decided
    // before Redis was first reached.
    let admitted = 4 - local_spent.min(4);
    let mut expected = vec![200; admitted];
    expected.resize(6, 429);
    assert_eq!(statuses, expected);
    let metrics = stack.gateway_metrics().await;
    assert!(
        !metrics.contains("gateway_rate_limit_redis_fallbacks_total 0"),
        "{metrics}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_systems_webhooks_have_a_budget_per_ip_apart_from_peoples() {
    let quota = |burst| Quota {
        burst,
        per_second: 0.01,
    };
    let stack = TestStack::start_with(Options {
        rate_limits: Some(RateLimitConfig {
            per_ip_webhooks: quota(5),
            ..limits("default:100:100", None)
        }),
        ..Options::default()
    })
    .await;
    let anonymous = Client::anonymous(&stack.base_url);
    let hook = "/hooks/shopify/int_aaaaaaaaaaaaaaaaaaaaaaaa";
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(anonymous.post(hook, serde_json::json!({})).await.status);
    }
    assert!(statuses[..5].iter().all(|s| *s != 429), "{statuses:?}");
    assert_eq!(statuses[5], 429, "the sixth webhook from this IP is over its budget");
    // The same IP's other anonymous calls have their own budget.
    let token = anonymous
        .post_form("/oauth/token", &[("grant_type", "client_credentials")])
        .await;
    assert_ne!(token.status, 429, "{}", token.text);
    stack.stop().await;
}
