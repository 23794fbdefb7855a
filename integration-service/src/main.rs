use integration_service::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_runtime::telemetry::init("integration-service");
    let outcome = run().await;
    telemetry.shutdown().await;
    outcome
}

async fn run() -> anyhow::Result<()> {
    if service_runtime::database::migrate_requested() {
        return Ok(service_runtime::database::migrate_from_env(
            integration_service::SCHEMA,
            &integration_service::MIGRATIONS,
        )
        .await?);
    }
    let config = Config::from_env()?;
    let listener = service_runtime::listener::bind("INTEGRATION_GRPC_ADDR", &config.service.listen_addr).await?;
    integration_service::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
