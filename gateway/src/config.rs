//! Gateway settings, from the environment: each part's section is defined
//! beside the part (rate limits, JWTs, OAuth, upstreams); this module only
//! puts them together.

use std::time::Duration;

use outbound_http::breaker::BreakerSettings;
use service_runtime::config::{self, ConfigError};

pub use crate::usage::UsageSettings;
pub use crate::{
    auth::jwt_config::JwtConfig,
    oauth::OAuthConfig,
    rate_limit::{DEFAULT_PLANS, RateLimitConfig, parse_plans},
    upstreams::{DEFAULT_ROUTES, UpstreamConfig, parse_routes},
};

#[derive(Debug, Clone)]
pub struct Config {
    /// `GATEWAY_ADDR`
    pub listen_addr: String,
    /// `GATEWAY_ADMIN_ADDR` (`127.0.0.1:9100`, `off` for none): `/metrics`,
    /// `/readyz` and `/healthz` apart from the public API, for Prometheus
    /// and Kubernetes probes.
    pub admin_addr: Option<service_runtime::listener::Address>,
    /// `DATABASE_URL` (schema `gateway`: workspaces and API keys).
    pub database_url: String,
    /// `DATABASE_MIGRATIONS` (`apply`; `verify` where a Job migrates).
    pub migrations: service_runtime::config::Migrations,
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
    /// `GATEWAY_HEADER_READ_TIMEOUT_MS` (10000): how long a client may take
    /// to send a request's headers.
    pub header_read_timeout: Duration,
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
    /// `GATEWAY_USAGE_RECORDING` (on), `GATEWAY_USAGE_REPORT_MS` (10000)
    /// and `GATEWAY_SLOW_REQUEST_MS` (1000): whether requests are recorded,
    /// how often usage goes to analytics, and what counts as slow.
    pub usage: UsageSettings,
    /// `PLATFORM_CALL_KEYS`: the keys the gateway signs its calls to each
    /// service with.
    pub call_keys: service_runtime::calls::CallKeys,
    /// `GRPC_TLS_*_FILE`: TLS for upstreams with `https://` URLs.
    pub grpc_tls: service_runtime::grpc_tls::GrpcTls,
    /// `GATEWAY_DOCS_DIR`: swagger-ui-dist's files, for the `/docs` page.
    pub docs_dir: Option<std::path::PathBuf>,
}

const DEFAULT_ADDR: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9100";
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
        let breaker = BreakerSettings::default();
        Ok(Self {
            listen_addr: config::string("GATEWAY_ADDR", DEFAULT_ADDR),
            admin_addr: Some(config::string("GATEWAY_ADMIN_ADDR", DEFAULT_ADMIN_ADDR))
                .filter(|a| a != "off")
                .map(service_runtime::listener::Address::Bind),
            database_url: config::string("DATABASE_URL", config::DEFAULT_DATABASE_URL),
            migrations: config::migrations()?,
            admin_token,
            upstreams: UpstreamConfig::all_from_env()?,
            routes: parse_routes(&config::string("GATEWAY_ROUTES", DEFAULT_ROUTES))?,
            upstream_timeout: config::millis("GATEWAY_UPSTREAM_TIMEOUT_MS", DEFAULT_UPSTREAM_TIMEOUT)?,
            max_body_bytes: config::parsed("GATEWAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?,
            header_read_timeout: config::millis("GATEWAY_HEADER_READ_TIMEOUT_MS", DEFAULT_HEADER_READ_TIMEOUT)?,
            cors_allowed_origins: config::list(&config::string("GATEWAY_CORS_ALLOWED_ORIGINS", "")),
            jwt: JwtConfig::from_env()?,
            rate_limits: RateLimitConfig::from_env()?,
            breaker: BreakerSettings {
                consecutive_failures: config::parsed("GATEWAY_BREAKER_FAILURES", breaker.consecutive_failures)?,
                failure_ratio: config::parsed("GATEWAY_BREAKER_RATIO", breaker.failure_ratio)?,
                open_for: config::millis("GATEWAY_BREAKER_OPEN_MS", breaker.open_for)?,
                ..breaker
            },
            oauth: OAuthConfig::from_env()?,
            call_keys: config::call_keys(service_runtime::calls::Party::Gateway)?,
            grpc_tls: config::grpc_tls()?,
            docs_dir: config::optional("GATEWAY_DOCS_DIR").map(Into::into),
            usage: UsageSettings {
                recording: match config::string("GATEWAY_USAGE_RECORDING", "on").as_str() {
                    "on" => true,
                    "off" => false,
                    other => {
                        return Err(ConfigError::invalid(
                            "GATEWAY_USAGE_RECORDING",
                            other,
                            "must be on or off",
                        ));
                    }
                },
                report_every: config::millis("GATEWAY_USAGE_REPORT_MS", UsageSettings::default().report_every)?,
                slow_threshold: config::millis("GATEWAY_SLOW_REQUEST_MS", UsageSettings::default().slow_threshold)?,
            },
        })
    }

    /// Settings for tests and local runs: the database as given, every
    /// upstream on its local port, no admin API or listener, no external JWTs, every
    /// other setting at its default; calls signed with `call_keys`.
    pub fn development(database_url: &str, call_keys: service_runtime::calls::CallKeys) -> Self {
        Self {
            listen_addr: DEFAULT_ADDR.into(),
            admin_addr: None,
            database_url: database_url.into(),
            migrations: Default::default(),
            admin_token: None,
            upstreams: UpstreamConfig::all_local(),
            routes: parse_routes(DEFAULT_ROUTES).expect("the default routes parse"),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            cors_allowed_origins: Vec::new(),
            jwt: None,
            rate_limits: RateLimitConfig::default(),
            breaker: BreakerSettings::default(),
            oauth: OAuthConfig::default(),
            usage: UsageSettings::default(),
            call_keys,
            grpc_tls: Default::default(),
            docs_dir: None,
        }
    }
}
