//! Gateway benchmark: one authenticated, rate-limited GET transcoded to gRPC,
//! with each way in (API key, HS256 JWT, OAuth access token), against the
//! same upstream called directly over gRPC, in one run, as ratios.
//!
//!     cargo bench -p e2e --bench gateway
//!
//! Everything runs in this process on this machine (2 cores here), the
//! load generator included, so absolute numbers are modest; the ratios are
//! what to compare. `BENCH_SECONDS` (default 5) and `BENCH_CONCURRENCY`
//! (default 16) tune the run.

use std::time::{Duration, Instant};

use e2e::{
    Client, Options, TestStack,
    bench_clock::{CpuTime, print_machine},
    jwt_issuer,
};
use gateway::config::{JwtConfig, RateLimitConfig, parse_plans};
use proto::chatbot::v1::{GetConversationRequest, conversation_service_client::ConversationServiceClient};
use serde_json::json;
use service_runtime::grpc_client::CallChannel;

struct Outcome {
    name: &'static str,
    requests: usize,
    errors: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    /// CPU per request over the measured window.
    cpu: String,
}

impl Outcome {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted
            .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let seconds = env("BENCH_SECONDS", 5);
    let concurrency = env("BENCH_CONCURRENCY", 16) as usize;
    print_machine("gateway");
    let stack = TestStack::start_with(Options {
        jwt: Some(JwtConfig {
            hs256_secret: Some(jwt_issuer::HS256_SECRET.into()),
            jwks: None,
            asymmetric_algorithms: vec![],
            issuers: vec![jwt_issuer::ISSUER.into()],
            audience: jwt_issuer::AUDIENCE.into(),
            leeway_seconds: 5,
            workspace_claim: "workspace_id".into(),
            jwks_min_refresh: Duration::from_secs(60),
            jwks_refresh_every: Duration::from_secs(3600),
        }),
        // Limits are checked on every request but never reached.
        rate_limits: Some(RateLimitConfig {
            plans: parse_plans("default:1000000000:1000000000").expect("plans"),
            per_ip: gateway::rate_limit::Quota {
                burst: 1_000_000_000,
                per_second: 1e9,
            },
            per_ip_webhooks: gateway::rate_limit::Quota {
                burst: 1_000_000_000,
                per_second: 1e9,
            },
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            redis_key_prefix: String::new(),
            on_redis_failure: gateway::rate_limit::RedisFailure::Local,
        }),
        ..Options::default()
    })
    .await;
    let conv = stack.client.create_conversation("bench-user").await;
    let path = format!("/api/v1/conversations/{conv}");
    let api_key = stack
        .client
        .post("/api/v1/api-keys", json!({"name": "bench"}))
        .await
        .json["api_key"]["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    let mut claims = jwt_issuer::claims(&stack.workspace_id, "read:conversations");
    claims["exp"] = json!(chrono::Utc::now().timestamp() + 3600);
    let jwt = jwt_issuer::sign_hs256(&claims);
    let oauth = oauth_token(&stack).await;

    let duration = Duration::from_secs(seconds);
    let mut results = Vec::new();
    for (name, token) in [
        ("gateway, API key", &api_key),
        ("gateway, HS256 JWT", &jwt),
        ("gateway, OAuth ES256 token", &oauth),
    ] {
        let client = Client::with_key(&stack.base_url, token);
        assert_eq!(
            client.get(&path).await.status,
            200,
            "{name} works before it is measured"
        );
        results.push(http_load(name, &client, &path, concurrency, duration).await);
    }
    let chatbot = stack.gateway_channel("chatbot");
    results.push(grpc_load(chatbot, &stack.workspace_id, &conv, concurrency, duration).await);

    print_report(&results, concurrency);
    stack.stop().await;
}

async fn oauth_token(stack: &TestStack) -> String {
    let client = stack
        .client
        .post(
            "/api/v1/oauth/clients",
            json!({"name": "bench", "kind": "confidential", "redirect_uris": ["https://bench.example/cb"],
                   "allowed_scopes": ["read:conversations"]}),
        )
        .await;
    let (id, secret) = (
        client.json["client"]["client_id"].as_str().unwrap(),
        client.json["client"]["client_secret"].as_str().unwrap(),
    );
    let token = Client::anonymous(&stack.base_url)
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ],
        )
        .await;
    token.json["access_token"].as_str().expect("an access token").to_owned()
}

async fn http_load(name: &'static str, client: &Client, path: &str, workers: usize, duration: Duration) -> Outcome {
    let (client, path) = (client.clone(), path.to_owned());
    run(name, workers, duration, move || {
        let (client, path) = (client.clone(), path.clone());
        async move { client.get(&path).await.status == 200 }
    })
    .await
}

/// Calls signed as the gateway signs them: the service's share of a
/// request, without the gateway's.
async fn grpc_load(channel: CallChannel, workspace: &str, conv: &str, workers: usize, duration: Duration) -> Outcome {
    let (workspace, conv) = (workspace.to_owned(), conv.to_owned());
    run("direct gRPC (no gateway, call token)", workers, duration, move || {
        let mut client = ConversationServiceClient::new(channel.clone());
        let (workspace, conv) = (workspace.clone(), conv.clone());
        async move {
            let mut request = tonic::Request::new(GetConversationRequest { conversation_id: conv });
            request
                .metadata_mut()
                .insert("x-workspace-id", workspace.parse().expect("ascii id"));
            request
                .metadata_mut()
                .insert("x-scopes", "read:conversations".parse().expect("ascii"));
            client.get_conversation(request).await.is_ok()
        }
    })
    .await
}

/// `workers` loops calling `call` back to back for `duration`, after a
/// one-second warm-up that is not counted.
async fn run<F, Fut>(name: &'static str, workers: usize, duration: Duration, call: F) -> Outcome
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let warm_until = Instant::now() + Duration::from_secs(1);
    let stop_at = warm_until + duration;
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(warm_until.into()).await;
        CpuTime::now()
    });
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let call = call.clone();
        set.spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            loop {
                let started = Instant::now();
                if started >= stop_at {
                    break;
                }
                let ok = call().await;
                if started >= warm_until {
                    latencies.push(started.elapsed());
                    errors += usize::from(!ok);
                }
            }
            (latencies, errors)
        });
    }
    let mut outcome = Outcome {
        name,
        requests: 0,
        errors: 0,
        seconds: duration.as_secs_f64(),
        latencies: Vec::new(),
        cpu: String::new(),
    };
    while let Some(done) = set.join_next().await {
        let (latencies, errors) = done.expect("a load worker");
        outcome.requests += latencies.len();
        outcome.errors += errors;
        outcome.latencies.extend(latencies);
    }
    let cpu_at_start = cpu_at_start.await.expect("the CPU sample");
    outcome.cpu = CpuTime::now().per_unit_since(&cpu_at_start, outcome.requests);
    outcome
}

fn print_report(results: &[Outcome], concurrency: usize) {
    println!("\nGET /api/v1/conversations/{{id}}, {concurrency} concurrent clients, load generator in-process\n");
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>7}",
        "mode", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for r in results {
        println!(
            "{:<36} {:>9.0} {:>9.3} {:>9.3} {:>7}",
            r.name,
            r.rps(),
            r.percentile(0.50).as_secs_f64() * 1e3,
            r.percentile(0.99).as_secs_f64() * 1e3,
            r.errors
        );
    }
    println!("\nCPU per request (the services, the gateway and the load generator share this process):");
    for r in results {
        println!("  {:<34} {}", r.name, r.cpu);
    }
    let direct = results.last().expect("the direct baseline runs last");
    let key = &results[0];
    println!("\nratios (throughput, p50, p99):");
    for r in results.iter().take(results.len() - 1) {
        println!(
            "  {:<34} vs direct gRPC: {:.2}x  {:.2}x  {:.2}x   vs API key: {:.2}x  {:.2}x  {:.2}x",
            r.name,
            r.rps() / direct.rps(),
            ratio(r.percentile(0.5), direct.percentile(0.5)),
            ratio(r.percentile(0.99), direct.percentile(0.99)),
            r.rps() / key.rps(),
            ratio(r.percentile(0.5), key.percentile(0.5)),
            ratio(r.percentile(0.99), key.percentile(0.99)),
        );
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}
