//! Serving a service's gRPC router on an already-bound listener, with the
//! standard health and reflection services alongside, every other call
//! admitted only with a valid call token, until shutdown.

use std::{convert::Infallible, future::Future, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    body::Body,
    codegen::{Service, http},
    server::NamedService,
    transport::{Server, server::Router},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::layer::util::{Identity, Stack};

use crate::{
    calls::{CallCheckLayer, CallKeys},
    grpc_metrics::{GrpcMetrics, GrpcMetricsLayer},
    grpc_tls::GrpcTls,
};

/// A service's router: calls counted, then checked.
pub type BaseRouter = Router<Stack<CallCheckLayer, Stack<GrpcMetricsLayer, Identity>>>;

/// How a service serves gRPC: who may call it, what is counted, whether
/// reflection is on.
#[derive(Clone)]
pub struct GrpcServing {
    pub metrics: Arc<GrpcMetrics>,
    pub keys: CallKeys,
    pub reflection: bool,
    /// TLS (mutual) when configured.
    pub tls: GrpcTls,
    /// How long a stopping service goes on serving while it reports
    /// NOT_SERVING, so balancers take it out before it stops accepting.
    pub drain_delay: std::time::Duration,
}

/// A router pre-loaded with gRPC health and, when `reflection`, server
/// reflection (over the shared descriptor set), every call counted in
/// `metrics` and checked against `keys`, plus the health reporter to mark
/// services SERVING.
pub fn base_router(serving: &GrpcServing) -> Result<(BaseRouter, HealthReporter), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = serving.reflection.then(|| {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the compiled descriptor set is valid")
    });
    let mut server = Server::builder();
    if let Some(tls) = serving.tls.server() {
        server = server.tls_config(tls)?;
    }
    let router = server
        .layer(GrpcMetricsLayer(serving.metrics.clone()))
        .layer(CallCheckLayer::new(serving.keys.clone()))
        .add_service(health)
        .add_optional_service(reflection);
    Ok((router, reporter))
}

/// Marks `S` SERVING in the health service.
pub async fn mark_serving<S: NamedService>(reporter: &HealthReporter) {
    reporter.set_serving::<S>().await;
}

/// Serves `service`, the one gRPC service of its binary, beside health
/// (and reflection, when on), on `listener` until `shutdown`; SERVING once
/// `ready` resolves.
pub async fn serve_one<S>(
    service: S,
    listener: TcpListener,
    serving: &GrpcServing,
    ready: impl Future<Output = ()> + Send + 'static,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (router, health) = base_router(serving)?;
    mark_serving::<S>(&health).await;
    serve(router.add_service(service), health, listener, serving, ready, shutdown).await
}

/// Runs `router` on `listener` until `shutdown` is cancelled, then lets
/// in-flight calls finish. The server's health (`""`, what probes and the
/// gateway ask) is NOT_SERVING until `ready` resolves, and again from the
/// moment `shutdown` comes: the server goes on serving for the drain delay
/// while balancers take it out, then stops accepting and drains.
pub async fn serve(
    router: BaseRouter,
    reporter: HealthReporter,
    listener: TcpListener,
    serving: &GrpcServing,
    ready: impl Future<Output = ()> + Send + 'static,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    reporter.set_service_status("", ServingStatus::NotServing).await;
    spawn_readiness(reporter.clone(), ready, shutdown.clone());
    let delay = serving.drain_delay;
    let drain = async move {
        shutdown.cancelled().await;
        reporter.set_service_status("", ServingStatus::NotServing).await;
        if !delay.is_zero() {
            tracing::info!(?delay, "reporting NOT_SERVING before draining");
            tokio::time::sleep(delay).await;
        }
    };
    // No Nagle: a reply written in several frames must not wait for the
    // peer's delayed ACK.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    router.serve_with_incoming_shutdown(incoming, drain).await
}

/// Marks the server SERVING once `ready` resolves, unless it is stopping.
fn spawn_readiness(
    reporter: HealthReporter,
    ready: impl Future<Output = ()> + Send + 'static,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            () = ready => {}
            () = stop.cancelled() => return,
        }
        if !stop.is_cancelled() {
            reporter.set_service_status("", ServingStatus::Serving).await;
            tracing::info!("ready: reporting SERVING");
        }
    });
}
