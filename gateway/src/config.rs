//! Gateway settings, from the environment.

use std::time::Duration;

use service_runtime::config::{self, ConfigError};

/// One upstream service and its replicas.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// gRPC URLs of the replicas (`http://host:port`); calls are balanced.
    pub urls: Vec<String>,
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
}

pub const DEFAULT_ROUTES: &str = "/api/v1/conversations=chatbot,/api/v1/bots=chatbot,\
/api/v1/integrations=integration,/api/v1/analytics=analytics,/api/v1/webhooks=webhooks";

const UPSTREAMS: &[(&str, &str, &str)] = &[
    ("chatbot", "GATEWAY_UPSTREAM_CHATBOT", "http://127.0.0.1:50051"),
    ("integration", "GATEWAY_UPSTREAM_INTEGRATION", "http://127.0.0.1:50052"),
    ("analytics", "GATEWAY_UPSTREAM_ANALYTICS", "http://127.0.0.1:50053"),
    ("webhooks", "GATEWAY_UPSTREAM_WEBHOOKS", "http://127.0.0.1:50054"),
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
            .map(|(name, var, default)| UpstreamConfig {
                name: (*name).to_owned(),
                urls: config::string(var, default)
                    .split(',')
                    .map(|u| u.trim().to_owned())
                    .collect(),
            })
            .collect();
        Ok(Self {
            listen_addr: config::string("GATEWAY_ADDR", "127.0.0.1:8080"),
            database_url: config::string("DATABASE_URL", config::DEFAULT_DATABASE_URL),
            admin_token,
            upstreams,
            routes: parse_routes(&config::string("GATEWAY_ROUTES", DEFAULT_ROUTES))?,
            upstream_timeout: Duration::from_millis(config::parsed("GATEWAY_UPSTREAM_TIMEOUT_MS", 10_000)?),
            max_body_bytes: config::parsed("GATEWAY_MAX_BODY_BYTES", 1024 * 1024)?,
            cors_allowed_origins: list(&config::string("GATEWAY_CORS_ALLOWED_ORIGINS", "")),
        })
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
