//! The replicas behind one upstream, kept in the balancer only while their
//! gRPC health check says SERVING, so a dead or draining replica stops
//! receiving calls within one check interval.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, channel::Change};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

pub const CHECK_EVERY: Duration = Duration::from_secs(1);
const CHECK_TIMEOUT: Duration = Duration::from_millis(800);
/// Consecutive failed checks that take a replica out of rotation: one slow
/// answer on a busy machine is not an outage.
const FAILURES_TO_REMOVE: u32 = 2;
/// The longest a failed replica stays in rotation.
pub const REMOVAL_DELAY: Duration = Duration::from_secs(CHECK_EVERY.as_secs() * FAILURES_TO_REMOVE as u64);

/// A balanced channel over the healthy replicas.
pub struct Replicas {
    pub channel: Channel,
    healthy: Arc<AtomicUsize>,
}

impl Replicas {
    /// Starts with every replica in rotation (so the first calls need not
    /// wait for a check) and health-checks them from then on.
    pub fn start(endpoints: Vec<Endpoint>, shutdown: CancellationToken) -> Self {
        let (channel, changes) = Channel::balance_channel::<usize>(64);
        let healthy = Arc::new(AtomicUsize::new(endpoints.len()));
        let mut in_rotation = vec![true; endpoints.len()];
        let mut failures = vec![0u32; endpoints.len()];
        for (i, endpoint) in endpoints.iter().enumerate() {
            let _ = changes.try_send(Change::Insert(i, endpoint.clone()));
        }
        let count = Arc::clone(&healthy);
        tokio::spawn(async move {
            let probes: Vec<Channel> = endpoints.iter().map(Endpoint::connect_lazy).collect();
            let mut tick = tokio::time::interval(CHECK_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for (i, probe) in probes.iter().enumerate() {
                    let answered = is_serving(probe.clone()).await;
                    failures[i] = if answered { 0 } else { failures[i] + 1 };
                    let serving = answered || (in_rotation[i] && failures[i] < FAILURES_TO_REMOVE);
                    if serving != in_rotation[i] {
                        in_rotation[i] = serving;
                        let change = if serving {
                            Change::Insert(i, endpoints[i].clone())
                        } else {
                            Change::Remove(i)
                        };
                        let _ = changes.send(change).await;
                        tracing::info!(replica = %endpoints[i].uri(), serving, "replica rotation changed");
                    }
                }
                count.store(in_rotation.iter().filter(|s| **s).count(), Ordering::Relaxed);
            }
        });
        Self { channel, healthy }
    }

    pub fn healthy(&self) -> usize {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Whether the replica's gRPC health reports SERVING.
pub async fn is_serving(channel: Channel) -> bool {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(response)) => response.into_inner().status == ServingStatus::Serving as i32,
        _ => false,
    }
}
