//! What operators watch: every service's `/metrics` parses with
//! Prometheus's own parser (promtool) and carries the series the alert
//! rules and the dashboard use; the shipped alert rules pass promtool's
//! checks and unit tests.

use std::{collections::BTreeSet, io::Write, path::Path, process::Command};

use e2e::{Client, Options, TestStack};
use serde_json::{Value, json};

fn promtool() -> Command {
    let found = Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "promtool is missing: it comes with Debian's prometheus package (sudo apt-get install -y prometheus); \
         deploy/test.sh installs it"
    );
    Command::new("promtool")
}

/// Runs `promtool check metrics` over a scrape; panics with its findings.
fn check_metrics(name: &str, text: &str) {
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejects {name}'s /metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The metric family names a scrape declares.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

async fn scrape(url: &str) -> String {
    let reply = reqwest::get(url).await.expect("a scrape");
    assert_eq!(reply.status(), 200, "{url}");
    reply.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metrics_endpoint_parses_and_has_what_alerts_and_dashboards_use() {
    let stack = TestStack::start_with(Options {
        admin_ports: true,
        ..Options::default()
    })
    .await;
    let api = &stack.client;
    let created = api
        .post("/api/v1/conversations", json!({"user_id": "u", "channel": "web"}))
        .await;
    assert_eq!(created.status, 200);
    api.get("/api/v1/conversations/conv_missing")
        .await
        .assert_problem(404, "not-found");

    let mut declared = BTreeSet::new();
    // Recording folds samples in every few milliseconds.
    let text = {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = stack.gateway_metrics().await;
            if text.contains("route=\"/api/v1/conversations/{conversation_id}\",code=\"404\"") {
                break text;
            }
            assert!(tokio::time::Instant::now() < deadline, "no 404 recorded:\n{text}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    check_metrics("the gateway", &text);
    let public = Client::anonymous(&stack.base_url).get("/metrics").await;
    assert_eq!(public.status, 404, "metrics stay off the public port");
    assert!(
        text.contains("gateway_rate_limit_decisions_total{decision=\"allowed\"} "),
        "{text}"
    );
    assert!(
        text.contains("gateway_upstream_call_duration_seconds_count{upstream=\"chatbot\"} 2"),
        "the create and the get went to chatbot-service: {text}"
    );
    assert!(
        text.contains("gateway_http_requests_total{method=\"POST\",route=\"/api/v1/conversations\",code=\"200\"} 1")
    );
    declared.extend(families(&text));
    for (service, addr) in &stack.admin_addrs {
        let text = scrape(&format!("http://{addr}/metrics")).await;
        check_metrics(service, &text);
        assert!(text.contains("db_pool_max_connections "), "{service}: {text}");
        declared.extend(families(&text));
        if *service == "chatbot" {
            assert!(
                text.contains(
                    "grpc_server_handled_total{grpc_service=\"chatbot.v1.ConversationService\",\
                     grpc_method=\"GetConversation\",grpc_code=\"NotFound\"} 1"
                ),
                "{text}"
            );
            assert!(text.contains("outbox_oldest_event_age_seconds "), "{text}");
        }
        if *service == "webhooks" {
            let queue = format!("queue=\"webhook-dispatcher.{}\"", stack.exchange);
            assert!(
                text.contains(&format!("events_queue_consumers{{{queue}}} 1")),
                "the dispatcher reports its own consumer: {text}"
            );
            assert!(
                text.contains(&format!("events_queue_messages_ready{{{queue}}} ")),
                "{text}"
            );
        }
        assert_eq!(
            reqwest::get(format!("http://{addr}/healthz")).await.unwrap().status(),
            200
        );
    }
    assert_eq!(stack.admin_addrs.len(), 4, "every service serves /metrics");

    // Every series the alert rules and the dashboard query exists.
    let observability = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/observability");
    let rules = std::fs::read_to_string(observability.join("alerts.yml")).unwrap();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(observability.join("grafana-dashboard.json")).unwrap()).unwrap();
    let mut queries = vec![rules];
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for query in &queries {
        for word in query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let family = word.strip_suffix("_bucket").unwrap_or(word);
            let metric_like = [
                "gateway_",
                "grpc_server_",
                "outbox_",
                "webhook_",
                "db_pool_",
                "events_queue_",
            ]
            .iter()
            .any(|p| family.starts_with(p));
            if metric_like {
                assert!(
                    declared.contains(family),
                    "{family} is queried but no service exposes it"
                );
            }
        }
    }
    stack.stop().await;
}

#[test]
fn the_alert_rules_pass_promtools_checks_and_unit_tests() {
    let observability = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/observability");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]] {
        let out = promtool().args(args).current_dir(&observability).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
