//! Requests in flight per receiving host (host and port).
//!
//! Many endpoints can live on one host (a customer's server, a load
//! balancer); with every endpoint allowed its own slots, a hundred busy
//! ones would open over a thousand connections to that host at once, more
//! than a listen backlog holds. A cap per host bounds that, and a host that
//! hangs only ever holds its own slots: endpoints elsewhere never wait for
//! it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use reqwest::Url;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Hosts remembered before idle ones are forgotten.
const TRACKED: usize = 4096;

pub struct HostSlots {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostSlots {
    pub fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot of `url`'s host; held until the permit drops.
    pub async fn acquire(&self, url: &str) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            if hosts.len() >= TRACKED {
                // Only this map holds an idle host's semaphore.
                hosts.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
            }
            let per_host = self.per_host;
            Arc::clone(
                hosts
                    .entry(host_of(url))
                    .or_insert_with(|| Arc::new(Semaphore::new(per_host))),
            )
        };
        semaphore
            .acquire_owned()
            .await
            .expect("host semaphores are never closed")
    }
}

/// `host:port` of a URL; an unparsable one counts as a host of its own (it
/// fails before any connection is made).
fn host_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| url.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn endpoints_on_one_host_share_it_whatever_their_path() {
        assert_eq!(host_of("https://hooks.example.com/a"), "hooks.example.com:443");
        assert_eq!(host_of("https://hooks.example.com:443/b?x=1"), "hooks.example.com:443");
        assert_eq!(host_of("http://127.0.0.1:8080/c"), "127.0.0.1:8080");
        assert_ne!(host_of("http://127.0.0.1:8080/"), host_of("http://127.0.0.1:8081/"));
    }

    #[tokio::test]
    async fn a_host_with_every_slot_taken_does_not_hold_up_another() {
        let slots = HostSlots::new(2);
        let _a = slots.acquire("http://stuck.example/1").await;
        let _b = slots.acquire("http://stuck.example/2").await;
        let third = tokio::time::timeout(Duration::from_millis(50), slots.acquire("http://stuck.example/3"));
        assert!(third.await.is_err(), "the stuck host has no slot left");
        let other = tokio::time::timeout(Duration::from_millis(50), slots.acquire("http://fine.example/"));
        assert!(other.await.is_ok(), "another host still gets one");
    }

    #[tokio::test]
    async fn idle_hosts_are_forgotten_once_many_are_tracked() {
        let slots = HostSlots::new(1);
        let _held = slots.acquire("http://busy.example/").await;
        for n in 0..TRACKED {
            drop(slots.acquire(&format!("http://h{n}.example/")).await);
        }
        let hosts = slots.hosts.lock().unwrap();
        assert!(hosts.len() < TRACKED, "{}", hosts.len());
        assert!(hosts.contains_key("busy.example:80"), "a host in use is kept");
    }
}
