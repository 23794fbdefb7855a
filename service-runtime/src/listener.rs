//! Binding a service's listener, with an error that names the setting.

use tokio::net::TcpListener;

/// Binds `addr`, taken from the variable `var`.
pub async fn bind(var: &str, addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {var}={addr}: {e}")))
}
