//! The gRPC services behind the gateway. Each upstream is a balanced channel
//! over its healthy replicas ([`replicas`]) behind a circuit breaker
//! ([`outbound_http::breaker`]); every call has the upstream's deadline, and idempotent
//! calls that find a replica unavailable are retried once, within a retry
//! budget so retries never multiply load on a struggling service.

mod config;
pub mod replicas;

use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, metadata::MetadataMap, transport::Endpoint};
use tower::retry::budget::{Budget, TpsBudget};

use outbound_http::breaker::{Breaker, BreakerSettings};
use service_runtime::{
    calls::{CallKeys, CallKeysError, Party, Signed},
    error::is_dependency_failure,
    exposition::LatencyHistogram,
    grpc_client::CallChannel,
    grpc_tls::GrpcTls,
    telemetry::{propagation, spans},
};
use tracing::Instrument;

use crate::transcode::codec::DynamicCodec;
pub use config::{DEFAULT_ROUTES, UpstreamConfig, parse_routes};
use replicas::{Connector, Discovery, Replicas, Source};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {name}: invalid URL {url:?}")]
    Url { name: String, url: String },
    #[error("{0}")]
    Tls(String),
    #[error("upstream {0} is none of the platform's services")]
    Unknown(String),
    #[error(transparent)]
    Keys(#[from] CallKeysError),
}

/// Why a call produced no reply.
#[derive(Debug)]
pub enum CallError {
    /// The breaker is open; try again after this long.
    CircuitOpen(Duration),
    Status(Status),
}

pub struct Upstream {
    pub name: String,
    replicas: Replicas,
    /// The balanced channel, every call signed for this upstream.
    calls: CallChannel,
    breaker: Breaker,
    budget: TpsBudget,
    timeout: Duration,
    /// Every call's time, retry included (to the stream's opening for a
    /// streamed call).
    pub latency: LatencyHistogram,
}

pub struct Upstreams {
    list: Vec<Upstream>,
    /// (path prefix, index into `list`), longest prefix first.
    prefixes: Vec<(String, usize)>,
}

impl Upstreams {
    pub fn new(
        configs: &[UpstreamConfig],
        routes: &[(String, String)],
        default_timeout: Duration,
        breaker: BreakerSettings,
        keys: &CallKeys,
        tls: &GrpcTls,
        shutdown: &CancellationToken,
    ) -> Result<Self, UpstreamError> {
        let list = configs
            .iter()
            .map(|config| {
                let sources = sources(config, tls)?;
                let party: Party = config
                    .name
                    .parse()
                    .map_err(|()| UpstreamError::Unknown(config.name.clone()))?;
                let replicas = Replicas::start(sources, connector(tls.clone()), Discovery::dns(), shutdown.clone());
                Ok(Upstream {
                    name: config.name.clone(),
                    calls: Signed::new(replicas.channel.clone(), keys, party)?,
                    replicas,
                    breaker: Breaker::new(breaker),
                    // Retries may add at most 20% on top of calls, with a
                    // floor of 10 a second so a quiet upstream can retry too.
                    budget: TpsBudget::new(Duration::from_secs(10), 10, 0.2),
                    timeout: config.timeout.unwrap_or(default_timeout),
                    latency: LatencyHistogram::default(),
                })
            })
            .collect::<Result<Vec<_>, UpstreamError>>()?;
        let mut prefixes: Vec<(String, usize)> = routes
            .iter()
            .filter_map(|(prefix, name)| list.iter().position(|u| &u.name == name).map(|i| (prefix.clone(), i)))
            .collect();
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(Self { list, prefixes })
    }

    /// The upstream serving `path`, by longest segment-aligned prefix.
    pub fn for_path(&self, path: &str) -> Option<usize> {
        self.prefixes
            .iter()
            .find(|(prefix, _)| {
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map(|(_, i)| *i)
    }

    /// The signed, balanced channel of the upstream called `name`, for the
    /// gateway's own typed calls.
    pub fn channel_named(&self, name: &str) -> Option<CallChannel> {
        self.list.iter().find(|u| u.name == name).map(|u| u.calls.clone())
    }

    pub fn all(&self) -> &[Upstream] {
        &self.list
    }

    /// One unary call through the breaker, retried once when `idempotent`
    /// and the replica was unavailable.
    pub async fn call(
        &self,
        upstream: usize,
        path: &PathAndQuery,
        message: DynamicMessage,
        metadata: MetadataMap,
        response_type: &MessageDescriptor,
        idempotent: bool,
    ) -> Result<DynamicMessage, CallError> {
        let upstream = &self.list[upstream];
        let permit = upstream.breaker.acquire().map_err(CallError::CircuitOpen)?;
        let (span, metadata) = client_span(upstream, path, metadata);
        let started = Instant::now();
        upstream.budget.deposit();
        // Only a call that may be retried needs a copy kept back.
        let retry_copy = idempotent.then(|| (message.clone(), metadata.clone()));
        let attempts = async {
            let outcome = upstream.attempt(path, message, metadata, response_type).await;
            match retry_copy {
                Some((message, metadata))
                    if matches!(&outcome, Err(status) if status.code() == Code::Unavailable && !is_dependency_failure(status))
                        && upstream.budget.withdraw() =>
                {
                    upstream.attempt(path, message, metadata, response_type).await
                }
                _ => outcome,
            }
        };
        let outcome = attempts.instrument(span.clone()).await;
        upstream.breaker.record(permit, upstream_failed(&outcome));
        upstream.latency.observe(started.elapsed());
        record_status(&span, &outcome);
        outcome.map_err(CallError::Status)
    }

    /// Opens a server-streaming call through the breaker. The breaker
    /// judges the opening only; the stream then runs under `deadline`.
    pub async fn open_stream(
        &self,
        upstream: usize,
        path: &PathAndQuery,
        message: DynamicMessage,
        metadata: MetadataMap,
        response_type: &MessageDescriptor,
        deadline: Duration,
    ) -> Result<tonic::Streaming<DynamicMessage>, CallError> {
        let upstream = &self.list[upstream];
        let permit = upstream.breaker.acquire().map_err(CallError::CircuitOpen)?;
        let (span, metadata) = client_span(upstream, path, metadata);
        let started = Instant::now();
        let outcome = upstream
            .open(path, message, metadata, response_type, deadline)
            .instrument(span.clone())
            .await;
        upstream.breaker.record(permit, upstream_failed(&outcome));
        upstream.latency.observe(started.elapsed());
        record_status(&span, &outcome);
        outcome.map_err(CallError::Status)
    }

    /// Whether the upstream has a healthy replica that reports SERVING.
    pub async fn is_serving(&self, upstream: usize) -> bool {
        let upstream = &self.list[upstream];
        upstream.replicas.healthy() > 0 && replicas::is_serving(upstream.replicas.channel.clone()).await
    }
}

/// Where `config`'s replicas are found. Each URL must parse, and an
/// `https://` one needs TLS configured, or start-up stops here.
fn sources(config: &UpstreamConfig, tls: &GrpcTls) -> Result<Vec<Source>, UpstreamError> {
    config
        .urls
        .iter()
        .map(|url| {
            let invalid = || UpstreamError::Url {
                name: config.name.clone(),
                url: url.clone(),
            };
            let source = Source::parse(url).ok_or_else(invalid)?;
            let endpoint = Endpoint::from_shared(url.clone()).map_err(|_| invalid())?;
            tls.endpoint(endpoint).map_err(|e| UpstreamError::Tls(e.to_string()))?;
            Ok(source)
        })
        .collect()
}

/// Endpoints that connect to one resolved address and, over TLS, verify
/// the certificate against the host name the URL gave.
fn connector(tls: GrpcTls) -> Connector {
    std::sync::Arc::new(move |source: &Source, address| {
        let endpoint = Endpoint::from_shared(format!("{}://{address}", source.scheme)).ok()?;
        match tls.endpoint_for(endpoint, &source.host) {
            Ok(endpoint) => Some(endpoint.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true)),
            Err(error) => {
                tracing::warn!(%address, %error, "cannot make an endpoint for a replica");
                None
            }
        }
    })
}

/// The RPC client span of a call to `upstream`, and the call's metadata
/// carrying it as the parent of the service's span.
fn client_span(upstream: &Upstream, path: &PathAndQuery, mut metadata: MetadataMap) -> (tracing::Span, MetadataMap) {
    let span = spans::rpc("client", path.path());
    if !span.is_none() {
        span.record("server.address", upstream.name.as_str());
        propagation::inject_metadata(&span, &mut metadata);
    }
    (span, metadata)
}

fn record_status<T>(span: &tracing::Span, outcome: &Result<T, Status>) {
    if !span.is_none() {
        let code = outcome.as_ref().err().map_or(Code::Ok, Status::code);
        spans::record_grpc_status(span, code as i32, false);
    }
}

/// Whether a call's outcome says the upstream itself is failing: it could
/// not be reached or did not answer in time. An upstream reporting that a
/// system behind it is out of reach is working.
fn upstream_failed<T>(outcome: &Result<T, Status>) -> bool {
    match outcome {
        Err(status) if is_dependency_failure(status) => false,
        Err(status) => matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown
        ),
        Ok(_) => false,
    }
}

impl Upstream {
    /// Whether the breaker refuses calls just now.
    pub fn circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    async fn open(
        &self,
        path: &PathAndQuery,
        message: DynamicMessage,
        metadata: MetadataMap,
        response_type: &MessageDescriptor,
        deadline: Duration,
    ) -> Result<tonic::Streaming<DynamicMessage>, Status> {
        let (mut client, request) = self.ready_client(message, metadata, deadline)?;
        let open = async {
            ready(&mut client).await?;
            client
                .server_streaming(request, path.clone(), DynamicCodec::new(response_type.clone()))
                .await
        };
        match tokio::time::timeout(self.timeout, open).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("upstream did not answer in time")),
        }
    }

    /// A client on the balanced channel and the request with its deadline,
    /// unless no replica is healthy.
    fn ready_client(
        &self,
        message: DynamicMessage,
        metadata: MetadataMap,
        deadline: Duration,
    ) -> Result<(tonic::client::Grpc<CallChannel>, tonic::Request<DynamicMessage>), Status> {
        if self.replicas.healthy() == 0 {
            return Err(Status::unavailable("no healthy replica"));
        }
        let mut request = tonic::Request::from_parts(metadata, Default::default(), message);
        request.set_timeout(deadline);
        Ok((tonic::client::Grpc::new(self.calls.clone()), request))
    }

    /// One attempt with the upstream's deadline, also sent as `grpc-timeout`
    /// so the service can stop work nobody waits for.
    async fn attempt(
        &self,
        path: &PathAndQuery,
        message: DynamicMessage,
        metadata: MetadataMap,
        response_type: &MessageDescriptor,
    ) -> Result<DynamicMessage, Status> {
        let (mut client, request) = self.ready_client(message, metadata, self.timeout)?;
        let call = async {
            ready(&mut client).await?;
            client
                .unary(request, path.clone(), DynamicCodec::new(response_type.clone()))
                .await
        };
        let started = std::time::Instant::now();
        match tokio::time::timeout(self.timeout, call).await {
            // A service enforcing the grpc-timeout we sent answers CANCELLED
            // ("Timeout expired"); to the client that is our deadline passing.
            Ok(Err(status)) if status.code() == Code::Cancelled && started.elapsed() >= self.timeout.mul_f32(0.9) => {
                Err(Status::deadline_exceeded("upstream did not answer in time"))
            }
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("upstream did not answer in time")),
        }
    }
}

async fn ready(client: &mut tonic::client::Grpc<CallChannel>) -> Result<(), Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(format!("upstream not ready: {e}")))
}
