//! Token-bucket rate limits: per principal (workspace + credential) with
//! per-plan quotas, and per client IP for routes without credentials.
//!
//! With Redis configured every gateway replica shares one budget per key
//! ([`redis`]); otherwise, and whenever Redis does not answer in time, each
//! replica limits on its own ([`local`]). Every answer carries the IETF
//! draft `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
//! fields; a refusal is a 429 problem with `Retry-After`.

mod config;
pub mod local;
pub mod redis;

pub use config::{DEFAULT_PLANS, RateLimitConfig, parse_plans};

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::{
    AppState,
    auth::{Principal, workspace_plans::DEFAULT_PLAN},
    metrics::Metrics,
    problem::{Problem, ProblemContext},
};

/// Burst size and refill rate of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub burst: u32,
    pub per_second: f64,
}

impl Quota {
    /// Time for one token to come back.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }
}

/// What to do when Redis is configured but does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    /// Limit on this replica alone until Redis is back (the default).
    Local,
    /// Let requests through unlimited.
    Open,
    /// Refuse requests with 503.
    Closed,
}

/// The outcome of taking one token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset: Duration,
    /// When refused: how long until one token is available.
    pub retry_after: Duration,
}

pub struct RateLimits {
    plans: HashMap<String, Quota>,
    per_ip: Quota,
    per_ip_webhooks: Quota,
    local: local::LocalLimiter,
    redis: Option<redis::RedisLimiter>,
    on_redis_failure: RedisFailure,
    metrics: Arc<Metrics>,
}

impl RateLimits {
    /// The limits `config` describes, counting what they do in `metrics`.
    /// Redis is connected in the background: until it answers, limits are
    /// local (or as `on_redis_failure` says).
    pub fn from_config(config: &RateLimitConfig, metrics: Arc<Metrics>) -> Result<Self, ::redis::RedisError> {
        let redis = config
            .redis_url
            .as_deref()
            .map(|url| redis::RedisLimiter::connect(url, &config.redis_key_prefix, config.redis_timeout))
            .transpose()?;
        Ok(Self {
            local: local::LocalLimiter::new(),
            plans: config.plans.clone(),
            per_ip: config.per_ip,
            per_ip_webhooks: config.per_ip_webhooks,
            redis,
            on_redis_failure: config.on_redis_failure,
            metrics,
        })
    }

    pub fn has_plan(&self, plan: &str) -> bool {
        self.plans.contains_key(plan)
    }

    fn quota(&self, plan: &str) -> Quota {
        self.plans
            .get(plan)
            .or_else(|| self.plans.get(DEFAULT_PLAN))
            .copied()
            .unwrap_or(Quota {
                burst: 100,
                per_second: 10.0,
            })
    }

    /// Takes one token for `key` under `quota`: from Redis when configured
    /// and answering, from this replica otherwise (or as configured).
    pub async fn take(&self, key: &str, quota: Quota) -> Option<Decision> {
        if let Some(redis) = &self.redis {
            match redis.take(key, quota).await {
                Ok(decision) => return Some(decision),
                Err(error) => {
                    self.metrics.redis_fallbacks.inc();
                    redis.log_failure(&error);
                    match self.on_redis_failure {
                        RedisFailure::Local => {}
                        RedisFailure::Open => return Some(unlimited(quota)),
                        RedisFailure::Closed => return None,
                    }
                }
            }
        }
        Some(self.local.take(key, quota))
    }

    /// Keeps the local limiter's memory bounded; see [`local`].
    pub fn spawn_housekeeping(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let limits = Arc::clone(self);
        service_runtime::shutdown::spawn_periodic(Duration::from_secs(10), shutdown, move || {
            limits.local.forget_idle();
            std::future::ready(())
        });
    }
}

fn unlimited(quota: Quota) -> Decision {
    Decision {
        allowed: true,
        limit: quota.burst,
        remaining: quota.burst,
        reset: Duration::ZERO,
        retry_after: Duration::ZERO,
    }
}

/// Middleware for authenticated routes: one bucket per principal, sized by
/// the workspace's plan.
pub async fn per_principal(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>() else {
        return next.run(request).await;
    };
    let limits = &state.rate_limits;
    let quota = limits.quota(&principal.plan);
    let key = format!("p:{}:{}", principal.workspace_id, principal.principal_id);
    apply(limits, &key, quota, request, next).await
}

/// Middleware for routes without credentials: one bucket per client IP.
pub async fn per_ip(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limits = &state.rate_limits;
    let key = format!("ip:{}", client_ip(&request));
    apply(limits, &key, limits.per_ip, request, next).await
}

/// Middleware for other systems' webhooks: one bigger bucket per sending
/// IP, apart from people's.
pub async fn per_ip_webhooks(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limits = &state.rate_limits;
    let key = format!("hook-ip:{}", client_ip(&request));
    apply(limits, &key, limits.per_ip_webhooks, request, next).await
}

fn client_ip(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

async fn apply(limits: &RateLimits, key: &str, quota: Quota, request: Request, next: Next) -> Response {
    let Some(decision) = limits.take(key, quota).await else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate-limit-unavailable",
            "Rate limiting unavailable",
            "the shared rate limit store is unreachable; retry shortly",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .render(&ProblemContext::of_request(&request));
    };
    if decision.allowed {
        limits.metrics.rate_allowed.inc();
    } else {
        limits.metrics.rate_limited.inc();
        let retry = seconds(decision.retry_after).max(1);
        let mut response = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!(
                "the rate limit of {} requests (refilling {}/s) is used up; retry in {retry} s",
                quota.burst, quota.per_second
            ),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry))
        .render(&ProblemContext::of_request(&request));
        set_headers(response.headers_mut(), &decision);
        return response;
    }
    let mut response = next.run(request).await;
    set_headers(response.headers_mut(), &decision);
    response
}

fn seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

fn set_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(seconds(decision.reset)));
}
