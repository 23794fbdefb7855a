//! Gateway settings, from the environment.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use service_runtime::config::{self, ConfigError};

use std::collections::HashMap;

use crate::{
    auth::jwks::{self, JwksSource},
    oauth::OAuthConfig,
    rate_limit::{Quota, RedisFailure},
    upstreams::breaker::BreakerSettings,
};

/// External JWT verification; absent when neither a secret nor a JWKS is set.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// `GATEWAY_JWT_HS256_SECRET` (at least 32 bytes).
    pub hs256_secret: Option<String>,
    /// `GATEWAY_JWKS_URL` (HTTPS, or HTTP on loopback) or `GATEWAY_JWKS_FILE`.
    pub jwks: Option<JwksSource>,
    /// `GATEWAY_JWT_ALGORITHMS`: asymmetric algorithms accepted with JWKS keys.
    pub asymmetric_algorithms: Vec<Algorithm>,
    /// `GATEWAY_JWT_ISSUERS` (comma-separated; required).
    pub issuers: Vec<String>,
    /// `GATEWAY_JWT_AUDIENCE` (required).
    pub audience: String,
    /// `GATEWAY_JWT_LEEWAY_SECONDS` for `exp` and `nbf` (default 30).
    pub leeway_seconds: u64,
    /// `GATEWAY_JWT_WORKSPACE_CLAIM` (default `workspace_id`).
    pub workspace_claim: String,
    /// `GATEWAY_JWKS_MIN_REFRESH_SECONDS`: floor between refetches (default 60).
    pub jwks_min_refresh: Duration,
    /// `GATEWAY_JWKS_REFRESH_SECONDS`: periodic refresh (default 300).
    pub jwks_refresh_every: Duration,
}

/// One upstream service and its replicas.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// gRPC URLs of the replicas (`http://host:port`); calls are balanced.
    pub urls: Vec<String>,
    /// `GATEWAY_UPSTREAM_<NAME>_TIMEOUT_MS`; the global deadline when unset.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `GATEWAY_ADDR`
    pub listen_addr: String,
    /// `DATABASE_URL` (schema `gateway`: workspaces and API keys).
    pub database_url: String,
    /// `GATEWAY_ADMIN_TOKEN`: the platform operator's token for `/admin/v1`.
    /// Required in production; unset elsewhere disables the admin API.
    pub admin_token: Option<String>,
    /// `GATEWAY_UPSTREAM_<NAME>=url[,url…]` for chatbot, integration,
    /// analytics and webhooks.
    pub upstreams: Vec<UpstreamConfig>,
    /// `GATEWAY_ROUTES=/prefix=upstream,…`: which upstream serves a path.
    pub routes: Vec<(String, String)>,
    /// `GATEWAY_UPSTREAM_TIMEOUT_MS`: deadline of one upstream call.
    pub upstream_timeout: Duration,
    /// `GATEWAY_MAX_BODY_BYTES`
    pub max_body_bytes: usize,
    /// `GATEWAY_CORS_ALLOWED_ORIGINS`: comma-separated origins browsers may
    /// call from; empty allows none.
    pub cors_allowed_origins: Vec<String>,
    pub jwt: Option<JwtConfig>,
    pub rate_limits: RateLimitConfig,
    /// `GATEWAY_BREAKER_FAILURES` (5) consecutive failures, or a failure
    /// ratio of `GATEWAY_BREAKER_RATIO` (0.5) over 20+ calls in 10 s, open an
    /// upstream's circuit for `GATEWAY_BREAKER_OPEN_MS` (5000).
    pub breaker: BreakerSettings,
    pub oauth: OAuthConfig,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `GATEWAY_RATE_LIMIT_PLANS=name:burst:per_second,…`; must include `default`.
    pub plans: HashMap<String, Quota>,
    /// `GATEWAY_RATE_LIMIT_PER_IP=burst:per_second` for routes without credentials.
    pub per_ip: Quota,
    /// `GATEWAY_REDIS_URL`: share budgets across replicas.
    pub redis_url: Option<String>,
    /// `GATEWAY_REDIS_TIMEOUT_MS` (default 50).
    pub redis_timeout: Duration,
    /// `GATEWAY_RATE_LIMIT_KEY_PREFIX` (default `chatbot:rl:`).
    pub redis_key_prefix: String,
    /// `GATEWAY_RATE_LIMIT_ON_REDIS_FAILURE=local|open|closed` (default local).
    pub on_redis_failure: RedisFailure,
}

pub const DEFAULT_PLANS: &str = "default:120:20,pro:600:100,enterprise:3000:500";

pub const DEFAULT_ROUTES: &str = "/api/v1/conversations=chatbot,/api/v1/bots=chatbot,\
/api/v1/integrations=integration,/api/v1/analytics=analytics,/api/v1/webhooks=webhooks";

const UPSTREAMS: &[(&str, &str, &str, &str)] = &[
    (
        "chatbot",
        "GATEWAY_UPSTREAM_CHATBOT",
        "GATEWAY_UPSTREAM_CHATBOT_TIMEOUT_MS",
        "http://127.0.0.1:50051",
    ),
    (
        "integration",
        "GATEWAY_UPSTREAM_INTEGRATION",
        "GATEWAY_UPSTREAM_INTEGRATION_TIMEOUT_MS",
        "http://127.0.0.1:50052",
    ),
    (
        "analytics",
        "GATEWAY_UPSTREAM_ANALYTICS",
        "GATEWAY_UPSTREAM_ANALYTICS_TIMEOUT_MS",
        "http://127.0.0.1:50053",
    ),
    (
        "webhooks",
        "GATEWAY_UPSTREAM_WEBHOOKS",
        "GATEWAY_UPSTREAM_WEBHOOKS_TIMEOUT_MS",
        "http://127.0.0.1:50054",
    ),
];

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let admin_token = if config::is_production() {
            Some(config::required(
                "GATEWAY_ADMIN_TOKEN",
                "generate one with `openssl rand -hex 32`",
            )?)
        } else {
            config::optional("GATEWAY_ADMIN_TOKEN")
        };
        let upstreams = UPSTREAMS
            .iter()
            .map(|(name, var, timeout_var, default)| {
                Ok(UpstreamConfig {
                    name: (*name).to_owned(),
                    urls: list(&config::string(var, default)),
                    timeout: config::parsed::<u64>(timeout_var, 0)
                        .map(|ms| (ms > 0).then(|| Duration::from_millis(ms)))?,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self {
            listen_addr: config::string("GATEWAY_ADDR", "127.0.0.1:8080"),
            database_url: config::string("DATABASE_URL", config::DEFAULT_DATABASE_URL),
            admin_token,
            upstreams,
            routes: parse_routes(&config::string("GATEWAY_ROUTES", DEFAULT_ROUTES))?,
            upstream_timeout: Duration::from_millis(config::parsed("GATEWAY_UPSTREAM_TIMEOUT_MS", 10_000)?),
            max_body_bytes: config::parsed("GATEWAY_MAX_BODY_BYTES", 1024 * 1024)?,
            cors_allowed_origins: list(&config::string("GATEWAY_CORS_ALLOWED_ORIGINS", "")),
            jwt: jwt_from_env()?,
            rate_limits: rate_limits_from_env()?,
            breaker: BreakerSettings {
                consecutive_failures: config::parsed("GATEWAY_BREAKER_FAILURES", 5)?,
                failure_ratio: config::parsed("GATEWAY_BREAKER_RATIO", 0.5)?,
                open_for: Duration::from_millis(config::parsed("GATEWAY_BREAKER_OPEN_MS", 5000)?),
                ..BreakerSettings::default()
            },
            oauth: OAuthConfig {
                issuer: config::string("GATEWAY_PUBLIC_URL", "http://127.0.0.1:8080")
                    .trim_end_matches('/')
                    .to_owned(),
                audience: config::string("GATEWAY_OAUTH_AUDIENCE", "chatbot-platform"),
                access_ttl: Duration::from_secs(config::parsed("GATEWAY_OAUTH_ACCESS_TOKEN_SECONDS", 600)?),
                refresh_ttl: Duration::from_secs(config::parsed(
                    "GATEWAY_OAUTH_REFRESH_TOKEN_SECONDS",
                    30 * 24 * 3600,
                )?),
                code_ttl: Duration::from_secs(60),
            },
        })
    }
}

fn rate_limits_from_env() -> Result<RateLimitConfig, ConfigError> {
    let on_redis_failure = match config::string("GATEWAY_RATE_LIMIT_ON_REDIS_FAILURE", "local").as_str() {
        "local" => RedisFailure::Local,
        "open" => RedisFailure::Open,
        "closed" => RedisFailure::Closed,
        other => {
            return Err(invalid(
                "GATEWAY_RATE_LIMIT_ON_REDIS_FAILURE",
                other,
                "must be local, open or closed",
            ));
        }
    };
    let per_ip_text = config::string("GATEWAY_RATE_LIMIT_PER_IP", "30:1");
    Ok(RateLimitConfig {
        plans: parse_plans(&config::string("GATEWAY_RATE_LIMIT_PLANS", DEFAULT_PLANS))?,
        per_ip: parse_quota(&per_ip_text)
            .ok_or_else(|| invalid("GATEWAY_RATE_LIMIT_PER_IP", &per_ip_text, "must be burst:per_second"))?,
        redis_url: config::optional("GATEWAY_REDIS_URL"),
        redis_timeout: Duration::from_millis(config::parsed("GATEWAY_REDIS_TIMEOUT_MS", 50)?),
        redis_key_prefix: config::string("GATEWAY_RATE_LIMIT_KEY_PREFIX", "chatbot:rl:"),
        on_redis_failure,
    })
}

/// `name:burst:per_second` entries, comma-separated; `default` is required.
pub fn parse_plans(text: &str) -> Result<HashMap<String, Quota>, ConfigError> {
    let mut plans = HashMap::new();
    for entry in list(text) {
        let (name, quota) = entry
            .split_once(':')
            .and_then(|(name, rest)| Some((name, parse_quota(rest)?)))
            .ok_or_else(|| {
                invalid(
                    "GATEWAY_RATE_LIMIT_PLANS",
                    text,
                    &format!("{entry:?} is not name:burst:per_second"),
                )
            })?;
        plans.insert(name.to_owned(), quota);
    }
    if !plans.contains_key(crate::rate_limit::DEFAULT_PLAN) {
        return Err(invalid(
            "GATEWAY_RATE_LIMIT_PLANS",
            text,
            "must define the default plan",
        ));
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

fn jwt_from_env() -> Result<Option<JwtConfig>, ConfigError> {
    let hs256_secret = config::optional("GATEWAY_JWT_HS256_SECRET");
    let jwks = match (
        config::optional("GATEWAY_JWKS_URL"),
        config::optional("GATEWAY_JWKS_FILE"),
    ) {
        (Some(url), _) if !jwks::url_allowed(&url) => {
            return Err(invalid(
                "GATEWAY_JWKS_URL",
                &url,
                "must be https:// (http:// only on loopback)",
            ));
        }
        (Some(url), _) => Some(JwksSource::Url(url)),
        (None, Some(path)) => Some(JwksSource::File(path.into())),
        (None, None) => None,
    };
    if hs256_secret.is_none() && jwks.is_none() {
        return Ok(None);
    }
    if let Some(secret) = &hs256_secret
        && secret.len() < 32
    {
        return Err(invalid(
            "GATEWAY_JWT_HS256_SECRET",
            "(hidden)",
            "must be at least 32 bytes",
        ));
    }
    let hint = "required when JWT verification is configured";
    Ok(Some(JwtConfig {
        hs256_secret,
        jwks,
        asymmetric_algorithms: parse_algorithms(&config::string("GATEWAY_JWT_ALGORITHMS", "RS256,ES256,EdDSA"))?,
        issuers: list(&config::required("GATEWAY_JWT_ISSUERS", hint)?),
        audience: config::required("GATEWAY_JWT_AUDIENCE", hint)?,
        leeway_seconds: config::parsed("GATEWAY_JWT_LEEWAY_SECONDS", 30)?,
        workspace_claim: config::string("GATEWAY_JWT_WORKSPACE_CLAIM", "workspace_id"),
        jwks_min_refresh: Duration::from_secs(config::parsed("GATEWAY_JWKS_MIN_REFRESH_SECONDS", 60)?),
        jwks_refresh_every: Duration::from_secs(config::parsed("GATEWAY_JWKS_REFRESH_SECONDS", 300)?),
    }))
}

/// Asymmetric algorithm names; symmetric ones are refused here because only
/// the HS256 secret may verify HMAC tokens.
pub fn parse_algorithms(text: &str) -> Result<Vec<Algorithm>, ConfigError> {
    list(text)
        .iter()
        .map(|name| match name.parse::<Algorithm>() {
            Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => Err(invalid(
                "GATEWAY_JWT_ALGORITHMS",
                text,
                &format!("{name} is not an accepted asymmetric algorithm (RS256, ES256, EdDSA, …)"),
            )),
            Ok(alg) => Ok(alg),
        })
        .collect()
}

fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn parse_routes(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    text.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            let (prefix, upstream) = entry.trim().split_once('=').ok_or_else(|| ConfigError::Invalid {
                name: "GATEWAY_ROUTES",
                value: text.to_owned(),
                reason: format!("entry {entry:?} is not /prefix=upstream"),
            })?;
            if !prefix.starts_with('/') {
                return Err(ConfigError::Invalid {
                    name: "GATEWAY_ROUTES",
                    value: text.to_owned(),
                    reason: format!("prefix {prefix:?} must start with /"),
                });
            }
            Ok((prefix.trim_end_matches('/').to_owned(), upstream.to_owned()))
        })
        .collect()
}
