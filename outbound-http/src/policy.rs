//! The one policy for calls to a vendor's API, written once for every
//! vendor: each call goes through its connection's circuit breaker, and
//! what may succeed later (a network failure, a 5xx, a 429) is tried again
//! on a schedule with jitter, waiting at least as long as the vendor's
//! `Retry-After` asks.
//!
//! Only a vendor failing (network, 5xx) counts against its breaker: a 429
//! is the vendor working as designed, and a 4xx is the request's fault.

use std::{sync::Arc, time::Duration};

use moka::sync::Cache;
use reqwest::{RequestBuilder, Response};

use crate::{
    breaker::{Breaker, BreakerSettings},
    failure::Failure,
    retry::{RetrySchedule, retry_after, retryable_status},
};

/// Connections whose breakers are remembered, idle ones forgotten first.
const TRACKED: u64 = 10_000;
const FORGET_IDLE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The connection failed too often lately; calls pause for this long.
    #[error("calls to it are paused for {} s after repeated failures", .0.as_secs().max(1))]
    CircuitOpen(Duration),
    /// No answer, after every attempt the schedule allows.
    #[error("{0}")]
    Failed(Failure),
}

#[derive(Clone)]
pub struct CallPolicy {
    retries: RetrySchedule,
    breaker: BreakerSettings,
    breakers: Cache<String, Arc<Breaker>>,
}

impl CallPolicy {
    pub fn new(retries: RetrySchedule, breaker: BreakerSettings) -> Self {
        Self {
            retries,
            breaker,
            breakers: Cache::builder().max_capacity(TRACKED).time_to_idle(FORGET_IDLE).build(),
        }
    }

    /// Sends what `request` builds for `connection`, retrying by the policy.
    /// The answer is the first one not worth retrying, or the last one
    /// when the schedule ran out; the caller reads its status.
    pub async fn send(&self, connection: &str, request: impl Fn() -> RequestBuilder) -> Result<Response, CallError> {
        let breaker = self
            .breakers
            .get_with_by_ref(connection, || Arc::new(Breaker::new(self.breaker)));
        let mut attempts = 0;
        loop {
            let permit = breaker.acquire().map_err(CallError::CircuitOpen)?;
            attempts += 1;
            let outcome = request().send().await.map_err(Failure::from);
            let vendor_failed = match &outcome {
                Ok(response) => response.status().is_server_error(),
                Err(failure) => failure.retryable(),
            };
            breaker.record(permit, vendor_failed);
            let (retryable, asked) = match &outcome {
                Ok(response) => (retryable_status(response.status()), retry_after(response.headers())),
                Err(failure) => (failure.retryable(), None),
            };
            let wait = retryable.then(|| self.retries.next_delay(attempts, asked)).flatten();
            match (outcome, wait) {
                (Ok(response), None) => return Ok(response),
                (Err(failure), None) => return Err(CallError::Failed(failure)),
                (_, Some(wait)) => {
                    tracing::info!(
                        connection,
                        attempts,
                        wait_ms = wait.as_millis() as u64,
                        "retrying a vendor call"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering},
        },
        time::Instant,
    };

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// A server answering each request with the next status line and
    /// headers of `script` (200 once it runs out), counting requests.
    async fn vendor(script: &[&str]) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(
            script.iter().map(|s| s.to_string()).collect::<VecDeque<_>>(),
        ));
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                counted.fetch_add(1, Ordering::SeqCst);
                let head = script.lock().unwrap().pop_front().unwrap_or("200 OK".into());
                let answer = format!("HTTP/1.1 {head}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url, calls)
    }

    fn client() -> reqwest::Client {
        let timeouts = crate::client::Timeouts {
            connect: Duration::from_secs(2),
            request: Some(Duration::from_secs(5)),
            read: None,
        };
        crate::client::configured(timeouts, "policy-test")
    }

    fn policy(attempts: u32) -> CallPolicy {
        let breaker = BreakerSettings {
            consecutive_failures: 3,
            open_for: Duration::from_secs(60),
            ..BreakerSettings::default()
        };
        CallPolicy::new(RetrySchedule::exponential(Duration::from_millis(10), attempts), breaker)
    }

    #[tokio::test]
    async fn a_429_is_retried_after_the_wait_the_vendor_asked_for() {
        let (url, calls) = vendor(&["429 Too Many Requests\r\nretry-after: 1"]).await;
        let http = client();
        let started = Instant::now();
        let answer = policy(3).send("shop-a", || http.get(&url)).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(
            started.elapsed() >= Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_client_error_is_answered_at_once_and_never_opens_the_breaker() {
        let (url, calls) = vendor(&["401 Unauthorized"; 5]).await;
        let http = client();
        let policy = policy(3);
        for _ in 0..5 {
            let answer = policy.send("shop-a", || http.get(&url)).await.unwrap();
            assert_eq!(answer.status(), 401);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 5, "no retries, no pause");
    }

    #[tokio::test]
    async fn a_failing_connection_is_paused_without_pausing_the_others() {
        let (url, calls) = vendor(&["502 Bad Gateway"; 3]).await;
        let http = client();
        let policy = policy(3);
        let last = policy.send("shop-a", || http.get(&url)).await.unwrap();
        assert_eq!(last.status(), 502, "the last answer once the schedule ran out");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let paused = policy.send("shop-a", || http.get(&url)).await;
        assert!(matches!(paused, Err(CallError::CircuitOpen(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3, "a paused connection sends nothing");
        let other = policy.send("shop-b", || http.get(&url)).await.unwrap();
        assert_eq!(other.status(), 200);
    }
}
