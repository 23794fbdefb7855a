//! One webhook request: the signed POST of a delivery's stored bytes, and
//! what came of it.

use std::time::{Duration, Instant};

use chrono::Utc;
use outbound_http::{Failure, TargetGuard, body::read_excerpt, retry::retry_after};
use reqwest::StatusCode;

use sealing::webhook_signature as signing;
use service_runtime::telemetry::{self, propagation, spans};
use tracing::Instrument;

use crate::secrets::SecretBox;

/// What is kept of a receiver's answer, for the attempt log.
const EXCERPT_BYTES: usize = 512;
/// Most of an answer read before the connection is given up on: reading
/// small answers to the end lets the connection be reused.
const READ_BYTES: usize = 64 * 1024;

/// Where a delivery goes and what it carries.
#[derive(sqlx::FromRow)]
pub struct Target {
    pub url: String,
    pub enabled: bool,
    pub secret_sealed: Vec<u8>,
    pub previous_secret_sealed: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<chrono::DateTime<Utc>>,
    pub rate_limit_per_second: Option<i32>,
    /// The event exactly as received: the bytes signed and sent.
    pub body: Vec<u8>,
}

impl Target {
    /// The current key, then the previous one while its grace period runs.
    fn signing_keys(&self, secrets: &SecretBox) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut keys = vec![key(&secrets.open(&self.secret_sealed)?)?];
        if let (Some(sealed), Some(until)) = (&self.previous_secret_sealed, self.previous_secret_expires_at)
            && until > Utc::now()
        {
            keys.push(key(&secrets.open(sealed)?)?);
        }
        Ok(keys)
    }
}

/// The HTTP client span of one attempt (`Span::none()` unless traces are
/// exported).
fn attempt_span(url: &str, attempt: &Attempt<'_>) -> tracing::Span {
    if !telemetry::exporting() {
        return tracing::Span::none();
    }
    let url = reqwest::Url::parse(url).ok();
    let host = url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let port = url.as_ref().and_then(reqwest::Url::port_or_known_default).unwrap_or(0);
    let resend = u32::try_from(attempt.number - 1).unwrap_or(0);
    let span = spans::http_client("POST", &host, port, resend);
    propagation::adopt(&span, attempt.traceparent);
    span
}

fn record(span: &tracing::Span, sent: &Result<reqwest::Response, reqwest::Error>) {
    if span.is_none() {
        return;
    }
    match sent {
        Ok(response) => {
            span.record("http.response.status_code", response.status().as_u16());
            if !response.status().is_success() {
                span.record("error.type", response.status().as_str());
                span.record("otel.status_code", "ERROR");
            }
        }
        Err(error) => {
            let kind = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect"
            } else {
                "request"
            };
            span.record("error.type", kind);
            span.record("otel.status_code", "ERROR");
        }
    }
}

fn key(secret: &str) -> anyhow::Result<Vec<u8>> {
    signing::key_bytes(secret).ok_or_else(|| anyhow::anyhow!("a stored secret is not a whsec_ secret"))
}

/// What identifies one attempt to the receiver.
pub struct Attempt<'a> {
    pub delivery_id: &'a str,
    pub event_id: &'a str,
    /// 1 for the first attempt.
    pub number: i32,
    /// The span that processed the event, parent of the attempt's.
    pub traceparent: Option<&'a str>,
}

pub struct Outcome {
    pub status: Option<StatusCode>,
    pub error: String,
    pub latency: Duration,
    pub excerpt: String,
    pub retry_after: Option<Duration>,
}

impl Outcome {
    fn network(error: String, latency: Duration) -> Self {
        Self {
            status: None,
            error,
            latency,
            excerpt: String::new(),
            retry_after: None,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.is_success())
    }

    pub fn latency_ms(&self) -> i32 {
        self.latency.as_millis().min(i32::MAX as u128) as i32
    }

    pub fn http_status(&self) -> Option<i32> {
        self.status.map(|s| i32::from(s.as_u16()))
    }
}

/// Signs and POSTs `target.body`. A failure to reach the receiver is an
/// outcome; only a broken stored secret is an error.
pub async fn send(
    http: &reqwest::Client,
    guard: &TargetGuard,
    secrets: &SecretBox,
    attempt: Attempt<'_>,
    target: &Target,
) -> anyhow::Result<Outcome> {
    if let Some(refusal) = guard.refuse_literal(&target.url) {
        return Ok(Outcome::network(refusal, Duration::ZERO));
    }
    let timestamp = Utc::now().timestamp();
    let keys = target.signing_keys(secrets)?;
    let signatures: Vec<String> = keys
        .iter()
        .map(|k| signing::standard_signature(k, attempt.event_id, timestamp, &target.body))
        .collect();
    let span = attempt_span(&target.url, &attempt);
    let started = Instant::now();
    let sent = http
        .post(&target.url)
        .header("content-type", "application/json")
        .header("webhook-id", attempt.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signatures.join(" "))
        .header("x-signature", signing::body_signature(&keys[0], &target.body))
        .header("x-idempotency-key", attempt.delivery_id)
        .header("x-attempt", attempt.number.to_string())
        .body(target.body.clone())
        .send()
        .instrument(span.clone())
        .await;
    record(&span, &sent);
    Ok(match sent {
        Ok(response) => {
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let bytes = read_excerpt(response, EXCERPT_BYTES, READ_BYTES).await;
            let excerpt = String::from_utf8_lossy(&bytes).into_owned();
            Outcome {
                status: Some(status),
                error: String::new(),
                latency: started.elapsed(),
                excerpt,
                retry_after,
            }
        }
        Err(error) => Outcome::network(Failure::from(error).to_string(), started.elapsed()),
    })
}
