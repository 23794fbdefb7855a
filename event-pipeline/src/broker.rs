//! Where events go: the RabbitMQ connection and the `events` topic
//! exchange, set up the same way by every publisher and consumer so
//! start-up order never matters.

use std::time::Duration;

use lapin::{
    Channel, Connection, ConnectionProperties, ExchangeKind, options::ExchangeDeclareOptions, types::FieldTable,
};
use service_runtime::config::{self, ConfigError};

/// The local RabbitMQ, as the README's up command expects it.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_EXCHANGE: &str = "events";

/// The broker and exchange a service publishes to or consumes from.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// `AMQP_URL`
    pub amqp_url: String,
    /// `EVENTS_EXCHANGE`: a durable topic exchange, routing key = event type.
    pub exchange: String,
    /// `EVENTS_REQUIRED_QUEUES`: queues that must exist before the relay
    /// publishes (default: the webhook dispatcher's). Several consumers
    /// bind the exchange, so a mandatory publish alone cannot tell that one
    /// of them has no queue yet (it never started, or its queue was
    /// deleted); without this, such events would reach only the others.
    pub required_queues: Vec<String>,
}

impl BrokerSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let exchange = config::string("EVENTS_EXCHANGE", DEFAULT_EXCHANGE);
        let required_queues = match config::optional("EVENTS_REQUIRED_QUEUES") {
            Some(list) if list == "none" => Vec::new(),
            Some(list) => config::list(&list),
            None => vec![dispatcher_queue(&exchange)],
        };
        Ok(Self {
            amqp_url: config::string("AMQP_URL", DEFAULT_AMQP_URL),
            required_queues,
            exchange,
        })
    }

    /// The local broker, on `exchange` (tests give each stack its own).
    pub fn development(exchange: &str) -> Self {
        Self {
            amqp_url: DEFAULT_AMQP_URL.into(),
            exchange: exchange.into(),
            required_queues: vec![dispatcher_queue(exchange)],
        }
    }
}

/// The webhook dispatcher's queue on `exchange`: the consumer customers
/// rely on for every event.
pub fn dispatcher_queue(exchange: &str) -> String {
    format!("webhook-dispatcher.{exchange}")
}

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("cannot reach RabbitMQ at {target}: {source}. Start it (e.g. `rabbitmq-server -detached`) or set AMQP_URL")]
    Connect {
        target: String,
        #[source]
        source: lapin::Error,
    },
    #[error("RabbitMQ did not answer at {target} within {seconds} s; check AMQP_URL")]
    Timeout { target: String, seconds: u64 },
    #[error("RabbitMQ: {0}")]
    Protocol(#[from] lapin::Error),
    /// The consumer's own store failed; reading resumes from its position.
    #[error("the event handler failed: {0}")]
    Handler(String),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(url: &str) -> Result<Connection, AmqpError> {
    let target = redact(url);
    let connecting = Connection::connect(url, ConnectionProperties::default());
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| AmqpError::Timeout {
            target: target.clone(),
            seconds: CONNECT_TIMEOUT.as_secs(),
        })?
        .map_err(|source| AmqpError::Connect { target, source })
}

/// Declares `exchange` as a durable topic exchange.
pub async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), AmqpError> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}://{}", &url[..scheme_end], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(
            super::redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://host:5672/%2f"
        );
        assert_eq!(super::redact("amqp://host:5672"), "amqp://host:5672");
    }
}
