use anyhow::Context;
use gateway::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::telemetry::init("gateway");
    let config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(&config.listen_addr)
        .await
        .with_context(|| format!("binding GATEWAY_ADDR={}", config.listen_addr))?;
    gateway::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
