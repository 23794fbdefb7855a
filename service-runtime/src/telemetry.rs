//! Structured logging set-up shared by every binary.

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber once. `RUST_LOG` filters (default `info`),
/// `LOG_FORMAT=json` switches to one JSON object per line for log shippers.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    let result = if json {
        fmt().with_env_filter(filter).json().try_init()
    } else {
        fmt().with_env_filter(filter).try_init()
    };
    if result.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
}
