//! A circuit breaker, one per target (an upstream service, a vendor
//! connection): after enough failures it stops calls for a while (failing
//! them at once instead of waiting on a dead target), then lets one probe
//! through and closes again on success. It knows nothing of the protocol:
//! callers decide what counts as the target failing.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub consecutive_failures: u32,
    /// Failure ratio over `window` that opens it, once `min_calls` were seen.
    pub failure_ratio: f64,
    pub min_calls: u32,
    pub window: Duration,
    /// How long the circuit stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            min_calls: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        consecutive: u32,
        window_start: Instant,
        calls: u32,
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe call is in flight; others are refused until it ends.
    HalfOpen,
}

pub struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// Permission to make a call; report its outcome with [`Breaker::record`].
#[must_use]
pub struct Permit {
    probe: bool,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(closed()),
        }
    }

    /// Whether calls are refused now (open, or half open with its probe
    /// in flight).
    pub fn is_open(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => false,
            State::Open { until } => Instant::now() < until,
            State::HalfOpen => true,
        }
    }

    /// A permit, or how long until the circuit may let a call through.
    pub fn acquire(&self) -> Result<Permit, Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::Closed { .. } => Ok(Permit { probe: false }),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                *state = State::HalfOpen;
                Ok(Permit { probe: true })
            }
            State::HalfOpen => Err(Duration::from_secs(1)),
        }
    }

    /// Records a call's outcome: `failed` means the target itself failed
    /// (unavailable, timed out), not that it rejected the request.
    pub fn record(&self, permit: Permit, failed: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if permit.probe {
            *state = if failed { self.open() } else { closed() };
            return;
        }
        let State::Closed {
            consecutive,
            window_start,
            calls,
            failures,
        } = &mut *state
        else {
            return;
        };
        if window_start.elapsed() > self.settings.window {
            (*window_start, *calls, *failures) = (Instant::now(), 0, 0);
        }
        *calls += 1;
        if failed {
            *failures += 1;
            *consecutive += 1;
        } else {
            *consecutive = 0;
        }
        let ratio_tripped = *calls >= self.settings.min_calls
            && f64::from(*failures) / f64::from(*calls) >= self.settings.failure_ratio;
        if *consecutive >= self.settings.consecutive_failures || ratio_tripped {
            tracing::warn!("circuit opened after repeated failures");
            *state = self.open();
        }
    }

    fn open(&self) -> State {
        State::Open {
            until: Instant::now() + self.settings.open_for,
        }
    }
}

fn closed() -> State {
    State::Closed {
        consecutive: 0,
        window_start: Instant::now(),
        calls: 0,
        failures: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            min_calls: 10,
            window: Duration::from_secs(60),
            open_for: Duration::from_millis(50),
        })
    }

    fn call(b: &Breaker, failed: bool) -> bool {
        match b.acquire() {
            Ok(permit) => {
                b.record(permit, failed);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn consecutive_failures_open_it_and_a_good_probe_closes_it() {
        let b = breaker();
        assert!(call(&b, true) && call(&b, true) && call(&b, true));
        assert!(b.acquire().is_err(), "open after three failures in a row");
        std::thread::sleep(Duration::from_millis(60));
        let probe = b.acquire().expect("one probe after the open period");
        assert!(b.acquire().is_err(), "only one probe at a time");
        b.record(probe, false);
        assert!(call(&b, false), "closed again");
    }

    #[test]
    fn a_failed_probe_reopens_it() {
        let b = breaker();
        (0..3).for_each(|_| {
            call(&b, true);
        });
        std::thread::sleep(Duration::from_millis(60));
        assert!(call(&b, true));
        assert!(b.acquire().is_err());
    }

    #[test]
    fn a_high_failure_ratio_opens_it_without_a_streak() {
        let b = breaker();
        for i in 0..10 {
            call(&b, i % 2 == 0);
        }
        assert!(b.acquire().is_err(), "half the calls failed");
    }

    #[test]
    fn rejected_requests_do_not_count_as_failures() {
        let b = breaker();
        for _ in 0..50 {
            assert!(call(&b, false));
        }
    }
}
