//! integration-service: a workspace's connections to other systems
//! (Shopify stores and its own databases; Salesforce next), tried before
//! they are saved, with their credentials sealed, checked on request, and
//! announced as events.
//!
//! [`serve`] runs the service on a bound listener until shutdown; the
//! binary in `main.rs` only reads the config and calls it, so tests start
//! the same code in-process.

mod chatbot;
mod checking;
mod config;
mod connecting;
mod crm_cache;
mod customer_lookup;
mod db_orders;
mod db_polling;
mod events;
mod grpc;
mod inventory_inbox;
mod kinds;
mod lead_queue;
mod lead_sync;
mod order_notices;
mod product_documents;
mod product_knowledge;
mod reconciling;
mod salesforce_access;
mod shopify_access;
mod shopify_inbox;
mod store;
mod vault;

use std::sync::Arc;

use event_pipeline::{Outbox, relay};
use outbound_http::{client::Timeouts, policy::CallPolicy};
use proto::integration::v1::integration_service_server::IntegrationServiceServer;
use service_runtime::grpc_server;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use reconciling::Schedule as SyncSchedule;

/// The schema's migrations, applied at start or by `<binary> migrate`.
pub static MIGRATIONS: Migrator = sqlx::migrate!();
pub const SCHEMA: &str = "integration";

/// The HTTP client every vendor is called with: only public addresses
/// (unless `targets` allows more), no redirects, bounded times.
fn vendor_client(config: &Config) -> reqwest::Client {
    let timeouts = Timeouts {
        connect: config.connect_timeout,
        request: Some(config.connect_timeout),
        read: None,
    };
    let user_agent = concat!("chatbot-platform-integrations/", env!("CARGO_PKG_VERSION"));
    outbound_http::client::guarded(&config.targets, timeouts, user_agent)
}

pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = config.service.connect(SCHEMA, &MIGRATIONS).await?;
    let outbox = Outbox::new(SCHEMA);
    relay::spawn(pool.clone(), outbox.clone(), config.events.clone(), shutdown.clone());
    let grpc = Arc::new(service_runtime::grpc_metrics::GrpcMetrics::default());
    let scrape = event_pipeline::outbox::producer_scrape(&grpc, &pool, config.service.max_db_connections);
    config.service.serve_admin(scrape, shutdown.clone()).await?;
    tracing::info!(addr = %listener.local_addr()?, "integration-service listening");
    let reach = Arc::new(kinds::Reach {
        shopify: kinds::shopify::Shopify::new(
            vendor_client(&config),
            CallPolicy::new(config.vendor_retries.clone(), config.vendor_breaker),
            config.shopify_url.clone(),
        ),
        salesforce: kinds::salesforce::Salesforce::new(
            vendor_client(&config),
            CallPolicy::new(config.vendor_retries.clone(), config.vendor_breaker),
        ),
        targets: config.targets,
        timeout: config.connect_timeout,
        public_url: config.public_url,
        databases: kinds::db_sessions::Pools::default(),
    });
    let vault = vault::Vault::new(config.secret_keys);
    let access = shopify_access::ShopifyAccess::new(pool.clone(), vault.clone(), reach.clone());
    let chatbot = chatbot::Chatbot::new(&config.chatbot_url, &config.service)?;
    let knowledge = product_knowledge::ProductKnowledge::new(pool.clone(), chatbot.clone());
    let polling = db_polling::DbPolling::new(pool.clone(), outbox.clone(), vault.clone(), reach.clone());
    polling.spawn(knowledge.wake(), shutdown.clone());
    let inventory = inventory_inbox::InventoryInbox::new(pool.clone(), outbox.clone(), vault.clone(), knowledge.wake());
    let processor = shopify_inbox::Processor::new(pool.clone(), outbox.clone(), knowledge.wake());
    let reconciler = reconciling::Reconciler::new(
        pool.clone(),
        outbox.clone(),
        vault.clone(),
        access.clone(),
        config.sync.clone(),
        knowledge.wake(),
    );
    reconciler.clone().spawn(shutdown.clone());
    knowledge.spawn(shutdown.clone());
    order_notices::OrderNotices::new(pool.clone(), chatbot.clone()).spawn(shutdown.clone());
    let salesforce = salesforce_access::SalesforceAccess::new(reach.salesforce.clone());
    let cache = config
        .redis_url
        .as_deref()
        .map(|url| crm_cache::CrmCache::connect(url, "integration:", config.crm_cache_ttl))
        .transpose()?;
    let customers =
        customer_lookup::CustomerLookup::new(pool.clone(), vault.clone(), salesforce.clone(), cache.clone());
    let leads = lead_sync::LeadPusher::new(pool.clone(), outbox.clone(), vault.clone(), salesforce, cache)
        .retrying_after(config.lead_retry);
    let bound = lead_queue::consume(
        pool.clone(),
        chatbot.clone(),
        config.events.clone(),
        leads.wake(),
        shutdown.clone(),
    );
    leads.spawn(shutdown.clone());
    let receiver = shopify_inbox::Receiver::new(pool.clone(), vault.clone(), processor.wake());
    processor.spawn(shutdown.clone());
    let orders = db_orders::DatabaseOrders::new(pool.clone(), vault.clone(), reach.clone());
    let integrations = grpc::Integrations {
        pool: pool.clone(),
        checker: checking::Checker::new(pool.clone(), vault.clone(), reach.clone(), access.clone()),
        connector: connecting::Connector::new(pool, outbox, vault, reach, chatbot),
        receiver,
        inventory,
        orders,
        reconciler,
        customers,
    };
    let service = IntegrationServiceServer::new(integrations);
    grpc_server::serve_one(
        service,
        listener,
        &config.service.grpc_serving(&grpc),
        bound.wait(),
        shutdown,
    )
    .await?;
    Ok(())
}
