#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::telemetry::init("analytics-service");
    let config = analytics_service::config_from_env()?;
    let listener = service_runtime::listener::bind("ANALYTICS_GRPC_ADDR", &config.service.listen_addr).await?;
    analytics_service::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
