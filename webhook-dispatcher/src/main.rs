use webhook_dispatcher::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::telemetry::init("webhook-dispatcher");
    let config = Config::from_env()?;
    let listener = service_runtime::listener::bind("WEBHOOKS_GRPC_ADDR", &config.service.listen_addr).await?;
    webhook_dispatcher::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
