//! A webhook receiver on loopback: records every request it gets and
//! answers with a status the test scripts (default 200).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct Inbox {
    received: Vec<Received>,
    /// Statuses to answer with, in order; 200 once used up.
    script: VecDeque<u16>,
    /// `Retry-After` seconds sent with scripted non-2xx answers.
    retry_after: Option<u64>,
    /// How long to take over every answer.
    delay: Duration,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(Arc::clone(&inbox));
        let (addr, _) = crate::local_server::serve(app, "the webhook receiver").await;
        let url = format!("http://{addr}/hooks");
        Self { url, inbox }
    }

    /// Answers the next requests with these statuses.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.inbox.lock().expect("lock").script.extend(statuses);
    }

    /// Sends `Retry-After: seconds` with scripted failures.
    pub fn ask_to_retry_after(&self, seconds: u64) {
        self.inbox.lock().expect("lock").retry_after = Some(seconds);
    }

    /// Takes this long over every answer (a slow or hanging receiver).
    pub fn respond_after(&self, delay: Duration) {
        self.inbox.lock().expect("lock").delay = delay;
    }

    /// Waits until `count` requests arrived and returns them all.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Counted under the lock, copied once: copying thousands of
            // requests every poll would steal the CPU a benchmark measures.
            let arrived = self.inbox.lock().expect("lock").received.len();
            if arrived >= count {
                return self.received();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {count} webhooks within {within:?}, got {arrived}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inbox.lock().expect("lock").received.clone()
    }
}

async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, headers: HeaderMap, body: Bytes) -> (StatusCode, HeaderMap) {
    let (status, retry_after, delay) = {
        let mut inbox = inbox.lock().expect("lock");
        inbox.received.push(Received {
            headers,
            body,
            at: std::time::Instant::now(),
        });
        let status = StatusCode::from_u16(inbox.script.pop_front().unwrap_or(200)).unwrap_or(StatusCode::OK);
        (status, inbox.retry_after, inbox.delay)
    };
    tokio::time::sleep(delay).await;
    let mut headers = HeaderMap::new();
    if let Some(seconds) = retry_after.filter(|_| !status.is_success()) {
        headers.insert("retry-after", seconds.into());
    }
    (status, headers)
}

/// Verifies webhooks with the Standard Webhooks reference library; `E2E_PYTHON`
/// names a Python that has it (deploy/test.sh provides one).
pub async fn verify_independently(secret: &str, webhooks: &[Received]) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let python = std::env::var("E2E_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/webhook_verifier/verify.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let mut input = String::new();
    for webhook in webhooks {
        let headers: serde_json::Map<String, serde_json::Value> =
            ["webhook-id", "webhook-timestamp", "webhook-signature"]
                .iter()
                .map(|h| ((*h).to_owned(), serde_json::Value::from(webhook.header(h))))
                .collect();
        let line =
            serde_json::json!({"secret": secret, "headers": headers, "body": String::from_utf8_lossy(&webhook.body)});
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).await.map_err(|e| e.to_string())?;
    drop(stdin);
    let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() && stdout.trim() == format!("OK {}", webhooks.len()) {
        Ok(())
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
    }
}
