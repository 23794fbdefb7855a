//! Calling another service of the platform over gRPC: a channel that signs
//! every call for its callee, and requests acting for a workspace.

use std::time::Duration;

use tonic::{
    Request, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::{
    calls::{CallKeys, CallKeysError, Party, Signed},
    config::ServiceSettings,
    grpc_tls::GrpcTls,
    principal,
};

/// A channel whose calls carry a token the callee can check.
pub type CallChannel = Signed<Channel>;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("invalid service URL {0:?}")]
    Url(String),
    #[error("{0}")]
    Tls(String),
    #[error(transparent)]
    Keys(#[from] CallKeysError),
}

/// A channel to `url` (`http://host:port`, or `https://` with `tls`) that
/// connects on first use, so services start in any order; each call and
/// each connection attempt gives up after `timeout`.
pub fn lazy_channel(url: &str, timeout: Duration, tls: &GrpcTls) -> Result<Channel, ChannelError> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|_| ChannelError::Url(url.to_owned()))?;
    let endpoint = tls.endpoint(endpoint).map_err(|e| ChannelError::Tls(e.to_string()))?;
    Ok(endpoint.connect_timeout(timeout).timeout(timeout).connect_lazy())
}

/// [`lazy_channel`] to `callee`, every call signed with `keys`.
pub fn call_channel(
    url: &str,
    timeout: Duration,
    keys: &CallKeys,
    tls: &GrpcTls,
    callee: Party,
) -> Result<CallChannel, ChannelError> {
    Ok(Signed::new(lazy_channel(url, timeout, tls)?, keys, callee)?)
}

/// Another service as one service calls it for workspaces: a signed
/// channel, and who is calling.
#[derive(Clone)]
pub struct ServiceClient {
    channel: CallChannel,
    me: Party,
}

impl ServiceClient {
    /// `callee` at `url`, connected on first use, with `settings`' keys and
    /// TLS; each call gives up after `timeout`.
    pub fn new(url: &str, timeout: Duration, settings: &ServiceSettings, callee: Party) -> Result<Self, ChannelError> {
        let keys = &settings.call_keys;
        Ok(Self {
            channel: call_channel(url, timeout, keys, &settings.tls, callee)?,
            me: keys.me(),
        })
    }

    /// The channel, for a generated client.
    pub fn channel(&self) -> CallChannel {
        self.channel.clone()
    }

    /// `message` as a call made for `workspace_id`, holding only `scopes`
    /// (space-separated).
    pub fn acting_for<T>(&self, workspace_id: &str, scopes: &'static str, message: T) -> Result<Request<T>, Status> {
        let workspace = MetadataValue::try_from(workspace_id)
            .map_err(|_| Status::invalid_argument("the workspace id is not valid metadata"))?;
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(principal::WORKSPACE_ID, workspace);
        metadata.insert(principal::PRINCIPAL_ID, MetadataValue::from_static(self.me.name()));
        metadata.insert(principal::SCOPES, MetadataValue::from_static(scopes));
        Ok(request)
    }
}
