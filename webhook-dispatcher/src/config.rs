//! webhook-dispatcher settings, from the environment.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use service_runtime::config::{self, ConfigError, ServiceSettings};

use crate::{
    delivery::DeliverySettings,
    retry_schedule::RetrySchedule,
    target_guard::{Cidr, TargetGuard},
};

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`, `WEBHOOKS_GRPC_ADDR`, `WEBHOOKS_DB_MAX_CONNECTIONS`.
    pub service: ServiceSettings,
    /// `AMQP_URL`
    pub amqp_url: String,
    /// `EVENTS_EXCHANGE`: the topic exchange events are published to.
    pub exchange: String,
    /// `WEBHOOKS_SECRET_KEY`: base64 of 32 bytes sealing endpoint secrets.
    pub secret_key: [u8; 32],
    /// `WEBHOOKS_SECRET_GRACE_SECONDS`: how long a rotated-out secret keeps
    /// signing (default one day).
    pub secret_grace: Duration,
    /// `WEBHOOKS_RETRY_SCHEDULE` (seconds, comma-separated),
    /// `WEBHOOKS_TIMEOUT_MS` (15000), `WEBHOOKS_CONNECT_TIMEOUT_MS` (5000),
    /// `WEBHOOKS_PER_ENDPOINT_CONCURRENCY` (16),
    /// `WEBHOOKS_PER_HOST_CONCURRENCY` (256, over all endpoints on one
    /// host and port), and
    /// `WEBHOOKS_ALLOWED_CIDRS`: internal networks targets may be in (none
    /// by default; local runs allow 127.0.0.0/8), and
    /// `WEBHOOKS_DISABLE_AFTER_SECONDS`: failing this long disables an
    /// endpoint (default five days).
    pub delivery: DeliverySettings,
}

/// Used only outside production, so local runs need no setup; production
/// refuses to start without a real key.
const DEVELOPMENT_KEY: [u8; 32] = *b"development-only-webhooks-key-00";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceSettings::from_env("WEBHOOKS_GRPC_ADDR", "127.0.0.1:50054", "WEBHOOKS_DB_MAX_CONNECTIONS")?,
            amqp_url: config::string("AMQP_URL", config::DEFAULT_AMQP_URL),
            exchange: config::string("EVENTS_EXCHANGE", "events"),
            secret_key: secret_key()?,
            secret_grace: Duration::from_secs(config::parsed("WEBHOOKS_SECRET_GRACE_SECONDS", 86_400)?),
            delivery: delivery_from_env()?,
        })
    }

    /// Settings for tests and local runs: the development key.
    pub fn development(service: ServiceSettings, amqp_url: String, exchange: String) -> Self {
        Self {
            service,
            amqp_url,
            exchange,
            secret_key: DEVELOPMENT_KEY,
            secret_grace: Duration::from_secs(86_400),
            delivery: DeliverySettings {
                schedule: RetrySchedule::default(),
                timeout: Duration::from_secs(15),
                connect_timeout: Duration::from_secs(5),
                per_endpoint: 16,
                per_host: 256,
                guard: TargetGuard::default(),
                disable_after: Duration::from_secs(5 * 86_400),
            },
        }
    }
}

fn delivery_from_env() -> Result<DeliverySettings, ConfigError> {
    let schedule = match config::optional("WEBHOOKS_RETRY_SCHEDULE") {
        None => RetrySchedule::default(),
        Some(text) => RetrySchedule::parse(&text).ok_or_else(|| ConfigError::Invalid {
            name: "WEBHOOKS_RETRY_SCHEDULE",
            value: text.clone(),
            reason: "must be delays in seconds separated by commas, e.g. 0,5,300".into(),
        })?,
    };
    let cidrs_text = config::string("WEBHOOKS_ALLOWED_CIDRS", "");
    let allowed = cidrs_text
        .split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            Cidr::parse(c).ok_or_else(|| ConfigError::Invalid {
                name: "WEBHOOKS_ALLOWED_CIDRS",
                value: cidrs_text.clone(),
                reason: format!("{c:?} is not a CIDR such as 127.0.0.0/8"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DeliverySettings {
        schedule,
        timeout: Duration::from_millis(config::parsed("WEBHOOKS_TIMEOUT_MS", 15_000)?),
        connect_timeout: Duration::from_millis(config::parsed("WEBHOOKS_CONNECT_TIMEOUT_MS", 5_000)?),
        per_endpoint: config::parsed("WEBHOOKS_PER_ENDPOINT_CONCURRENCY", 16)?,
        per_host: config::parsed("WEBHOOKS_PER_HOST_CONCURRENCY", 256)?,
        guard: TargetGuard::new(allowed),
        disable_after: Duration::from_secs(config::parsed("WEBHOOKS_DISABLE_AFTER_SECONDS", 5 * 86_400)?),
    })
}

fn secret_key() -> Result<[u8; 32], ConfigError> {
    let hint = "generate one with `openssl rand -base64 32`";
    let text = if config::is_production() {
        config::required("WEBHOOKS_SECRET_KEY", hint)?
    } else {
        match config::optional("WEBHOOKS_SECRET_KEY") {
            Some(text) => text,
            None => {
                tracing::warn!("WEBHOOKS_SECRET_KEY is unset: sealing secrets with the development key");
                return Ok(DEVELOPMENT_KEY);
            }
        }
    };
    STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| ConfigError::Invalid {
            name: "WEBHOOKS_SECRET_KEY",
            value: "(hidden)".into(),
            reason: format!("must be base64 of exactly 32 bytes; {hint}"),
        })
}
