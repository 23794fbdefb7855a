//! chatbot-service settings, from the environment.

use std::path::PathBuf;

use event_pipeline::BrokerSettings;
use outbound_http::TargetGuard;
use service_runtime::config::{self, ConfigError, ServiceSettings};

use sealing::Keyring;

use crate::{drafting::model_server::ModelSettings, secrets::operator::Secrets};

const DEVELOPMENT_KEY: [u8; 32] = *b"development-only-chatbot-secrets";

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`, `CHATBOT_GRPC_ADDR`, `CHATBOT_DB_MAX_CONNECTIONS`.
    pub service: ServiceSettings,
    /// `AMQP_URL` and `EVENTS_EXCHANGE`: where recorded events are published.
    pub events: BrokerSettings,
    /// `CHATBOT_LLM_TIMEOUT_MS` (30000), `CHATBOT_LLM_MAX_ATTEMPTS` (3),
    /// `CHATBOT_LLM_BACKOFF_MS` (500), `CHATBOT_LLM_ALLOWED_CIDRS` (none:
    /// model servers must be public unless their range is listed).
    pub model: ModelSettings,
    /// `CHATBOT_SECRETS_DIR` and `CHATBOT_SECRET_<REF>`: model API keys the
    /// operator provides, usable by the workspaces
    /// `CHATBOT_SECRET_GRANTS_FILE` grants them to.
    pub secrets: Secrets,
    /// `CHATBOT_SECRET_KEYS` (`id:base64,…`, the first seals): the keys
    /// workspaces' own secrets are sealed with.
    pub secret_keys: Keyring,
    /// `CHATBOT_EMBEDDING_MODEL_DIR`: a sentence-transformers MPNet model
    /// (config.json, model.safetensors, vocab.txt, tokenizer_config.json)
    /// for matching questions by meaning. Unset: questions are matched by
    /// their words alone.
    pub embedding_model_dir: Option<PathBuf>,
    /// `CHATBOT_INTEGRATION_URL` (`http://127.0.0.1:50052`):
    /// integration-service's gRPC address, where bots look up the
    /// verified customer's orders.
    pub integration_url: String,
    /// `CHATBOT_RETENTION_DAYS` (30): finished training jobs and messages'
    /// idempotency keys are forgotten after this long.
    pub retention: std::time::Duration,
}

const DEFAULT_RETENTION_DAYS: u64 = 30;
const DAY: u64 = 86_400;

const DEFAULT_INTEGRATION_URL: &str = "http://127.0.0.1:50052";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            service: ServiceSettings::from_env(
                service_runtime::calls::Party::Chatbot,
                "CHATBOT_GRPC_ADDR",
                "127.0.0.1:50051",
                "CHATBOT_DB_MAX_CONNECTIONS",
            )?
            .with_admin("CHATBOT_ADMIN_ADDR", "127.0.0.1:9101"),
            events: BrokerSettings::from_env()?,
            model: model_settings()?,
            secrets: Secrets::from_env(),
            secret_keys: config::keyring("CHATBOT_SECRET_KEYS", &DEVELOPMENT_KEY)?,
            embedding_model_dir: Some(config::string("CHATBOT_EMBEDDING_MODEL_DIR", ""))
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
            integration_url: config::string("CHATBOT_INTEGRATION_URL", DEFAULT_INTEGRATION_URL),
            retention: std::time::Duration::from_secs(
                DAY * config::parsed("CHATBOT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)?,
            ),
        })
    }

    /// Settings for tests and local runs: `service` and `events` as given,
    /// every other setting at its default, no model API keys, and
    /// questions matched by their words alone.
    pub fn development(service: ServiceSettings, events: BrokerSettings) -> Self {
        Self {
            service,
            events,
            model: ModelSettings::default(),
            secrets: Secrets::default(),
            secret_keys: Keyring::single("development", &DEVELOPMENT_KEY),
            embedding_model_dir: None,
            integration_url: DEFAULT_INTEGRATION_URL.into(),
            retention: std::time::Duration::from_secs(DAY * DEFAULT_RETENTION_DAYS),
        }
    }
}

fn model_settings() -> Result<ModelSettings, ConfigError> {
    let defaults = ModelSettings::default();
    let cidrs = config::string("CHATBOT_LLM_ALLOWED_CIDRS", "");
    let guard = TargetGuard::from_list(&cidrs).map_err(|reason| ConfigError::Invalid {
        name: "CHATBOT_LLM_ALLOWED_CIDRS",
        value: cidrs.clone(),
        reason,
    })?;
    Ok(ModelSettings {
        timeout: config::millis("CHATBOT_LLM_TIMEOUT_MS", defaults.timeout)?,
        max_attempts: config::parsed("CHATBOT_LLM_MAX_ATTEMPTS", defaults.max_attempts)?.max(1),
        backoff: config::millis("CHATBOT_LLM_BACKOFF_MS", defaults.backoff)?,
        guard,
        ..defaults
    })
}
