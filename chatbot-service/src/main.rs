use chatbot_service::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_runtime::telemetry::init("chatbot-service");
    let outcome = run().await;
    telemetry.shutdown().await;
    outcome
}

async fn run() -> anyhow::Result<()> {
    if service_runtime::database::migrate_requested() {
        return Ok(
            service_runtime::database::migrate_from_env(chatbot_service::SCHEMA, &chatbot_service::MIGRATIONS).await?,
        );
    }
    let config = Config::from_env()?;
    let listener = service_runtime::listener::bind("CHATBOT_GRPC_ADDR", &config.service.listen_addr).await?;
    chatbot_service::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
