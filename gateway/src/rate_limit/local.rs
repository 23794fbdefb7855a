//! This replica's own token buckets (governor's GCRA), one keyed limiter per
//! distinct quota.
//!
//! governor never forgets a key by itself, so a housekeeping tick drops
//! every key whose bucket is full again (`retain_recent`): memory follows
//! the keys active in the last refill period, not every key ever seen.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, RwLock},
    time::Duration,
};

use governor::{
    DefaultKeyedRateLimiter, Quota as GovernorQuota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

use super::{Decision, Quota};

type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

#[derive(Default)]
pub struct LocalLimiter {
    /// Keyed by (burst, interval in ns): one limiter per quota in use.
    limiters: RwLock<HashMap<(u32, u128), Arc<Limiter>>>,
}

impl LocalLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn take(&self, key: &str, quota: Quota) -> Decision {
        let limiter = self.limiter(quota);
        let interval = quota.interval();
        match limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: quota.burst,
                    remaining,
                    reset: interval * quota.burst.saturating_sub(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    allowed: false,
                    limit: quota.burst,
                    remaining: 0,
                    reset: interval * quota.burst,
                    retry_after: wait,
                }
            }
        }
    }

    fn limiter(&self, quota: Quota) -> Arc<Limiter> {
        let id = (quota.burst, quota.interval().as_nanos());
        if let Some(limiter) = self.limiters.read().ok().and_then(|m| m.get(&id).cloned()) {
            return limiter;
        }
        let burst = NonZeroU32::new(quota.burst.max(1)).expect("max(1) is non-zero");
        let governor_quota = GovernorQuota::with_period(quota.interval())
            .unwrap_or_else(|| GovernorQuota::per_second(burst))
            .allow_burst(burst);
        let limiter: Arc<Limiter> = Arc::new(DefaultKeyedRateLimiter::keyed(governor_quota).with_middleware());
        match self.limiters.write() {
            Ok(mut map) => Arc::clone(map.entry(id).or_insert(limiter)),
            Err(_) => limiter,
        }
    }

    /// Drops keys whose buckets are full again; they behave exactly like
    /// keys never seen.
    pub fn forget_idle(&self) {
        if let Ok(map) = self.limiters.read() {
            for limiter in map.values() {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }

    #[cfg(test)]
    fn tracked_keys(&self) -> usize {
        self.limiters
            .read()
            .map(|m| m.values().map(|l| l.len()).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota {
        burst: 3,
        per_second: 20.0,
    };

    #[test]
    fn the_request_after_the_burst_is_refused_until_a_token_returns() {
        let limiter = LocalLimiter::new();
        let remaining: Vec<u32> = (0..3).map(|_| limiter.take("k", QUOTA).remaining).collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = limiter.take("k", QUOTA);
        assert!(!refused.allowed);
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= QUOTA.interval());
        std::thread::sleep(QUOTA.interval() + Duration::from_millis(10));
        assert!(limiter.take("k", QUOTA).allowed, "one token came back");
        assert!(limiter.take("other", QUOTA).allowed, "keys have their own buckets");
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let limiter = LocalLimiter::new();
        for i in 0..1000 {
            limiter.take(&format!("client-{i}"), QUOTA);
        }
        assert_eq!(limiter.tracked_keys(), 1000);
        std::thread::sleep(QUOTA.interval() * QUOTA.burst + Duration::from_millis(20));
        limiter.forget_idle();
        assert_eq!(limiter.tracked_keys(), 0);
    }
}
