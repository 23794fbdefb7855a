//! chatbot-service settings, from the environment.

use service_runtime::config::{self, ConfigError};

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`
    pub database_url: String,
    /// `CHATBOT_GRPC_ADDR`, where the binary listens.
    pub listen_addr: String,
    /// `CHATBOT_DB_MAX_CONNECTIONS`
    pub max_db_connections: u32,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            database_url: config::string("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chatbot_platform"),
            listen_addr: config::string("CHATBOT_GRPC_ADDR", "127.0.0.1:50051"),
            max_db_connections: config::parsed("CHATBOT_DB_MAX_CONNECTIONS", 10)?,
        })
    }
}
