//! webhook-dispatcher settings, from the environment.

use service_runtime::config::{self, ConfigError, ServiceSettings};

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`, `WEBHOOKS_GRPC_ADDR`, `WEBHOOKS_DB_MAX_CONNECTIONS`.
    pub service: ServiceSettings,
    /// `AMQP_URL`
    pub amqp_url: String,
    /// `EVENTS_EXCHANGE`: the topic exchange events are published to.
    pub exchange: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceSettings::from_env("WEBHOOKS_GRPC_ADDR", "127.0.0.1:50054", "WEBHOOKS_DB_MAX_CONNECTIONS")?,
            amqp_url: config::string("AMQP_URL", config::DEFAULT_AMQP_URL),
            exchange: config::string("EVENTS_EXCHANGE", "events"),
        })
    }
}
