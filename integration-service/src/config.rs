//! integration-service settings, from the environment.

use std::time::Duration;

use event_pipeline::BrokerSettings;
use outbound_http::{RetrySchedule, TargetGuard, breaker::BreakerSettings};
use sealing::Keyring;

use crate::reconciling::Schedule;
use service_runtime::config::{self, ConfigError, ServiceSettings};

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`, `INTEGRATION_GRPC_ADDR`, `INTEGRATION_DB_MAX_CONNECTIONS`.
    pub service: ServiceSettings,
    /// `AMQP_URL` and `EVENTS_EXCHANGE`: where recorded events are published.
    pub events: BrokerSettings,
    /// `INTEGRATION_SECRET_KEYS`: `id:base64-of-32-bytes,…`, the key that
    /// seals new credentials first; older keys keep opening what they
    /// sealed. Required in production.
    pub secret_keys: Keyring,
    /// `INTEGRATION_ALLOWED_CIDRS`: internal networks the systems a
    /// workspace connects may be in (none by default; local runs allow
    /// 127.0.0.0/8).
    pub targets: TargetGuard,
    /// `INTEGRATION_CONNECT_TIMEOUT_MS` (10000): how long connecting to
    /// another system, or one call to a vendor, may take.
    pub connect_timeout: Duration,
    /// `INTEGRATION_SHOPIFY_URL` (`https://{shop}`): where a store's Admin
    /// API is, `{shop}` standing for its myshopify.com domain.
    pub shopify_url: String,
    /// `INTEGRATION_PUBLIC_URL`: the gateway's address as other systems
    /// reach it, where their webhooks are sent (`{url}/hooks/shopify/…`).
    /// Required in production; `http://127.0.0.1:8080` otherwise.
    pub public_url: String,
    /// `INTEGRATION_CHATBOT_URL` (`http://127.0.0.1:50051`): chatbot-service's
    /// gRPC address, where linked bots learn a store's products.
    pub chatbot_url: String,
    /// Every vendor call's policy: attempts and backoff (4 attempts from
    /// 0.5 s, doubling; `Retry-After` honoured up to 30 s) and each
    /// connection's breaker (5 failures in a row pause it for 30 s).
    pub vendor_retries: RetrySchedule,
    pub vendor_breaker: BreakerSettings,
    /// When stores are reconciled: every `INTEGRATION_SYNC_INTERVAL_SECONDS`
    /// (default 6 h, 0 for on request only), a failed attempt retried after
    /// `INTEGRATION_SYNC_RETRY_SECONDS` (default 60), doubling.
    pub sync: Schedule,
    /// `INTEGRATION_REDIS_URL`: where CRM lookups are cached (unset: not
    /// cached), for `INTEGRATION_CRM_CACHE_SECONDS` (600).
    pub redis_url: Option<String>,
    pub crm_cache_ttl: Duration,
    /// `INTEGRATION_LEAD_RETRY_SECONDS` (5): a lead that could not be
    /// pushed waits this long, doubled for each attempt so far.
    pub lead_retry: Duration,
}

/// Used only outside production, so local runs need no setup.
const DEVELOPMENT_KEY: [u8; 32] = *b"development-only-integration-key";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SHOPIFY_URL: &str = "https://{shop}";
const DEVELOPMENT_PUBLIC_URL: &str = "http://127.0.0.1:8080";
const DEFAULT_CHATBOT_URL: &str = "http://127.0.0.1:50051";
const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(6 * 3600);
const DEFAULT_SYNC_RETRY: Duration = Duration::from_secs(60);
const DEFAULT_CRM_CACHE_TTL: Duration = Duration::from_secs(600);
const DEFAULT_LEAD_RETRY: Duration = Duration::from_secs(5);

fn sync_schedule() -> Result<Schedule, ConfigError> {
    let every = config::seconds("INTEGRATION_SYNC_INTERVAL_SECONDS", DEFAULT_SYNC_INTERVAL)?;
    Ok(Schedule {
        every: (!every.is_zero()).then_some(every),
        retry_after: config::seconds("INTEGRATION_SYNC_RETRY_SECONDS", DEFAULT_SYNC_RETRY)?.max(Duration::from_secs(1)),
    })
}

fn vendor_retries() -> RetrySchedule {
    RetrySchedule::exponential(Duration::from_millis(500), 4).with_max_retry_after(Duration::from_secs(30))
}

fn vendor_breaker() -> BreakerSettings {
    BreakerSettings {
        open_for: Duration::from_secs(30),
        ..BreakerSettings::default()
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let cidrs = config::string("INTEGRATION_ALLOWED_CIDRS", "");
        Ok(Self {
            service: ServiceSettings::from_env(
                service_runtime::calls::Party::Integration,
                "INTEGRATION_GRPC_ADDR",
                "127.0.0.1:50052",
                "INTEGRATION_DB_MAX_CONNECTIONS",
            )?
            .with_admin("INTEGRATION_ADMIN_ADDR", "127.0.0.1:9102"),
            events: BrokerSettings::from_env()?,
            secret_keys: secret_keys()?,
            targets: TargetGuard::from_list(&cidrs)
                .map_err(|reason| ConfigError::invalid("INTEGRATION_ALLOWED_CIDRS", &cidrs, reason))?,
            connect_timeout: config::millis("INTEGRATION_CONNECT_TIMEOUT_MS", DEFAULT_CONNECT_TIMEOUT)?,
            shopify_url: config::string("INTEGRATION_SHOPIFY_URL", DEFAULT_SHOPIFY_URL),
            public_url: public_url()?,
            chatbot_url: config::string("INTEGRATION_CHATBOT_URL", DEFAULT_CHATBOT_URL),
            vendor_retries: vendor_retries(),
            vendor_breaker: vendor_breaker(),
            sync: sync_schedule()?,
            redis_url: config::optional("INTEGRATION_REDIS_URL"),
            crm_cache_ttl: config::seconds("INTEGRATION_CRM_CACHE_SECONDS", DEFAULT_CRM_CACHE_TTL)?,
            lead_retry: config::seconds("INTEGRATION_LEAD_RETRY_SECONDS", DEFAULT_LEAD_RETRY)?,
        })
    }

    /// Settings for tests and local runs: `service` and `events` as given,
    /// the development key, every other setting at its default.
    pub fn development(service: ServiceSettings, events: BrokerSettings) -> Self {
        Self {
            service,
            events,
            secret_keys: Keyring::single("development", &DEVELOPMENT_KEY),
            targets: TargetGuard::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            shopify_url: DEFAULT_SHOPIFY_URL.into(),
            public_url: DEVELOPMENT_PUBLIC_URL.into(),
            chatbot_url: DEFAULT_CHATBOT_URL.into(),
            vendor_retries: vendor_retries(),
            vendor_breaker: vendor_breaker(),
            // Local runs and tests reconcile on request only.
            sync: Schedule {
                every: None,
                retry_after: DEFAULT_SYNC_RETRY,
            },
            redis_url: None,
            crm_cache_ttl: DEFAULT_CRM_CACHE_TTL,
            lead_retry: DEFAULT_LEAD_RETRY,
        }
    }
}

fn public_url() -> Result<String, ConfigError> {
    let url = match config::is_production() {
        true => config::required(
            "INTEGRATION_PUBLIC_URL",
            "the gateway's public https URL, where Shopify sends webhooks",
        )?,
        false => config::string("INTEGRATION_PUBLIC_URL", DEVELOPMENT_PUBLIC_URL),
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ConfigError::invalid(
            "INTEGRATION_PUBLIC_URL",
            &url,
            "must be an http(s) URL",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn secret_keys() -> Result<Keyring, ConfigError> {
    config::keyring("INTEGRATION_SECRET_KEYS", &DEVELOPMENT_KEY)
}
