use gateway::Config;

// The request path allocates many small, short-lived buffers across threads;
// mimalloc handles that with far less contention than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_runtime::telemetry::init("gateway");
    let outcome = run().await;
    telemetry.shutdown().await;
    outcome
}

async fn run() -> anyhow::Result<()> {
    if service_runtime::database::migrate_requested() {
        return Ok(service_runtime::database::migrate_from_env(gateway::SCHEMA, &gateway::MIGRATIONS).await?);
    }
    let config = Config::from_env()?;
    let listener = service_runtime::listener::bind("GATEWAY_ADDR", &config.listen_addr).await?;
    gateway::serve(config, listener, service_runtime::shutdown::on_signal()).await
}
