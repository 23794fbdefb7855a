//! The dispatcher's RabbitMQ connection and the exchange it listens on.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties, ExchangeKind, options::ExchangeDeclareOptions, types::FieldTable};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach RabbitMQ at {target}: {source}. Start it (e.g. `rabbitmq-server -detached`) or set AMQP_URL")]
    Connect {
        target: String,
        #[source]
        source: lapin::Error,
    },
    #[error("RabbitMQ did not answer at {target} within {seconds} s; check AMQP_URL")]
    Timeout { target: String, seconds: u64 },
    #[error("declaring exchange {exchange}: {source}")]
    Declare {
        exchange: String,
        #[source]
        source: lapin::Error,
    },
}

pub struct Broker {
    connection: Connection,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Broker {
    /// Connects and declares `exchange` as a durable topic exchange (the
    /// same declaration every publisher makes, so the order of start-up
    /// does not matter).
    pub async fn connect(url: &str, exchange: &str) -> Result<Self, BrokerError> {
        let target = redact(url);
        let connecting = Connection::connect(url, ConnectionProperties::default());
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| BrokerError::Timeout {
                target: target.clone(),
                seconds: CONNECT_TIMEOUT.as_secs(),
            })?
            .map_err(|source| BrokerError::Connect { target, source })?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|source| declare_error(exchange, source))?;
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
            .await
            .map_err(|source| declare_error(exchange, source))?;
        Ok(Self { connection })
    }

    pub async fn close(self) {
        if let Err(error) = self.connection.close(200, "shutting down".into()).await {
            tracing::warn!(%error, "closing RabbitMQ connection");
        }
    }
}

fn declare_error(exchange: &str, source: lapin::Error) -> BrokerError {
    BrokerError::Declare {
        exchange: exchange.to_owned(),
        source,
    }
}

/// The URL without its password, for messages and logs.
fn redact(url: &str) -> String {
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
