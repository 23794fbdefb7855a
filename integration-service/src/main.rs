use integration_service::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::telemetry::init("integration-service");
    let config = Config::from_env()?;
    let listener = service_runtime::listener::bind("INTEGRATION_GRPC_ADDR", &config.service.listen_addr).await?;
    integration_service::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
