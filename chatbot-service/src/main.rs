use anyhow::Context;
use chatbot_service::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::telemetry::init("chatbot-service");
    let config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(&config.listen_addr)
        .await
        .with_context(|| format!("binding CHATBOT_GRPC_ADDR={}", config.listen_addr))?;
    chatbot_service::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
