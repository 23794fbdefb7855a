//! Serving a fake of someone else's server (a webhook receiver, a model
//! server, Shopify) on a loopback port of its own.

use std::net::SocketAddr;

use axum::Router;
use tokio::{net::TcpListener, task::JoinHandle};

/// Serves `app` on `127.0.0.1:0` until the task is aborted; `what` names
/// the fake when no port can be had.
pub async fn serve(app: Router, what: &str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("a port for {what}: {e}"));
    serve_on(listener, app).await
}

/// Serves `app` on a listener already bound (a fake that must know its
/// own address first).
pub async fn serve_on(listener: TcpListener, app: Router) -> (SocketAddr, JoinHandle<()>) {
    let addr = listener.local_addr().expect("a bound address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}
