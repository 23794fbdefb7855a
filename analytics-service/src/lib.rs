//! analytics-service: conversation and message statistics from the events
//! stream, and the API monitoring report from what the gateways record.

mod api_usage;
mod bot_stats;
mod bots;
mod calendar;
mod event_feed;
mod metric;
mod retention;
mod series;
mod service;
mod tally;

use event_pipeline::BrokerSettings;
use proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use service_runtime::{
    admin::Scrape,
    config::{self, ConfigError, ServiceSettings},
    grpc_metrics::GrpcMetrics,
    grpc_server,
};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The schema's migrations, applied at start or by `<binary> migrate`.
pub static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "analytics";

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceSettings,
    pub events: BrokerSettings,
    /// `ANALYTICS_STREAM_MAX_AGE`: how long the events stream keeps events
    /// (RabbitMQ's `x-max-age`, e.g. `90D`), which bounds how far back the
    /// statistics can be rebuilt. Fixed when the stream is first declared.
    pub stream_max_age: String,
    /// `ANALYTICS_RETENTION_DAYS`: statistics older than this are deleted.
    pub retention_days: u32,
    /// `ANALYTICS_CHATBOT_URL` (`http://127.0.0.1:50051`): chatbot-service,
    /// which says whether a bot asked about is the caller's.
    pub chatbot_url: String,
}

const DEFAULT_CHATBOT_URL: &str = "http://127.0.0.1:50051";

impl Config {
    pub fn development(service: ServiceSettings, events: BrokerSettings) -> Self {
        Self {
            service,
            events,
            stream_max_age: "90D".into(),
            retention_days: 400,
            chatbot_url: DEFAULT_CHATBOT_URL.into(),
        }
    }
}

/// `ANALYTICS_GRPC_ADDR`, `ANALYTICS_DB_MAX_CONNECTIONS`, `DATABASE_URL`,
/// `AMQP_URL`, `EVENTS_EXCHANGE`, `ANALYTICS_STREAM_MAX_AGE`,
/// `ANALYTICS_RETENTION_DAYS`, `ANALYTICS_CHATBOT_URL`.
pub fn config_from_env() -> Result<Config, ConfigError> {
    let service = ServiceSettings::from_env(
        service_runtime::calls::Party::Analytics,
        "ANALYTICS_GRPC_ADDR",
        "127.0.0.1:50053",
        "ANALYTICS_DB_MAX_CONNECTIONS",
    )?
    .with_admin("ANALYTICS_ADMIN_ADDR", "127.0.0.1:9103");
    let stream_max_age = config::string("ANALYTICS_STREAM_MAX_AGE", "90D");
    if !valid_max_age(&stream_max_age) {
        return Err(ConfigError::invalid(
            "ANALYTICS_STREAM_MAX_AGE",
            &stream_max_age,
            "must be a number and a unit of Y, M, D, h, m or s, such as 90D",
        ));
    }
    Ok(Config {
        service,
        events: BrokerSettings::from_env()?,
        stream_max_age,
        retention_days: config::parsed("ANALYTICS_RETENTION_DAYS", 400)?,
        chatbot_url: config::string("ANALYTICS_CHATBOT_URL", DEFAULT_CHATBOT_URL),
    })
}

/// RabbitMQ's `x-max-age` form: digits then one unit letter.
fn valid_max_age(text: &str) -> bool {
    text.len() >= 2
        && text[..text.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && matches!(text.as_bytes()[text.len() - 1], b'Y' | b'M' | b'D' | b'h' | b'm' | b's')
}

pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = config.service.connect(SCHEMA, &MIGRATIONS).await?;
    event_feed::declare(&config.events, &config.stream_max_age).await;
    event_feed::spawn(
        pool.clone(),
        config.service.database_url.clone(),
        config.events.clone(),
        config.stream_max_age.clone(),
        shutdown.clone(),
    );
    retention::spawn(pool.clone(), config.retention_days, shutdown.clone());
    let grpc = std::sync::Arc::new(GrpcMetrics::default());
    let scrape = Scrape::new(grpc.clone(), pool.clone(), config.service.max_db_connections);
    config.service.serve_admin(scrape, shutdown.clone()).await?;
    tracing::info!(addr = %listener.local_addr()?, "analytics-service listening");
    let bots = bots::Bots::new(&config.chatbot_url, &config.service)?;
    let service = AnalyticsServiceServer::new(service::Analytics::new(pool, bots));
    let ready = std::future::ready(());
    grpc_server::serve_one(service, listener, &config.service.grpc_serving(&grpc), ready, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_ages_are_checked() {
        assert!(super::valid_max_age("90D"));
        assert!(super::valid_max_age("12h"));
        assert!(!super::valid_max_age("90"));
        assert!(!super::valid_max_age("D"));
        assert!(!super::valid_max_age("9 D"));
    }
}
