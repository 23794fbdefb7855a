//! The backing services a test stack needs, made fresh for it: a PostgreSQL
//! database and a RabbitMQ exchange name of its own.

use std::time::Duration;

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use rand::{Rng, distributions::Alphanumeric};
use sqlx::{Connection as _, PgConnection};

pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub struct Infra {
    pub database: String,
    pub database_url: String,
    pub exchange: String,
}

impl Infra {
    pub async fn create() -> Self {
        let suffix: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(12)
            .map(|c| char::from(c).to_ascii_lowercase())
            .collect();
        let database = format!("e2e_{suffix}");
        let mut admin = postgres().await;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .expect("creating the test database");
        check_rabbitmq().await;
        Self {
            database_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
            database,
            exchange: format!("e2e.{suffix}.events"),
        }
    }

    /// Drops the database, the exchange and the consumers' queues. Each
    /// step has a deadline: cleanup must never hang a test run.
    pub async fn remove(self) {
        const STEP: Duration = Duration::from_secs(15);
        let drop_database = async {
            if let Ok(mut admin) = PgConnection::connect(POSTGRES_ADMIN_URL).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database))
                    .execute(&mut admin)
                    .await;
            }
        };
        if tokio::time::timeout(STEP, drop_database).await.is_err() {
            eprintln!("warning: dropping test database {} timed out", self.database);
        }
        let remove_broker_objects = async {
            let Ok(connection) = event_pipeline::broker::connect(AMQP_URL).await else {
                return;
            };
            if let Ok(channel) = connection.create_channel().await {
                let _ = channel
                    .exchange_delete(self.exchange.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
                for consumer in ["webhook-dispatcher", "integration-service", "analytics-service"] {
                    let queue = format!("{consumer}.{}", self.exchange);
                    let _ = channel
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
            }
            let _ = connection.close(200, "test done".into()).await;
        };
        if tokio::time::timeout(STEP, remove_broker_objects).await.is_err() {
            eprintln!("warning: removing test exchange {} timed out", self.exchange);
        }
    }
}

async fn postgres() -> PgConnection {
    PgConnection::connect(POSTGRES_ADMIN_URL).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres ({e}). \
             Start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
             or run deploy/test.sh, which starts it."
        )
    })
}

async fn check_rabbitmq() {
    match event_pipeline::broker::connect(AMQP_URL).await {
        Ok(connection) => {
            let _ = connection.close(200, "probe".into()).await;
        }
        Err(e) => panic!(
            "RabbitMQ is not reachable at 127.0.0.1:5672 as guest ({e}). \
             Start it with `rabbitmq-server -detached` or run deploy/test.sh, which starts it."
        ),
    }
}
