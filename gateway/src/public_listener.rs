//! The public listener: hyper's HTTP/1 and HTTP/2 server, as `axum::serve`
//! runs it, plus what a port open to the internet needs and axum does not
//! set: a client must send a request's headers within
//! `GATEWAY_HEADER_READ_TIMEOUT_MS` of opening the connection (or of
//! starting them on a kept-alive one), so a slowloris-style client that
//! trickles them is cut off instead of holding a connection for ever.
//! Bodies have their own limit (the request body timeout layer).

use std::{net::SocketAddr, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Longest an in-flight request may keep shutdown waiting.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown`, then lets requests in
/// flight finish (up to [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, usually: wait for some to free.
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Answers go out as soon as they are written: with Nagle's
        // algorithm a reply written in two pieces waits for the client's
        // delayed ACK.
        let _ = tcp.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |request: http::Request<Incoming>| with_peer(request, remote));
        let (builder, watcher, stop) = (builder.clone(), graceful.watcher(), shutdown.clone());
        tokio::spawn(async move {
            // hyper's timer starts once it knows the HTTP version, which
            // takes a first byte: a client that sends none is cut off here,
            // and at shutdown at once (clients' pools open connections they
            // may never use, which would otherwise hold the drain up).
            let mut first = [0u8; 1];
            let first_byte = tokio::select! {
                _ = stop.cancelled() => return,
                peeked = tokio::time::timeout(header_read_timeout, tcp.peek(&mut first)) => peeked,
            };
            if !matches!(first_byte, Ok(Ok(1))) {
                return;
            }
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%error, "connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after {DRAIN:?}; closing their connections");
    }
    Ok(())
}

/// What `into_make_service_with_connect_info` gives handlers: the peer's
/// address, for per-IP rate limits.
fn with_peer(request: http::Request<Incoming>, remote: SocketAddr) -> http::Request<Body> {
    let mut request = request.map(Body::new);
    request.extensions_mut().insert(ConnectInfo(remote));
    request
}
