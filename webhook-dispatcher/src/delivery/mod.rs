//! Sending deliveries: sign and POST them, record the attempt, and schedule
//! a retry or finish.
//!
//! Deliveries reach the senders two ways. The consumer leases the ones it
//! records for endpoints with room and hands them over as soon as its
//! statement commits ([`Dispatcher::hand_off`]), so the common path costs
//! no statement between recording a delivery and sending it. Everything
//! else (retries, deliveries of endpoints that were busy, rate-limited or
//! ordered ones, leases that lapsed when a dispatcher died) is claimed from
//! PostgreSQL by one loop. Both feed the same per-endpoint [`lanes`], which
//! cap what is in flight to one endpoint so a slow endpoint never holds up
//! another. Scheduled retries are rows in PostgreSQL, so they survive
//! restarts of the dispatcher and of RabbitMQ; delivery is at least once.

mod hosts;
mod lanes;
mod leases;
mod outcomes;
mod request;

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use event_pipeline::Outbox;
use governor::{
    DefaultDirectRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use outbound_http::{RetrySchedule, TargetGuard, client::Timeouts};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{secrets::SecretBox, store::deliveries::WAKE_CHANNEL};
use hosts::HostSlots;
use lanes::{Bounds, Lanes, Next};
pub use leases::Leased;
use leases::{Held, RENEW_AFTER};
pub use outcomes::DeliveryCounts;
use outcomes::Recorder;
pub use request::Target;

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub schedule: RetrySchedule,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Deliveries in flight to one endpoint at once.
    pub per_endpoint: usize,
    /// Deliveries in flight to one receiving host (host and port) at once,
    /// over all its endpoints.
    pub per_host: usize,
    pub guard: TargetGuard,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after: Duration,
}

const USER_AGENT: &str = concat!("chatbot-platform-webhooks/", env!("CARGO_PKG_VERSION"));
const CLAIM_BATCH: usize = 100;
/// Leased deliveries waiting in memory, per endpoint in-flight slot and
/// overall; past them deliveries wait in PostgreSQL.
const WAITING_PER_SLOT: usize = 64;
const WAITING_TOTAL: usize = 16_384;

/// The consumer's way to hand freshly recorded deliveries to the senders.
#[derive(Clone)]
pub struct Dispatcher {
    sender: Arc<Sender>,
}

impl Dispatcher {
    /// How attempts have ended so far.
    pub fn counts(&self) -> Arc<DeliveryCounts> {
        self.sender.recorder.counts.clone()
    }

    /// How long a lease the consumer should take on a delivery it will hand
    /// off.
    pub fn lease(&self) -> Duration {
        self.sender.lease()
    }

    /// Whether a delivery for `endpoint_id` may be leased and handed off
    /// now rather than left for the claim loop.
    pub fn has_room(&self, endpoint_id: &str) -> bool {
        !self.sender.shutdown.is_cancelled() && self.sender.lanes.has_room(endpoint_id)
    }

    /// Sends deliveries the consumer leased in its committed statement.
    pub fn hand_off(&self, deliveries: Vec<Leased>) {
        for delivery in deliveries {
            self.sender.submit(delivery);
        }
    }
}

pub fn spawn(
    pool: PgPool,
    secrets: SecretBox,
    outbox: Outbox,
    settings: DeliverySettings,
    shutdown: CancellationToken,
) -> Dispatcher {
    let timeouts = Timeouts {
        connect: settings.connect_timeout,
        request: Some(settings.timeout),
        read: None,
    };
    let http = outbound_http::client::guarded(&settings.guard, timeouts, USER_AGENT);
    let recorder = Recorder::start(pool.clone(), outbox, settings.schedule.clone(), settings.disable_after);
    let lanes = Lanes::new(Bounds {
        per_endpoint: settings.per_endpoint.max(1),
        waiting_per_endpoint: settings.per_endpoint.max(1) * WAITING_PER_SLOT,
        waiting_total: WAITING_TOTAL,
    });
    let hosts = HostSlots::new(settings.per_host);
    let sender = Arc::new(Sender {
        pool,
        recorder,
        secrets,
        http,
        settings,
        lanes,
        hosts,
        rate_limits: Mutex::new(HashMap::new()),
        room: Notify::new(),
        starved: AtomicBool::new(false),
        shutdown,
    });
    tokio::spawn(Arc::clone(&sender).claim_loop());
    Dispatcher { sender }
}

struct Sender {
    pool: PgPool,
    recorder: Recorder,
    secrets: SecretBox,
    http: reqwest::Client,
    settings: DeliverySettings,
    lanes: Lanes<Held>,
    /// `per_host` slots of each receiving host.
    hosts: HostSlots,
    /// Token buckets of endpoints with a rate limit, with the rate they
    /// were made for (a changed limit replaces the bucket).
    rate_limits: Mutex<HashMap<String, (i32, Arc<DefaultDirectRateLimiter>)>>,
    /// Rung when a lane frees room while the last claim had to leave due
    /// deliveries behind. (A failure's retry is never due at once; the
    /// claim loop's tick finds it.)
    room: Notify,
    /// The last claim left due deliveries behind for want of room. Without
    /// it, lanes going idle need no claim: the consumer hands work over
    /// directly, and what it leaves in PostgreSQL it announces.
    starved: AtomicBool,
    shutdown: CancellationToken,
}

impl Sender {
    fn lease(&self) -> Duration {
        leases::duration(self.settings.timeout)
    }

    /// Claims due deliveries whenever woken (a NOTIFY from whoever made
    /// some due, room in the lanes) or every 250 ms, until shutdown; then
    /// gives back the leases of deliveries still waiting in memory.
    async fn claim_loop(self: Arc<Self>) {
        let mut listener = PgListener::connect_with(&self.pool).await.ok();
        if let Some(l) = listener.as_mut() {
            let _ = l.listen(WAKE_CHANNEL).await;
        }
        loop {
            if self.claim().await {
                // A full batch: more are likely due.
                continue;
            }
            let wake = async {
                match listener.as_mut() {
                    Some(l) => {
                        let _ = l.recv().await;
                        // One claim answers every wake-up already here.
                        while l.next_buffered().is_some() {}
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = wake => {}
                _ = self.room.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        let waiting: Vec<Leased> = self.lanes.take_waiting().into_iter().map(|h| h.delivery).collect();
        if !waiting.is_empty()
            && let Err(error) = leases::release(&self.pool, &waiting).await
        {
            tracing::warn!(%error, deliveries = waiting.len(), "giving back leases at shutdown; they will lapse");
        }
    }

    /// Claims as many due deliveries as the lanes have room for, skipping
    /// endpoints with none; true when the batch came back full.
    async fn claim(self: &Arc<Self>) -> bool {
        let room = self.lanes.room().min(CLAIM_BATCH);
        if room == 0 || self.shutdown.is_cancelled() {
            self.starved.store(room == 0, Ordering::Relaxed);
            return false;
        }
        let skipped = self.lanes.full();
        match leases::claim(&self.pool, self.lease(), room as i64, &skipped).await {
            Ok(claimed) => {
                let full = claimed.len() == room;
                // Skipped endpoints may have due deliveries; a full batch
                // is claimed again at once.
                self.starved.store(!skipped.is_empty(), Ordering::Relaxed);
                claimed.into_iter().for_each(|d| self.submit(d));
                full
            }
            Err(error) => {
                tracing::warn!(%error, "claiming deliveries");
                false
            }
        }
    }

    /// Starts `delivery` in a free slot of its endpoint, or queues it.
    fn submit(self: &Arc<Self>, delivery: Leased) {
        let endpoint_id = delivery.endpoint_id.to_string();
        if let Some(first) = self.lanes.submit(&endpoint_id, Held::new(delivery)) {
            let sender = Arc::clone(self);
            tokio::spawn(async move { sender.work(endpoint_id, first).await });
        }
    }

    /// One in-flight slot of an endpoint: delivers `held`, then whatever
    /// waits for the same endpoint, until its queue is empty.
    async fn work(&self, endpoint_id: String, mut held: Held) {
        loop {
            // The host's slot first: waiting for it counts towards
            // renewing the lease.
            let slot = self.hosts.acquire(&held.delivery.target.url).await;
            if let Some(delivery) = self.keep_lease(held).await {
                self.deliver(delivery).await;
            }
            drop(slot);
            match self.lanes.next(&endpoint_id) {
                Next::Take { item, refill } => {
                    held = item;
                    if refill {
                        self.wake_if_starved();
                    }
                }
                Next::Stop => break,
            }
        }
        self.wake_if_starved();
    }

    fn wake_if_starved(&self) {
        if self.starved.load(Ordering::Relaxed) {
            self.room.notify_one();
        }
    }

    /// The delivery, with its lease renewed if it waited long; `None` when
    /// the lease is no longer ours (someone else sends it).
    async fn keep_lease(&self, held: Held) -> Option<Leased> {
        let mut delivery = held.delivery;
        if held.since.elapsed() < RENEW_AFTER {
            return Some(delivery);
        }
        match leases::renew(&self.pool, &delivery, self.lease()).await {
            Ok(Some(lease)) => {
                delivery.lease = lease;
                Some(delivery)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, delivery = %delivery.id, "renewing a lease failed; it will lapse and retry");
                None
            }
        }
    }

    async fn deliver(&self, delivery: Leased) {
        if let Err(error) = self.try_deliver(&delivery).await {
            tracing::warn!(%error, delivery = %delivery.id, "delivery bookkeeping failed; the lease will expire and retry");
        }
    }

    async fn try_deliver(&self, delivery: &Leased) -> anyhow::Result<()> {
        let target = &delivery.target;
        if !target.enabled {
            return self.recorder.abandon(delivery).await;
        }
        if let Some(wait) = target
            .rate_limit_per_second
            .and_then(|limit| self.throttle(delivery.endpoint_id.as_str(), limit))
        {
            return self.recorder.postpone(delivery, wait).await;
        }
        let attempt = request::Attempt {
            delivery_id: delivery.id.as_str(),
            event_id: delivery.event_id.as_str(),
            number: delivery.attempts + 1,
            traceparent: delivery.traceparent.as_deref(),
        };
        let outcome = request::send(&self.http, &self.settings.guard, &self.secrets, attempt, target).await?;
        self.recorder.record(delivery, &outcome).await
    }

    /// How long to wait when the endpoint's rate limit is used up.
    fn throttle(&self, endpoint_id: &str, per_second: i32) -> Option<Duration> {
        let limiter = {
            let mut limits = self.rate_limits.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = || {
                let rate = NonZeroU32::new(per_second.max(1) as u32).expect("max(1) is non-zero");
                (per_second, Arc::new(RateLimiter::direct(Quota::per_second(rate))))
            };
            let entry = limits.entry(endpoint_id.to_owned()).or_insert_with(fresh);
            if entry.0 != per_second {
                *entry = fresh();
            }
            Arc::clone(&entry.1)
        };
        limiter
            .check()
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}
