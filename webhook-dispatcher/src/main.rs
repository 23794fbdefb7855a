use webhook_dispatcher::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_runtime::telemetry::init("webhook-dispatcher");
    let outcome = run().await;
    telemetry.shutdown().await;
    outcome
}

async fn run() -> anyhow::Result<()> {
    if service_runtime::database::migrate_requested() {
        return Ok(service_runtime::database::migrate_from_env(
            webhook_dispatcher::SCHEMA,
            &webhook_dispatcher::MIGRATIONS,
        )
        .await?);
    }
    let config = Config::from_env()?;
    let listener = service_runtime::listener::bind("WEBHOOKS_GRPC_ADDR", &config.service.listen_addr).await?;
    webhook_dispatcher::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
