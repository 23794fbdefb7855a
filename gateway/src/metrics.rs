//! The gateway's operational counters, served at `/metrics` in the
//! Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};

use service_runtime::exposition::{Exposition, Kind};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Metrics {
    /// Requests a rate limit let through.
    pub rate_allowed: Counter,
    /// Requests refused with 429.
    pub rate_limited: Counter,
    /// Rate limit decisions taken without Redis because it failed.
    pub redis_fallbacks: Counter,
}

impl Metrics {
    pub fn render(&self, out: &mut Exposition) {
        out.family(
            "gateway_rate_limit_decisions_total",
            Kind::Counter,
            "Rate limit decisions, allowed or limited.",
        );
        out.sample(
            "gateway_rate_limit_decisions_total",
            &[("decision", "allowed")],
            self.rate_allowed.get(),
        );
        out.sample(
            "gateway_rate_limit_decisions_total",
            &[("decision", "limited")],
            self.rate_limited.get(),
        );
        out.single(
            "gateway_rate_limited_total",
            Kind::Counter,
            "Requests refused by a rate limit.",
            self.rate_limited.get(),
        );
        out.single(
            "gateway_rate_limit_redis_fallbacks_total",
            Kind::Counter,
            "Rate limit decisions made without Redis because it did not answer.",
            self.redis_fallbacks.get(),
        );
    }
}
