//! The gRPC services behind the gateway: one balanced tonic channel per
//! upstream, calls with a deadline, and health checks for `/readyz`.

use std::time::Duration;

use http::uri::PathAndQuery;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{config::UpstreamConfig, transcode::codec::DynamicCodec};

#[derive(Debug, thiserror::Error)]
#[error("upstream {name}: invalid URL {url:?}")]
pub struct UpstreamError {
    name: String,
    url: String,
}

pub struct Upstream {
    pub name: String,
    channel: Channel,
}

pub struct Upstreams {
    list: Vec<Upstream>,
    /// (path prefix, index into `list`), longest prefix first.
    prefixes: Vec<(String, usize)>,
    timeout: Duration,
}

impl Upstreams {
    /// Channels connect lazily: the gateway starts (and answers 503 for that
    /// upstream) even while a service is still coming up.
    pub fn new(
        configs: &[UpstreamConfig],
        routes: &[(String, String)],
        timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let list = configs
            .iter()
            .map(|config| {
                let endpoints = config
                    .urls
                    .iter()
                    .map(|url| {
                        Endpoint::from_shared(url.clone())
                            .map(|e| e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true))
                            .map_err(|_| UpstreamError {
                                name: config.name.clone(),
                                url: url.clone(),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Upstream {
                    name: config.name.clone(),
                    channel: Channel::balance_list(endpoints.into_iter()),
                })
            })
            .collect::<Result<Vec<_>, UpstreamError>>()?;
        let mut prefixes: Vec<(String, usize)> = routes
            .iter()
            .filter_map(|(prefix, name)| list.iter().position(|u| &u.name == name).map(|i| (prefix.clone(), i)))
            .collect();
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(Self {
            list,
            prefixes,
            timeout,
        })
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

    pub fn all(&self) -> &[Upstream] {
        &self.list
    }

    /// One unary call with the gateway's deadline, also sent upstream as
    /// `grpc-timeout` so the service can stop work nobody waits for.
    pub async fn call(
        &self,
        upstream: usize,
        path: PathAndQuery,
        mut request: tonic::Request<DynamicMessage>,
        response_type: MessageDescriptor,
    ) -> Result<tonic::Response<DynamicMessage>, tonic::Status> {
        request.set_timeout(self.timeout);
        let mut client = tonic::client::Grpc::new(self.list[upstream].channel.clone());
        let call = async {
            client
                .ready()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("upstream not ready: {e}")))?;
            client.unary(request, path, DynamicCodec::new(response_type)).await
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("upstream did not answer in time")))
    }

    /// Whether the upstream's gRPC health reports SERVING.
    pub async fn is_serving(&self, upstream: usize) -> bool {
        let mut client = HealthClient::new(self.list[upstream].channel.clone());
        let check = client.check(HealthCheckRequest { service: String::new() });
        match tokio::time::timeout(Duration::from_secs(2), check).await {
            Ok(Ok(response)) => response.into_inner().status == ServingStatus::Serving as i32,
            _ => false,
        }
    }
}
