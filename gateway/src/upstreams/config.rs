//! Which services stand behind the gateway, and which paths go to each,
//! from the environment.

use std::time::Duration;

use service_runtime::config::{self, ConfigError};

/// One upstream service and its replicas.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// gRPC URLs of the replicas (`http://host:port`); calls are balanced.
    pub urls: Vec<String>,
    /// `GATEWAY_UPSTREAM_<NAME>_TIMEOUT_MS`; the global deadline when unset.
    pub timeout: Option<Duration>,
}

pub const DEFAULT_ROUTES: &str = "/api/v1/conversations=chatbot,/api/v1/bots=chatbot,\
/api/v1/secrets=chatbot,/api/v1/integrations=integration,/hooks=integration,/api/v1/analytics=analytics,\
/api/v1/analytics/webhooks=webhooks,/api/v1/webhooks=webhooks";

/// Each upstream: its name, the variables naming its replicas and
/// deadline, and where it listens locally.
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

impl UpstreamConfig {
    /// Every upstream from `GATEWAY_UPSTREAM_<NAME>` (comma-separated
    /// replicas), each on its local port when unset.
    pub fn all_from_env() -> Result<Vec<Self>, ConfigError> {
        UPSTREAMS
            .iter()
            .map(|(name, var, timeout_var, default)| {
                Ok(Self {
                    name: (*name).to_owned(),
                    urls: config::list(&config::string(var, default)),
                    timeout: Some(config::millis(timeout_var, Duration::ZERO)?).filter(|t| !t.is_zero()),
                })
            })
            .collect()
    }

    /// Every upstream on its local port.
    pub fn all_local() -> Vec<Self> {
        UPSTREAMS
            .iter()
            .map(|(name, _, _, default)| Self {
                name: (*name).to_owned(),
                urls: vec![(*default).to_owned()],
                timeout: None,
            })
            .collect()
    }
}

/// `/prefix=upstream` entries, comma-separated (`GATEWAY_ROUTES`).
pub fn parse_routes(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    config::list(text)
        .iter()
        .map(|entry| {
            let (prefix, upstream) = entry.split_once('=').ok_or_else(|| {
                ConfigError::invalid(
                    "GATEWAY_ROUTES",
                    text,
                    format!("entry {entry:?} is not /prefix=upstream"),
                )
            })?;
            if !prefix.starts_with('/') {
                return Err(ConfigError::invalid(
                    "GATEWAY_ROUTES",
                    text,
                    format!("prefix {prefix:?} must start with /"),
                ));
            }
            Ok((prefix.trim_end_matches('/').to_owned(), upstream.to_owned()))
        })
        .collect()
}
