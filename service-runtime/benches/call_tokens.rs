//! What authenticating a call between components costs, against its peer:
//! the gateway signs a call token and the service checks it (HMAC-SHA256
//! with a pairwise key, as `calls` does), next to signing and verifying
//! the same claims with Ed25519, the signature a public-key design would
//! use. One thread, in-process; prints the load average, then CPU per
//! operation for each and the ratio.
//!
//!   cargo bench -p service-runtime --bench call_tokens   (ROUNDS=5 CALLS=200000)

use ed25519_dalek::{Signer, SigningKey, Verifier};
use http::{HeaderMap, HeaderValue};
use service_runtime::calls::{self, CallKeys, Party, checking::check, signing::now_ms};

const PATH: &str = "/chatbot.v1.ConversationService/GetConversation";

/// This thread's CPU time, in nanoseconds (the scheduler's own count).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a CPU time")
}

fn per_op(n: u32, mut op: impl FnMut()) -> f64 {
    let started = thread_cpu_ns();
    for _ in 0..n {
        op();
    }
    (thread_cpu_ns() - started) as f64 / f64::from(n) / 1000.0
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    println!(
        "load average before: {}",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let (rounds, calls) = (env("ROUNDS", 5), env("CALLS", 200_000));
    let text = calls::keys::generate();
    let gateway = CallKeys::parse(Party::Gateway, &text).unwrap();
    let chatbot = CallKeys::parse(Party::Chatbot, &text).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-workspace-id",
        HeaderValue::from_static("ws_0123456789abcdef01234567"),
    );
    headers.insert(
        "x-principal-id",
        HeaderValue::from_static("key_0123456789abcdef01234567"),
    );
    headers.insert(
        "x-scopes",
        HeaderValue::from_static("read:conversations write:messages read:bots"),
    );
    headers.insert(
        "x-request-id",
        HeaderValue::from_static("req_0123456789abcdef0123456789abcdef"),
    );
    let expires = now_ms() + 10_000;
    let token = gateway.token(Party::Chatbot, PATH, &headers, expires).unwrap();
    headers.insert(calls::TOKEN, token);

    // The same claims as one message, for the signature.
    let claims = format!("{PATH}\n{expires}\n{:?}", headers);
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let signature = key.sign(claims.as_bytes());
    let public = key.verifying_key();

    let mut rows = Vec::new();
    for round in 1..=rounds {
        let sign = per_op(calls, || {
            std::hint::black_box(gateway.token(Party::Chatbot, PATH, &headers, expires));
        });
        let verify = per_op(calls, || {
            check(&chatbot, PATH, &headers).expect("the token checks out");
        });
        let ed_calls = (calls / 10).max(1);
        let ed_sign = per_op(ed_calls, || {
            std::hint::black_box(key.sign(claims.as_bytes()));
        });
        let ed_verify = per_op(ed_calls, || {
            public.verify(claims.as_bytes(), &signature).expect("valid");
        });
        println!(
            "round {round}: call token sign {sign:.2} µs, check {verify:.2} µs (scope lookup and principal included) | Ed25519 sign {ed_sign:.2} µs, verify {ed_verify:.2} µs"
        );
        rows.push((sign + verify, ed_sign + ed_verify));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ours, ed) = rows[rows.len() / 2];
    println!(
        "median round: {ours:.2} µs of CPU per call (sign + check) vs {ed:.2} µs with Ed25519: {:.1}x cheaper",
        ed / ours
    );
}
