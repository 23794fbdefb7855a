//! Binding a service's listener, with an error that names the setting.

use std::sync::Arc;

use tokio::net::TcpListener;

/// Binds `addr`, taken from the variable `var`.
pub async fn bind(var: &str, addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {var}={addr}: {e}")))
}

/// Where a secondary listener (the admin endpoints) listens: an address
/// from configuration, or a socket its caller bound already. Tests bind
/// port 0 and hand the socket over, so no other process can take the port
/// between choosing it and listening on it.
#[derive(Debug, Clone)]
pub enum Address {
    Bind(String),
    Bound(Arc<std::net::TcpListener>),
}

impl Address {
    /// Binds a loopback port now and holds it.
    pub fn loopback() -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        Ok(Self::Bound(Arc::new(listener)))
    }

    /// The address this listens on, as far as it is known before listening.
    pub fn describe(&self) -> String {
        match self {
            Self::Bind(addr) => addr.clone(),
            Self::Bound(listener) => listener
                .local_addr()
                .map_or_else(|_| "a bound socket".into(), |a| a.to_string()),
        }
    }

    /// The listener, named by `var` in errors.
    pub async fn listen(&self, var: &str) -> std::io::Result<TcpListener> {
        match self {
            Self::Bind(addr) => bind(var, addr).await,
            Self::Bound(listener) => {
                let own = listener.try_clone()?;
                own.set_nonblocking(true)?;
                TcpListener::from_std(own)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bound_socket_is_served_where_it_was_bound() {
        let address = Address::loopback().unwrap();
        let listener = address.listen("TEST_ADDR").await.unwrap();
        assert_eq!(listener.local_addr().unwrap().to_string(), address.describe());
        let connected = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await;
        assert!(connected.is_ok(), "the handed-over socket accepts connections");
    }

    #[tokio::test]
    async fn a_taken_address_names_its_setting() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = Address::Bind(held.local_addr().unwrap().to_string());
        let error = taken.listen("X_ADMIN_ADDR").await.unwrap_err();
        assert!(error.to_string().contains("X_ADMIN_ADDR="), "{error}");
    }
}
