//! chatbot-service settings, from the environment.

use service_runtime::{
    config::{self, ConfigError, ServiceSettings},
    outbox::RelayConfig,
};

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`, `CHATBOT_GRPC_ADDR`, `CHATBOT_DB_MAX_CONNECTIONS`.
    pub service: ServiceSettings,
    /// `AMQP_URL` and `EVENTS_EXCHANGE`: where recorded events are published.
    pub events: RelayConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceSettings::from_env("CHATBOT_GRPC_ADDR", "127.0.0.1:50051", "CHATBOT_DB_MAX_CONNECTIONS")?,
            events: RelayConfig {
                amqp_url: config::string("AMQP_URL", config::DEFAULT_AMQP_URL),
                exchange: config::string("EVENTS_EXCHANGE", "events"),
            },
        })
    }
}
