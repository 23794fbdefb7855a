//! webhook-dispatcher settings, from the environment.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use event_pipeline::BrokerSettings;
use outbound_http::{RetrySchedule, TargetGuard};
use service_runtime::config::{self, ConfigError, ServiceSettings};

use crate::delivery::DeliverySettings;

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`, `WEBHOOKS_GRPC_ADDR`, `WEBHOOKS_DB_MAX_CONNECTIONS`.
    pub service: ServiceSettings,
    /// `AMQP_URL` and `EVENTS_EXCHANGE`: where events are consumed from
    /// (and this service's own are published to).
    pub events: BrokerSettings,
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
    /// `WEBHOOKS_RETENTION_DAYS` (30): finished deliveries, their attempts
    /// and the events they carried are removed after this long.
    pub retention: Duration,
    /// `WEBHOOKS_REPLAY_MAX_EVENTS` (100000): the most events one replay
    /// examines; a longer range is replayed by resuming where it stopped.
    pub replay_max_events: i64,
}

const DEFAULT_REPLAY_MAX_EVENTS: i64 = 100_000;

/// Used only outside production, so local runs need no setup; production
/// refuses to start without a real key.
const DEVELOPMENT_KEY: [u8; 32] = *b"development-only-webhooks-key-00";
/// Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
const DEFAULT_SCHEDULE: [u64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];
const DEFAULT_GRACE: Duration = Duration::from_secs(86_400);
const DEFAULT_RETENTION_DAYS: u64 = 30;

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::from_secs(&DEFAULT_SCHEDULE),
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            per_endpoint: 16,
            per_host: 256,
            guard: TargetGuard::default(),
            disable_after: Duration::from_secs(5 * 86_400),
        }
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceSettings::from_env(
                service_runtime::calls::Party::Webhooks,
                "WEBHOOKS_GRPC_ADDR",
                "127.0.0.1:50054",
                "WEBHOOKS_DB_MAX_CONNECTIONS",
            )?
            .with_admin("WEBHOOKS_ADMIN_ADDR", "127.0.0.1:9104"),
            events: BrokerSettings::from_env()?,
            secret_key: secret_key()?,
            secret_grace: config::seconds("WEBHOOKS_SECRET_GRACE_SECONDS", DEFAULT_GRACE)?,
            delivery: delivery_from_env()?,
            retention: Duration::from_secs(86_400 * config::parsed("WEBHOOKS_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)?),
            replay_max_events: config::parsed("WEBHOOKS_REPLAY_MAX_EVENTS", DEFAULT_REPLAY_MAX_EVENTS)?.max(1),
        })
    }

    /// Settings for tests and local runs: `service` and `events` as given,
    /// the development key, every other setting at its default.
    pub fn development(service: ServiceSettings, events: BrokerSettings) -> Self {
        Self {
            service,
            events,
            secret_key: DEVELOPMENT_KEY,
            secret_grace: DEFAULT_GRACE,
            delivery: DeliverySettings::default(),
            retention: Duration::from_secs(86_400 * DEFAULT_RETENTION_DAYS),
            replay_max_events: DEFAULT_REPLAY_MAX_EVENTS,
        }
    }
}

fn delivery_from_env() -> Result<DeliverySettings, ConfigError> {
    let defaults = DeliverySettings::default();
    let schedule = match config::optional("WEBHOOKS_RETRY_SCHEDULE") {
        None => defaults.schedule,
        Some(text) => RetrySchedule::parse(&text).ok_or_else(|| ConfigError::Invalid {
            name: "WEBHOOKS_RETRY_SCHEDULE",
            value: text.clone(),
            reason: "must be delays in seconds separated by commas, e.g. 0,5,300".into(),
        })?,
    };
    let cidrs = config::string("WEBHOOKS_ALLOWED_CIDRS", "");
    let guard = TargetGuard::from_list(&cidrs).map_err(|reason| ConfigError::Invalid {
        name: "WEBHOOKS_ALLOWED_CIDRS",
        value: cidrs.clone(),
        reason,
    })?;
    Ok(DeliverySettings {
        schedule,
        timeout: config::millis("WEBHOOKS_TIMEOUT_MS", defaults.timeout)?,
        connect_timeout: config::millis("WEBHOOKS_CONNECT_TIMEOUT_MS", defaults.connect_timeout)?,
        per_endpoint: config::parsed("WEBHOOKS_PER_ENDPOINT_CONCURRENCY", defaults.per_endpoint)?,
        per_host: config::parsed("WEBHOOKS_PER_HOST_CONCURRENCY", defaults.per_host)?,
        guard,
        disable_after: config::seconds("WEBHOOKS_DISABLE_AFTER_SECONDS", defaults.disable_after)?,
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
