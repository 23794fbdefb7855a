//! Rate limit settings, from the environment.

use std::{collections::HashMap, time::Duration};

use service_runtime::config::{self, ConfigError};

use super::{Quota, RedisFailure};
use crate::auth::workspace_plans::DEFAULT_PLAN;

pub const DEFAULT_PLANS: &str = "default:120:20,pro:600:100,enterprise:3000:500";
const DEFAULT_PER_IP: Quota = Quota {
    burst: 30,
    per_second: 1.0,
};

/// Other systems' webhooks come from few addresses in bursts (a store's
/// sale): a bigger budget than people's clients get.
const DEFAULT_PER_IP_WEBHOOKS: Quota = Quota {
    burst: 2000,
    per_second: 200.0,
};

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `GATEWAY_RATE_LIMIT_PLANS=name:burst:per_second,…`; must include `default`.
    pub plans: HashMap<String, Quota>,
    /// `GATEWAY_RATE_LIMIT_PER_IP=burst:per_second` for routes without credentials.
    pub per_ip: Quota,
    /// `GATEWAY_RATE_LIMIT_PER_IP_WEBHOOKS=burst:per_second` for inbound
    /// webhooks (`/hooks/…`), which their services authenticate.
    pub per_ip_webhooks: Quota,
    /// `GATEWAY_REDIS_URL`: share budgets across replicas.
    pub redis_url: Option<String>,
    /// `GATEWAY_REDIS_TIMEOUT_MS` (default 50).
    pub redis_timeout: Duration,
    /// `GATEWAY_RATE_LIMIT_KEY_PREFIX` (default `chatbot:rl:`).
    pub redis_key_prefix: String,
    /// `GATEWAY_RATE_LIMIT_ON_REDIS_FAILURE=local|open|closed` (default local).
    pub on_redis_failure: RedisFailure,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            plans: parse_plans(DEFAULT_PLANS).expect("the default plans parse"),
            per_ip: DEFAULT_PER_IP,
            per_ip_webhooks: DEFAULT_PER_IP_WEBHOOKS,
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            redis_key_prefix: "chatbot:rl:".into(),
            on_redis_failure: RedisFailure::Local,
        }
    }
}

impl RateLimitConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let on_redis_failure = match config::string("GATEWAY_RATE_LIMIT_ON_REDIS_FAILURE", "local").as_str() {
            "local" => RedisFailure::Local,
            "open" => RedisFailure::Open,
            "closed" => RedisFailure::Closed,
            other => {
                return Err(ConfigError::invalid(
                    "GATEWAY_RATE_LIMIT_ON_REDIS_FAILURE",
                    other,
                    "must be local, open or closed",
                ));
            }
        };
        let plans = match config::optional("GATEWAY_RATE_LIMIT_PLANS") {
            Some(text) => parse_plans(&text)?,
            None => defaults.plans,
        };
        Ok(Self {
            plans,
            per_ip: quota_from_env("GATEWAY_RATE_LIMIT_PER_IP", defaults.per_ip)?,
            per_ip_webhooks: quota_from_env("GATEWAY_RATE_LIMIT_PER_IP_WEBHOOKS", defaults.per_ip_webhooks)?,
            redis_url: config::optional("GATEWAY_REDIS_URL"),
            redis_timeout: config::millis("GATEWAY_REDIS_TIMEOUT_MS", defaults.redis_timeout)?,
            redis_key_prefix: config::string("GATEWAY_RATE_LIMIT_KEY_PREFIX", &defaults.redis_key_prefix),
            on_redis_failure,
        })
    }
}

/// A `burst:per_second` variable, or `default` when it is unset.
fn quota_from_env(name: &'static str, default: Quota) -> Result<Quota, ConfigError> {
    match config::optional(name) {
        Some(text) => parse_quota(&text).ok_or_else(|| ConfigError::invalid(name, &text, "must be burst:per_second")),
        None => Ok(default),
    }
}

/// `name:burst:per_second` entries, comma-separated; `default` is required.
pub fn parse_plans(text: &str) -> Result<HashMap<String, Quota>, ConfigError> {
    let invalid = |reason: String| ConfigError::invalid("GATEWAY_RATE_LIMIT_PLANS", text, reason);
    let mut plans = HashMap::new();
    for entry in config::list(text) {
        let (name, quota) = entry
            .split_once(':')
            .and_then(|(name, rest)| Some((name, parse_quota(rest)?)))
            .ok_or_else(|| invalid(format!("{entry:?} is not name:burst:per_second")))?;
        plans.insert(name.to_owned(), quota);
    }
    if !plans.contains_key(DEFAULT_PLAN) {
        return Err(invalid("must define the default plan".into()));
    }
    Ok(plans)
}

fn parse_quota(text: &str) -> Option<Quota> {
    let (burst, rate) = text.split_once(':')?;
    let quota = Quota {
        burst: burst.trim().parse().ok()?,
        per_second: rate.trim().parse().ok()?,
    };
    (quota.burst >= 1 && quota.per_second > 0.0 && quota.per_second.is_finite()).then_some(quota)
}
