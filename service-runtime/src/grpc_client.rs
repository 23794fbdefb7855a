//! Calling another service of the platform over gRPC.

use std::time::Duration;

use tonic::{codegen::http::uri::InvalidUri, transport::Channel};

/// A channel to `url` (`http://host:port`) that connects on first use, so
/// services start in any order; each call and each connection attempt
/// gives up after `timeout`.
pub fn lazy_channel(url: &str, timeout: Duration) -> Result<Channel, InvalidUri> {
    Ok(Channel::from_shared(url.to_owned())?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_lazy())
}
