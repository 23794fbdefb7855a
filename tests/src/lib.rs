//! The test harness: [`TestStack::start`] brings up every service and the
//! gateway in-process on port 0, against a fresh PostgreSQL database and a
//! RabbitMQ exchange of its own, and hands back a REST client with a new
//! workspace's API key. Dropping the stack stops the services and removes
//! the database and the exchange.
//!
//! When PostgreSQL or RabbitMQ is down the stack fails to start with a
//! message that names the service and how to start it; tests never skip.

pub mod bench_clock;
pub mod bots;
pub mod certs;
mod client;
pub mod customer_db;
pub mod event_tap;
pub mod infra;
pub mod jwt_issuer;
pub mod local_server;
pub mod model_server;
pub mod otlp_collector;
pub mod redis_server;
pub mod salesforce_server;
pub mod shopify_server;
pub mod tcp_proxy;
pub mod webhook_receiver;

use std::time::Duration;

use event_pipeline::BrokerSettings;
use gateway::config::RateLimitConfig;
use outbound_http::{RetrySchedule, TargetGuard, breaker::BreakerSettings};
use service_runtime::{
    calls::{CallKeys, Party},
    config::ServiceSettings,
    grpc_client::CallChannel,
    listener::Address,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use client::{Client, Reply};
pub use infra::AMQP_URL;
use infra::Infra;

/// The one origin test stacks allow for CORS.
pub const CORS_ORIGIN: &str = "https://app.example.com";

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A model server API key chatbot-service holds in test stacks, by name.
pub const MODEL_KEY_REF: &str = "test-model-key";
pub const MODEL_KEY: &str = "sk-test-0123456789";

/// Changes to the stack a test needs, before it starts.
#[derive(Default)]
pub struct Options {
    /// Each service serves `/metrics` on an admin address of its own
    /// (`TestStack::admin_addrs`).
    pub admin_ports: bool,
    /// Upstreams whose address points at a port nobody listens on.
    pub dead_upstreams: Vec<&'static str>,
    /// Upstreams that get one more replica address, where a socket accepts
    /// connections and never answers: a replica stuck starting up.
    pub stuck_replicas: Vec<&'static str>,
    /// Gateway body limit; default 64 KiB.
    pub max_body_bytes: Option<usize>,
    /// How long a client may take over a request's headers; default 10 s.
    pub header_read_timeout: Option<Duration>,
    /// External JWT verification for the gateway.
    pub jwt: Option<gateway::config::JwtConfig>,
    /// Rate limits; default generous enough never to get in a test's way.
    pub rate_limits: Option<gateway::config::RateLimitConfig>,
    /// Extra gateway replicas sharing the same services and database.
    pub extra_gateways: usize,
    /// chatbot-service replicas behind the gateway (default 1).
    pub chatbot_replicas: usize,
    /// integration-service replicas behind the gateway (default 1).
    pub integration_replicas: usize,
    /// Replicas of every service, when more than the per-service counts.
    pub every_service_replicas: usize,
    /// How long a stopping service reports NOT_SERVING before it stops
    /// accepting (`GRPC_DRAIN_DELAY_MS`); default none, so stacks stop fast.
    pub drain_delay: Option<Duration>,
    /// Where integration-service finds Shopify stores (`INTEGRATION_SHOPIFY_URL`).
    pub shopify_url: Option<String>,
    /// Circuit breaker settings; default opens after 3 failures for 1 s.
    pub breaker: Option<BreakerSettings>,
    /// Where chatbot-service publishes events; default RabbitMQ itself.
    pub chatbot_amqp_url: Option<String>,
    /// Refuse webhook targets on loopback, as production does; by default
    /// tests allow 127.0.0.0/8 for their receivers.
    pub forbid_internal_webhook_targets: bool,
    /// Refuse customer databases on loopback, as production does.
    pub forbid_internal_integration_targets: bool,
    /// Serve no gRPC reflection, as production does by default; tests
    /// otherwise turn it on.
    pub without_reflection: bool,
    /// How long an endpoint may fail before it is disabled (default 5 days).
    pub webhook_disable_after: Option<Duration>,
    /// Webhook requests in flight to one endpoint (default 16).
    pub webhook_concurrency: Option<usize>,
    /// Events one replay examines at most (default 100000).
    pub webhook_replay_max_events: Option<i64>,
    /// Services speak mutual TLS, with certificates from a fresh authority.
    pub grpc_tls: bool,
    /// Database connections per service; default 5, so many test stacks
    /// fit one PostgreSQL. Benchmarks use the production default, 10.
    pub db_connections: Option<u32>,
    /// When integration-service reconciles stores; default on request
    /// only, failed attempts retried after 1 s.
    pub sync: Option<integration_service::SyncSchedule>,
    /// Where integration-service caches CRM lookups (`INTEGRATION_REDIS_URL`).
    pub integration_redis_url: Option<String>,
    /// How long a vendor connection's open breaker stays open (default 30 s).
    pub vendor_breaker_open: Option<Duration>,
}

/// Where the sentence-embedding model is, as chatbot-service reads it;
/// deploy/test.sh fetches the model and sets it for every test.
pub const EMBEDDING_MODEL_VAR: &str = "CHATBOT_EMBEDDING_MODEL_DIR";

/// Fails a test that needs the embedding model when it is not configured.
pub fn require_embedding_model() {
    assert!(
        std::env::var_os(EMBEDDING_MODEL_VAR).is_some(),
        "{EMBEDDING_MODEL_VAR} is not set: run the suite with deploy/test.sh, which fetches \
         all-mpnet-base-v2 and sets it, or point it at that model's directory"
    );
}

/// Loads the embedding model, once per test process, before any stack's
/// services start: the first load reads and hashes the weights, and a
/// chatbot-service doing that while its gateway already health-checks it
/// made a test's first call fail now and then (503) right after the stack
/// reported ready.
async fn preload_embedding_model() {
    let Some(dir) = std::env::var_os(EMBEDDING_MODEL_VAR) else {
        return;
    };
    tokio::task::spawn_blocking(move || chatbot_service::preload_embedding_model(std::path::Path::new(&dir)))
        .await
        .expect("loading the embedding model")
        .expect("the embedding model in CHATBOT_EMBEDDING_MODEL_DIR loads");
}

/// The upstreams, as the gateway names them.
const UPSTREAMS: [&str; 4] = ["chatbot", "integration", "analytics", "webhooks"];

/// One running service replica.
struct Service {
    upstream: &'static str,
    addr: String,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The dispatcher runs on a runtime of its own, so a test can kill it
    /// abruptly: dropping the runtime cancels every task it runs mid-flight.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

pub struct TestStack {
    pub base_url: String,
    /// The stack's own events exchange.
    pub exchange: String,
    /// Every gateway replica's URL; the first is `base_url`.
    pub gateway_urls: Vec<String>,
    /// Each gateway replica's admin listener (`/metrics`), in the same
    /// order.
    pub gateway_admin_urls: Vec<String>,
    /// Each upstream's name (as the gateway calls it) and gRPC address.
    pub grpc_addrs: Vec<(&'static str, String)>,
    /// A client authenticated as a fresh workspace.
    pub client: Client,
    /// That workspace's id.
    pub workspace_id: String,
    /// The stack's `PLATFORM_CALL_KEYS`, fresh for each stack.
    pub call_keys: String,
    /// chatbot-service's `CHATBOT_SECRET_GRANTS_FILE`, where the operator's
    /// key [`MODEL_KEY_REF`] is granted to workspaces.
    grants_file: std::path::PathBuf,
    chatbot_amqp_url: String,
    embedding_model_dir: Option<std::path::PathBuf>,
    forbid_internal_webhook_targets: bool,
    forbid_internal_integration_targets: bool,
    reflection: bool,
    shopify_url: Option<String>,
    sync: integration_service::SyncSchedule,
    integration_redis_url: Option<String>,
    vendor_breaker_open: Option<Duration>,
    webhook_disable_after: Option<Duration>,
    webhook_concurrency: Option<usize>,
    webhook_replay_max_events: Option<i64>,
    /// TLS between the stack's components, when `Options::grpc_tls`.
    pub tls: service_runtime::grpc_tls::GrpcTls,
    db_connections: u32,
    drain_delay: Duration,
    admin_ports: bool,
    /// Each service replica's admin address, when `Options::admin_ports`.
    pub admin_addrs: Vec<(&'static str, String)>,
    shutdown: CancellationToken,
    /// Each service replica's address, known before any starts.
    planned: Vec<(&'static str, String)>,
    services: Vec<Service>,
    dispatcher_amqp_url: Option<String>,
    /// Sockets standing in for replicas stuck starting (`Options::stuck_replicas`).
    stuck: Vec<std::net::TcpListener>,
    gateways: Vec<JoinHandle<anyhow::Result<()>>>,
    infra: Option<Infra>,
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        // E2E_LOG=1 shows the services' logs (RUST_LOG filters them).
        if std::env::var_os("E2E_LOG").is_some() {
            let _ = service_runtime::telemetry::init("e2e");
        }
        preload_embedding_model().await;
        let infra = Infra::create().await;
        let shutdown = CancellationToken::new();
        let mut stack = Self {
            embedding_model_dir: std::env::var_os(EMBEDDING_MODEL_VAR).map(Into::into),
            forbid_internal_webhook_targets: options.forbid_internal_webhook_targets,
            forbid_internal_integration_targets: options.forbid_internal_integration_targets,
            reflection: !options.without_reflection,
            shopify_url: options.shopify_url.clone(),
            sync: options.sync.clone().unwrap_or(integration_service::SyncSchedule {
                every: None,
                retry_after: Duration::from_secs(1),
            }),
            integration_redis_url: options.integration_redis_url.clone(),
            vendor_breaker_open: options.vendor_breaker_open,
            webhook_disable_after: options.webhook_disable_after,
            webhook_concurrency: options.webhook_concurrency,
            webhook_replay_max_events: options.webhook_replay_max_events,
            tls: match options.grpc_tls {
                true => certs::platform_tls(),
                false => Default::default(),
            },
            db_connections: options.db_connections.unwrap_or(5),
            drain_delay: options.drain_delay.unwrap_or_default(),
            admin_ports: options.admin_ports,
            admin_addrs: Vec::new(),
            exchange: infra.exchange.clone(),
            chatbot_amqp_url: options
                .chatbot_amqp_url
                .clone()
                .unwrap_or_else(|| infra::AMQP_URL.into()),
            base_url: String::new(),
            gateway_urls: Vec::new(),
            gateway_admin_urls: Vec::new(),
            grpc_addrs: Vec::new(),
            client: Client::anonymous(""),
            workspace_id: String::new(),
            call_keys: service_runtime::calls::keys::generate(),
            grants_file: std::env::temp_dir().join(format!("e2e-grants-{:016x}", rand::random::<u64>())),
            shutdown,
            planned: Vec::new(),
            services: Vec::new(),
            stuck: Vec::new(),
            dispatcher_amqp_url: None,
            gateways: Vec::new(),
            infra: Some(infra),
        };
        // Gateways listen first: integration-service registers webhooks
        // at the gateway's URL.
        let mut listeners = Vec::new();
        for _ in 0..=options.extra_gateways {
            let (listener, addr) = bind().await;
            listeners.push(listener);
            stack.gateway_urls.push(format!("http://{addr}"));
        }
        // Every service listens before any starts: chatbot-service and
        // integration-service each call the other.
        let mut bound = Vec::new();
        for upstream in UPSTREAMS {
            let replicas = match upstream {
                "chatbot" => options.chatbot_replicas.max(1),
                "integration" => options.integration_replicas.max(1),
                _ => 1,
            }
            .max(options.every_service_replicas);
            for _ in 0..replicas {
                let (listener, addr) = bind().await;
                stack.planned.push((upstream, addr.clone()));
                bound.push((upstream, listener, addr));
            }
        }
        for (upstream, listener, addr) in bound {
            stack.spawn_service(upstream, listener, addr);
        }
        stack.grpc_addrs = stack.services.iter().map(|s| (s.upstream, s.addr.clone())).collect();
        let mut gateway_config = stack.gateway_config(&options);
        for upstream in &options.stuck_replicas {
            let stuck = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
            let url = format!("http://{}", stuck.local_addr().expect("an address"));
            let config = gateway_config.upstreams.iter_mut().find(|u| u.name == *upstream);
            config.expect("a service of the stack").urls.push(url);
            stack.stuck.push(stuck);
        }
        for listener in listeners {
            let admin_addr = Address::loopback().expect("a loopback port");
            stack
                .gateway_admin_urls
                .push(format!("http://{}", admin_addr.describe()));
            let config = gateway::Config {
                admin_addr: Some(admin_addr),
                ..gateway_config.clone()
            };
            let replica = gateway::serve(config, listener, stack.shutdown.clone());
            stack.gateways.push(tokio::spawn(replica));
        }
        stack.base_url = stack.gateway_urls[0].clone();
        stack.client = Client::anonymous(&stack.base_url);
        stack.wait_until_ready(&options.dead_upstreams).await;
        let (client, workspace_id) = stack.create_workspace("test workspace").await;
        stack.client = client;
        stack.workspace_id = workspace_id;
        stack
    }

    /// Grants the operator's key [`MODEL_KEY_REF`] to `workspace_id` for
    /// `origin`, as an operator edits the grants file.
    pub fn grant_model_key(&self, workspace_id: &str, origin: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.grants_file)
            .expect("the grants file opens");
        writeln!(file, "{MODEL_KEY_REF} {workspace_id} {origin}").expect("the grant is written");
    }

    /// The keys `me` holds in this stack.
    pub fn keys_of(&self, me: Party) -> CallKeys {
        CallKeys::parse(me, &self.call_keys).expect("generated keys parse")
    }

    /// A channel to `upstream`'s first replica whose calls are signed as
    /// the gateway signs them, for tests that call a service directly.
    pub fn gateway_channel(&self, upstream: &str) -> CallChannel {
        let addr = self
            .grpc_addrs
            .iter()
            .find(|(name, _)| *name == upstream)
            .map(|(_, addr)| addr)
            .expect("a service of the stack");
        let url = self.grpc_url(addr);
        let callee = upstream.parse().expect("a service of the platform");
        let keys = self.keys_of(Party::Gateway);
        service_runtime::grpc_client::call_channel(&url, Duration::from_secs(10), &keys, &self.tls, callee)
            .expect("a signed channel")
    }

    /// The URL of a service listening on `addr`: `https://` when the stack
    /// speaks TLS.
    pub fn grpc_url(&self, addr: &str) -> String {
        match self.tls.is_on() {
            true => format!("https://{addr}"),
            false => format!("http://{addr}"),
        }
    }

    /// The first replica of `upstream`'s address.
    fn planned_addr(&self, upstream: &str) -> &str {
        self.planned
            .iter()
            .find(|(u, _)| *u == upstream)
            .map(|(_, addr)| addr.as_str())
            .expect("every service is planned before any starts")
    }

    fn infra(&self) -> &Infra {
        self.infra.as_ref().expect("infra lives until the stack stops")
    }

    fn spawn_service(&mut self, upstream: &'static str, listener: TcpListener, addr: String) {
        let stop = self.shutdown.child_token();
        let admin_addr = self.admin_ports.then(|| Address::loopback().expect("a loopback port"));
        if let Some(addr) = &admin_addr {
            self.admin_addrs.push((upstream, addr.describe()));
        }
        let infra = self.infra();
        let me = upstream.parse().expect("every upstream is a party to calls");
        let settings = ServiceSettings {
            call_keys: self.keys_of(me),
            tls: self.tls.clone(),
            admin_addr,
            database_url: infra.database_url.clone(),
            listen_addr: addr.clone(),
            max_db_connections: self.db_connections,
            // tests/services.rs lists each service's API through it.
            reflection: self.reflection,
            drain_delay: self.drain_delay,
            migrations: Default::default(),
        };
        let token = stop.clone();
        let task = match upstream {
            "chatbot" => {
                let events = BrokerSettings {
                    amqp_url: self.chatbot_amqp_url.clone(),
                    ..BrokerSettings::development(&infra.exchange)
                };
                let mut config = chatbot_service::Config::development(settings, events);
                // Model servers in tests run on loopback; retries come fast.
                config.model.timeout = Duration::from_millis(1500);
                config.model.backoff = Duration::from_millis(50);
                config.model.guard = loopback();
                config.integration_url = self.grpc_url(self.planned_addr("integration"));
                config.secrets = chatbot_service::secrets::operator::Secrets::from_values([(
                    MODEL_KEY_REF.to_owned(),
                    MODEL_KEY.to_owned(),
                )])
                .with_grants(&self.grants_file);
                config.embedding_model_dir = self.embedding_model_dir.clone();
                tokio::spawn(chatbot_service::serve(config, listener, token))
            }
            "integration" => {
                let events = BrokerSettings::development(&infra.exchange);
                let mut config = integration_service::Config::development(settings, events);
                // Customer databases in tests run on loopback.
                if !self.forbid_internal_integration_targets {
                    config.targets = loopback();
                }
                config.connect_timeout = Duration::from_secs(5);
                if let Some(url) = &self.shopify_url {
                    config.shopify_url = url.clone();
                }
                config.public_url = self.gateway_urls[0].clone();
                config.chatbot_url = self.grpc_url(self.planned_addr("chatbot"));
                // Vendors in tests run on loopback; retries come fast.
                config.vendor_retries = RetrySchedule::exponential(Duration::from_millis(50), 4)
                    .with_max_retry_after(Duration::from_secs(2));
                config.sync = self.sync.clone();
                config.redis_url = self.integration_redis_url.clone();
                config.lead_retry = Duration::from_millis(200);
                if let Some(open_for) = self.vendor_breaker_open {
                    config.vendor_breaker.open_for = open_for;
                }
                tokio::spawn(integration_service::serve(config, listener, token))
            }
            "analytics" => {
                let events = BrokerSettings::development(&infra.exchange);
                let mut config = analytics_service::Config::development(settings, events);
                config.chatbot_url = self.grpc_url(self.planned_addr("chatbot"));
                tokio::spawn(analytics_service::serve(config, listener, token))
            }
            _ => {
                let config = self.dispatcher_config(settings);
                self.spawn_dispatcher(addr, stop, config, listener, token);
                return;
            }
        };
        self.services.push(Service {
            upstream,
            addr,
            stop,
            task: Some(task),
            runtime: None,
        });
    }

    /// Where dispatchers started from now on reach RabbitMQ (a
    /// [`tcp_proxy::TcpProxy`], say).
    pub fn set_dispatcher_amqp_url(&mut self, url: &str) {
        self.dispatcher_amqp_url = Some(url.to_owned());
    }

    fn dispatcher_config(&self, settings: ServiceSettings) -> webhook_dispatcher::Config {
        let mut events = BrokerSettings::development(&self.infra().exchange);
        if let Some(url) = &self.dispatcher_amqp_url {
            events.amqp_url = url.clone();
        }
        let mut config = webhook_dispatcher::Config::development(settings, events);
        // Receivers run on loopback; retries come fast.
        if !self.forbid_internal_webhook_targets {
            config.delivery.guard = loopback();
        }
        config.delivery.schedule = RetrySchedule::from_delays([0, 200, 200, 200].map(Duration::from_millis).to_vec());
        config.delivery.timeout = Duration::from_secs(2);
        if let Some(after) = self.webhook_disable_after {
            config.delivery.disable_after = after;
        }
        if let Some(concurrency) = self.webhook_concurrency {
            config.delivery.per_endpoint = concurrency;
        }
        if let Some(max) = self.webhook_replay_max_events {
            config.replay_max_events = max;
        }
        config
    }

    /// The dispatcher runs on a runtime of its own, so a test can kill it
    /// abruptly.
    fn spawn_dispatcher(
        &mut self,
        addr: String,
        stop: CancellationToken,
        config: webhook_dispatcher::Config,
        listener: TcpListener,
        token: CancellationToken,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the dispatcher");
        let listener = listener.into_std().expect("a std listener");
        let task = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener)?;
            webhook_dispatcher::serve(config, listener, token).await
        });
        self.services.push(Service {
            upstream: "webhooks",
            addr,
            stop,
            task: Some(task),
            runtime: Some(runtime),
        });
    }

    fn gateway_config(&self, options: &Options) -> gateway::Config {
        let mut upstreams: Vec<gateway::config::UpstreamConfig> = Vec::new();
        for service in &self.services {
            let url = if options.dead_upstreams.contains(&service.upstream) {
                "http://127.0.0.1:1".to_owned()
            } else {
                self.grpc_url(&service.addr)
            };
            match upstreams.iter_mut().find(|u| u.name == service.upstream) {
                Some(existing) => existing.urls.push(url),
                None => upstreams.push(gateway::config::UpstreamConfig {
                    name: service.upstream.into(),
                    urls: vec![url],
                    timeout: None,
                }),
            }
        }
        let mut config = gateway::Config::development(&self.infra().database_url, self.keys_of(Party::Gateway));
        config.grpc_tls = self.tls.clone();
        config.admin_token = Some(ADMIN_TOKEN.into());
        config.upstreams = upstreams;
        config.upstream_timeout = Duration::from_secs(5);
        config.max_body_bytes = options.max_body_bytes.unwrap_or(64 * 1024);
        if let Some(timeout) = options.header_read_timeout {
            config.header_read_timeout = timeout;
        }
        config.cors_allowed_origins = vec![CORS_ORIGIN.into()];
        config.jwt = options.jwt.clone();
        config.rate_limits = options.rate_limits.clone().unwrap_or_else(|| RateLimitConfig {
            plans: gateway::config::parse_plans("default:1000:1000").expect("plans parse"),
            per_ip: gateway::rate_limit::Quota {
                burst: 1000,
                per_second: 1000.0,
            },
            per_ip_webhooks: gateway::rate_limit::Quota {
                burst: 100_000,
                per_second: 100_000.0,
            },
            ..RateLimitConfig::default()
        });
        // Reports reach analytics within a test's patience; every request
        // counts as slow, so the slowest list always has entries.
        config.usage = gateway::config::UsageSettings {
            recording: true,
            report_every: Duration::from_millis(200),
            slow_threshold: Duration::ZERO,
        };
        config.oauth.issuer = self.gateway_urls[0].clone();
        // deploy/test.sh fetches swagger-ui-dist for the /docs page.
        config.docs_dir = std::env::var_os("E2E_DOCS_DIR").map(Into::into);
        config.oauth.refresh_ttl = Duration::from_secs(3600);
        config.breaker = options.breaker.unwrap_or(BreakerSettings {
            consecutive_failures: 3,
            open_for: Duration::from_secs(1),
            ..BreakerSettings::default()
        });
        config
    }

    /// Stops replica `index` of `upstream` as SIGTERM would, waiting for it
    /// to drain.
    pub async fn stop_service(&mut self, upstream: &str, index: usize) {
        let service = self.replica(upstream, index);
        service.stop.cancel();
        let task = service.task.take().expect("the replica is running");
        let outcome = tokio::time::timeout(Duration::from_secs(10), task).await;
        assert!(
            matches!(outcome, Ok(Ok(Ok(())))),
            "{upstream} did not stop cleanly: {outcome:?}"
        );
    }

    /// Kills the webhook dispatcher abruptly, as a crash would: its runtime
    /// is dropped with every task mid-flight (requests, transactions,
    /// unacknowledged messages).
    pub fn kill_dispatcher(&mut self) {
        let service = self.replica("webhooks", 0);
        service.task = None;
        if let Some(runtime) = service.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Starts replica `index` of `upstream` again on its old address.
    pub async fn restart_service(&mut self, upstream: &str, index: usize) {
        let addr = self.replica(upstream, index).addr.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(&addr).await {
                Ok(listener) => break listener,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebinding {addr}: {e}"),
            }
        };
        let position = self
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.upstream == upstream)
            .nth(index)
            .map(|(i, _)| i)
            .expect("replica exists");
        let upstream = self.services.remove(position).upstream;
        self.spawn_service(upstream, listener, addr);
    }

    /// The address replica `index` of `upstream` listens on.
    pub fn replica_addr(&mut self, upstream: &str, index: usize) -> String {
        self.replica(upstream, index).addr.clone()
    }

    /// Waits until the replica at `addr` reports SERVING, then for the
    /// gateway's next health check to put it in rotation.
    pub async fn wait_until_in_rotation(&self, addr: &str) {
        use gateway::upstreams::replicas;
        let endpoint = tonic::transport::Endpoint::from_shared(self.grpc_url(addr)).expect("a replica URL");
        let endpoint = self.tls.endpoint(endpoint).expect("the stack's TLS");
        let channel = endpoint.connect_lazy();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while replicas::health(channel.clone()).await != replicas::Health::Serving {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replica at {addr} did not report SERVING within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A check round can run long by a silent replica's timeout.
        tokio::time::sleep(replicas::CHECK_EVERY * 2).await;
    }

    fn replica(&mut self, upstream: &str, index: usize) -> &mut Service {
        self.services
            .iter_mut()
            .filter(|s| s.upstream == upstream)
            .nth(index)
            .unwrap_or_else(|| panic!("no replica {index} of {upstream}"))
    }

    /// The first gateway's admin listener (`/readyz`, `/metrics`).
    pub fn gateway_admin(&self) -> Client {
        Client::anonymous(&self.gateway_admin_urls[0])
    }

    /// The first gateway's Prometheus scrape.
    pub async fn gateway_metrics(&self) -> String {
        Client::anonymous(&self.gateway_admin_urls[0])
            .get("/metrics")
            .await
            .text
    }

    /// The stack's own PostgreSQL database, for tests that set up a state
    /// the API cannot produce (a worker that died mid-job, say).
    pub fn database_url(&self) -> &str {
        &self.infra().database_url
    }

    /// A client for a brand-new workspace (tenant isolation tests).
    pub async fn new_workspace(&self, name: &str) -> Client {
        self.create_workspace(name).await.0
    }

    /// A brand-new workspace: a client holding its first key, and its id.
    pub async fn create_workspace(&self, name: &str) -> (Client, String) {
        let reply = self
            .admin()
            .post("/admin/v1/workspaces", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(reply.status, 201, "creating a workspace: {}", reply.text);
        let key = reply.json["api_key"]["key"].as_str().expect("the new key is returned");
        let id = reply.json["workspace"]["id"]
            .as_str()
            .expect("the workspace id is returned");
        (Client::with_key(&self.base_url, key), id.to_owned())
    }

    /// The first API key of a brand-new workspace (not
    /// [`TestStack::client`]'s: see [`TestStack::client_key_of_workspace`]).
    pub async fn client_key(&self) -> String {
        let reply = self
            .admin()
            .post("/admin/v1/workspaces", serde_json::json!({"name": "keyed"}))
            .await;
        reply.json["api_key"]["key"]
            .as_str()
            .expect("the new key is returned")
            .to_owned()
    }

    /// A fresh key of [`TestStack::client`]'s own workspace, with every scope.
    pub async fn client_key_of_workspace(&self) -> String {
        let reply = self
            .client
            .post("/api/v1/api-keys", serde_json::json!({"name": "extra"}))
            .await;
        reply.json["api_key"]["key"]
            .as_str()
            .expect("the new key is returned")
            .to_owned()
    }

    /// A client holding the platform admin token.
    pub fn admin(&self) -> Client {
        Client::with_key(&self.base_url, ADMIN_TOKEN)
    }

    /// Waits for `/readyz` (or, with a dead upstream on purpose, for the
    /// gateway to answer at all), failing with the reason if a service died.
    /// Until /readyz is 200, or, with `dead` upstreams, until every other
    /// upstream reports SERVING.
    async fn wait_until_ready(&mut self, dead: &[&str]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let anonymous = Client::anonymous(&self.gateway_admin_urls[0]);
        loop {
            for service in &mut self.services {
                if let Some(task) = service.task.as_mut().filter(|t| t.is_finished()) {
                    let outcome = task.await;
                    panic!("{} stopped during start-up: {outcome:?}", service.upstream);
                }
            }
            for gateway in &mut self.gateways {
                if gateway.is_finished() {
                    panic!("a gateway stopped during start-up: {:?}", gateway.await);
                }
            }
            if let Some(reply) = anonymous.try_get("/readyz").await {
                let live_serving = UPSTREAMS
                    .iter()
                    .filter(|u| !dead.contains(u))
                    .all(|u| reply.json["upstreams"][u] == "SERVING");
                if reply.status == 200 {
                    return;
                }
                // A replica joins the rotation only once it answers SERVING,
                // so a dead one is never sent a call: nothing to wait out.
                if !dead.is_empty() && live_serving {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stack was not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every service (as SIGTERM would) and checks each one drained
    /// and returned cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        // Services stay alive until their tasks finish: the dispatcher's
        // runtime must run while it drains.
        let mut services = std::mem::take(&mut self.services);
        let tasks: Vec<_> = services
            .iter_mut()
            .filter_map(|s| s.task.take().map(|t| (s.upstream, t)))
            .chain(std::mem::take(&mut self.gateways).into_iter().map(|t| ("gateway", t)))
            .collect();
        for (name, task) in tasks {
            let outcome = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap_or_else(|_| panic!("{name} did not shut down within 10 s"));
            match outcome {
                Ok(Ok(())) => {}
                other => panic!("{name} did not shut down cleanly: {other:?}"),
            }
        }
        drop(services);
        if let Some(infra) = self.infra.take() {
            infra.remove().await;
        }
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_file(&self.grants_file);
        // A test that panicked never reached stop(): clean up from a thread
        // of our own, since this runtime may be shutting down.
        if let Some(infra) = self.infra.take() {
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(infra.remove());
                }
            })
            .join();
        }
    }
}

/// Tests' receivers and model servers run on loopback.
fn loopback() -> TargetGuard {
    TargetGuard::from_list("127.0.0.0/8").expect("a CIDR")
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a loopback port");
    let addr = listener
        .local_addr()
        .expect("bound listener has an address")
        .to_string();
    (listener, addr)
}
