#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_runtime::telemetry::init("analytics-service");
    let outcome = run().await;
    telemetry.shutdown().await;
    outcome
}

async fn run() -> anyhow::Result<()> {
    if service_runtime::database::migrate_requested() {
        return Ok(service_runtime::database::migrate_from_env(
            analytics_service::SCHEMA,
            &analytics_service::MIGRATIONS,
        )
        .await?);
    }
    let config = analytics_service::config_from_env()?;
    let listener = service_runtime::listener::bind("ANALYTICS_GRPC_ADDR", &config.service.listen_addr).await?;
    analytics_service::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
