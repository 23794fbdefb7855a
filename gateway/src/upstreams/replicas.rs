//! The replicas behind one upstream. A URL names one replica by address,
//! or by DNS name every address the name resolves to (a headless Service
//! gives one per ready pod), resolved again every [`RESOLVE_EVERY`]. An
//! address joins the balancer only once its gRPC health check says
//! SERVING, so a replica that is down from the start is never sent a
//! call. It leaves at the first check that finds it draining (NOT_SERVING),
//! after [`FAILURES_TO_REMOVE`] checks it does not answer, or when its name
//! stops resolving to it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::future::{BoxFuture, join_all};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, channel::Change};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

pub const CHECK_EVERY: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_millis(800);
/// How often names are resolved again: pods come and go between two
/// resolutions, and the health checks cover the gap for those that go.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);
/// Consecutive failed checks that take a replica out of rotation: one slow
/// answer on a busy machine is not an outage.
pub const FAILURES_TO_REMOVE: u32 = 2;
/// The longest a failed replica stays in rotation.
pub const REMOVAL_DELAY: Duration = Duration::from_secs(CHECK_EVERY.as_secs() * FAILURES_TO_REMOVE as u64);

/// Where the replicas of an upstream are found: one configured URL.
#[derive(Debug, Clone)]
pub struct Source {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Source {
    /// The parts of `url` (`http://host:port`, `https://…`); the port
    /// defaults to the scheme's.
    pub fn parse(url: &str) -> Option<Self> {
        let uri: http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_owned();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_owned();
        Some(Self {
            port: uri.port_u16().unwrap_or(default_port),
            scheme,
            host,
        })
    }

    async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect())
    }
}

/// The addresses a source stands for just now.
pub type Resolver = Arc<dyn Fn(&Source) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// How replicas are found and checked.
#[derive(Clone)]
pub struct Discovery {
    pub resolve: Resolver,
    pub resolve_every: Duration,
    pub check_every: Duration,
}

impl Discovery {
    /// The system resolver, every [`RESOLVE_EVERY`]; checks every
    /// [`CHECK_EVERY`].
    pub fn dns() -> Self {
        Self {
            resolve: Arc::new(|source: &Source| {
                let source = source.clone();
                Box::pin(async move { source.resolve().await })
            }),
            resolve_every: RESOLVE_EVERY,
            check_every: CHECK_EVERY,
        }
    }
}

/// Builds the endpoint for one address of a source: the connection goes to
/// the address, TLS verifies the source's host name.
pub type Connector = Arc<dyn Fn(&Source, SocketAddr) -> Option<Endpoint> + Send + Sync>;

/// A balanced channel over the healthy replicas.
pub struct Replicas {
    pub channel: Channel,
    healthy: Arc<AtomicUsize>,
}

impl Replicas {
    /// Resolves and checks the sources at once, then keeps doing so until
    /// `shutdown`.
    pub fn start(
        sources: Vec<Source>,
        connector: Connector,
        discovery: Discovery,
        shutdown: CancellationToken,
    ) -> Self {
        let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
        let healthy = Arc::new(AtomicUsize::new(0));
        let rotation = Rotation {
            sources,
            connector,
            discovery,
            changes,
            replicas: HashMap::new(),
            healthy: Arc::clone(&healthy),
        };
        tokio::spawn(rotation.run(shutdown));
        Self { channel, healthy }
    }

    /// Replicas in rotation just now.
    pub fn healthy(&self) -> usize {
        self.healthy.load(Ordering::Relaxed)
    }
}

struct Replica {
    endpoint: Endpoint,
    /// A channel of its own, so checks reach this replica and no other.
    probe: Channel,
    /// Which source resolved to it.
    source: usize,
    in_rotation: bool,
    failures: u32,
}

/// The task that keeps the balancer's set of replicas true.
struct Rotation {
    sources: Vec<Source>,
    connector: Connector,
    discovery: Discovery,
    changes: Sender<Change<SocketAddr, Endpoint>>,
    replicas: HashMap<SocketAddr, Replica>,
    healthy: Arc<AtomicUsize>,
}

impl Rotation {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.discovery.check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resolved_at: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if resolved_at.is_none_or(|at| at.elapsed() >= self.discovery.resolve_every) {
                self.resolve().await;
                resolved_at = Some(Instant::now());
            }
            self.check().await;
        }
    }

    /// Adds the addresses the sources resolve to now and drops those they
    /// no longer do. A source that fails to resolve keeps its addresses: a
    /// DNS hiccup is not an outage.
    async fn resolve(&mut self) {
        let lookups = join_all(self.sources.iter().map(|s| (self.discovery.resolve)(s))).await;
        let mut current: HashMap<SocketAddr, usize> = HashMap::new();
        for (index, lookup) in lookups.into_iter().enumerate() {
            match lookup {
                Ok(addresses) => current.extend(addresses.into_iter().map(|a| (a, index))),
                Err(error) => {
                    let host = &self.sources[index].host;
                    tracing::warn!(%host, %error, "cannot resolve an upstream; keeping its addresses");
                    let kept = self.replicas.iter().filter(|(_, r)| r.source == index);
                    current.extend(kept.map(|(a, _)| (*a, index)));
                }
            }
        }
        let gone: Vec<SocketAddr> = self
            .replicas
            .keys()
            .filter(|a| !current.contains_key(a))
            .copied()
            .collect();
        for address in gone {
            if self.replicas.remove(&address).is_some_and(|r| r.in_rotation) {
                let _ = self.changes.send(Change::Remove(address)).await;
            }
            tracing::info!(%address, "replica no longer resolved");
        }
        for (address, index) in current {
            if self.replicas.contains_key(&address) {
                continue;
            }
            let Some(endpoint) = (self.connector)(&self.sources[index], address) else {
                continue;
            };
            let replica = Replica {
                probe: endpoint.connect_lazy(),
                endpoint,
                source: index,
                in_rotation: false,
                failures: 0,
            };
            self.replicas.insert(address, replica);
        }
    }

    /// Checks every replica at once and moves those whose answer changed
    /// their standing in or out of the balancer.
    async fn check(&mut self) {
        let checks = self.replicas.values().map(|r| health(r.probe.clone()));
        let answers = join_all(checks).await;
        let mut moves = Vec::new();
        for ((address, replica), answer) in self.replicas.iter_mut().zip(answers) {
            replica.failures = if answer == Health::Silent {
                replica.failures + 1
            } else {
                0
            };
            let serving = match answer {
                Health::Serving => true,
                // A draining replica says so: out at once, while it still
                // finishes what it was sent.
                Health::NotServing => false,
                Health::Silent => replica.in_rotation && replica.failures < FAILURES_TO_REMOVE,
            };
            if serving != replica.in_rotation {
                replica.in_rotation = serving;
                moves.push(match serving {
                    true => Change::Insert(*address, replica.endpoint.clone()),
                    false => Change::Remove(*address),
                });
                tracing::info!(replica = %address, serving, "replica rotation changed");
            }
        }
        for change in moves {
            let _ = self.changes.send(change).await;
        }
        let in_rotation = self.replicas.values().filter(|r| r.in_rotation).count();
        self.healthy.store(in_rotation, Ordering::Relaxed);
    }
}

/// What a replica's gRPC health check said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Serving,
    /// It answered, and is not serving: starting, or draining.
    NotServing,
    /// No answer in time, or none at all.
    Silent,
}

/// The replica's gRPC health, for the whole server (`""`).
pub async fn health(channel: Channel) -> Health {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => Health::Serving,
        Ok(Ok(_)) => Health::NotServing,
        _ => Health::Silent,
    }
}

/// Whether the replica's gRPC health reports SERVING.
pub async fn is_serving(channel: Channel) -> bool {
    health(channel).await == Health::Serving
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_host_and_port() {
        let source = Source::parse("https://chatbot-service.platform.svc:50051").unwrap();
        assert_eq!(
            (source.scheme.as_str(), source.host.as_str(), source.port),
            ("https", "chatbot-service.platform.svc", 50051)
        );
        let v6 = Source::parse("http://[::1]:7").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 7));
        assert_eq!(Source::parse("http://plain").unwrap().port, 80);
        assert!(Source::parse("ftp://x:1").is_none());
        assert!(Source::parse("not a url").is_none());
    }

    /// A gRPC server answering health checks only, and its reporter.
    async fn health_server(stop: &CancellationToken) -> (SocketAddr, tonic_health::server::HealthReporter) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let stop = stop.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move { stop.cancelled().await }),
        );
        (addr, reporter)
    }

    async fn until(what: &str, replicas: &Replicas, healthy: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while replicas.healthy() != healthy {
            assert!(
                Instant::now() < deadline,
                "{what}: {} in rotation, not {healthy}",
                replicas.healthy()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rotation_follows_what_a_name_resolves_to_and_what_each_address_answers() {
        let stop = CancellationToken::new();
        let (a, _a_health) = health_server(&stop).await;
        let (b, b_health) = health_server(&stop).await;
        let nothing_there: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let resolved = Arc::new(std::sync::Mutex::new(vec![a, nothing_there]));
        let answer = resolved.clone();
        let discovery = Discovery {
            resolve: Arc::new(move |_: &Source| {
                let addresses = answer.lock().unwrap().clone();
                Box::pin(async move { Ok(addresses) })
            }),
            resolve_every: Duration::from_millis(100),
            check_every: Duration::from_millis(100),
        };
        let connector: Connector =
            Arc::new(|_: &Source, address| Endpoint::from_shared(format!("http://{address}")).ok());
        let source = Source::parse("http://chatbot-service.platform.svc:50051").unwrap();
        let replicas = Replicas::start(vec![source], connector, discovery, stop.clone());

        until(
            "the address that answers joins; the one that does not never does",
            &replicas,
            1,
        )
        .await;
        *resolved.lock().unwrap() = vec![a, b];
        until("a new pod behind the name joins", &replicas, 2).await;
        b_health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        until("a draining replica leaves at its first NOT_SERVING", &replicas, 1).await;
        b_health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        until("and comes back once it serves again", &replicas, 2).await;
        *resolved.lock().unwrap() = vec![b];
        until("a pod gone from the name leaves", &replicas, 1).await;
        stop.cancel();
    }

    #[tokio::test]
    async fn a_name_resolves_to_every_address_it_has() {
        let source = Source::parse("http://localhost:50051").unwrap();
        let addresses = source.resolve().await.unwrap();
        assert!(
            addresses.iter().any(|a| a.ip().is_loopback() && a.port() == 50051),
            "{addresses:?}"
        );
    }
}
