//! Building the HTTP client for calls out: bounded connect and request
//! times, redirects never followed (an answer is what the target said, and
//! a redirect could point anywhere), and rustls as the TLS stack.

use std::{sync::Arc, time::Duration};

use crate::target_guard::TargetGuard;

/// How long a call may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// The whole request, answer included; `None` for streamed answers,
    /// which set it per request or bound the silence instead.
    pub request: Option<Duration>,
    /// The longest silence while reading an answer.
    pub read: Option<Duration>,
}

/// A client for targets users choose: every address it connects to is
/// checked by `guard`.
pub fn guarded(guard: &TargetGuard, timeouts: Timeouts, user_agent: &str) -> reqwest::Client {
    builder(timeouts, user_agent)
        .dns_resolver(Arc::new(guard.clone()))
        .build()
        .expect("the HTTP client's settings are valid")
}

/// A client for targets the operator configured (an identity provider's
/// key set), which may be internal.
pub fn configured(timeouts: Timeouts, user_agent: &str) -> reqwest::Client {
    builder(timeouts, user_agent)
        .build()
        .expect("the HTTP client's settings are valid")
}

fn builder(timeouts: Timeouts, user_agent: &str) -> reqwest::ClientBuilder {
    crate::tls::install();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent);
    if let Some(request) = timeouts.request {
        builder = builder.timeout(request);
    }
    if let Some(read) = timeouts.read {
        builder = builder.read_timeout(read);
    }
    builder
}
