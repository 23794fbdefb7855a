//! chatbot-service settings, from the environment.

use service_runtime::config::{ConfigError, ServiceSettings};

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`, `CHATBOT_GRPC_ADDR`, `CHATBOT_DB_MAX_CONNECTIONS`.
    pub service: ServiceSettings,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceSettings::from_env("CHATBOT_GRPC_ADDR", "127.0.0.1:50051", "CHATBOT_DB_MAX_CONNECTIONS")?,
        })
    }
}
