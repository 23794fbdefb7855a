//! The dispatcher's RabbitMQ connection and the exchange it listens on.

use lapin::Connection;
use service_runtime::amqp::{self, AmqpError};

pub struct Broker {
    connection: Connection,
}

impl Broker {
    /// Connects and declares the events exchange.
    pub async fn connect(url: &str, exchange: &str) -> Result<Self, AmqpError> {
        let connection = amqp::connect(url).await?;
        let channel = connection.create_channel().await?;
        amqp::declare_exchange(&channel, exchange).await?;
        Ok(Self { connection })
    }

    pub async fn close(self) {
        if let Err(error) = self.connection.close(200, "shutting down".into()).await {
            tracing::warn!(%error, "closing RabbitMQ connection");
        }
    }
}
