//! The process's one TLS stack: rustls with the ring provider.

/// Installs ring as rustls's process-wide provider. Every HTTPS client
/// (reqwest) needs it before it is built; calling it again is harmless.
pub fn install() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
