//! When a failed delivery is tried again: a schedule of delays (one per
//! attempt after the first), with ±20% jitter so many endpoints failing
//! together do not retry in lockstep, and `Retry-After` honoured within
//! bounds.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// Delay before attempt 1, 2, …; the number of entries is the number of
    /// attempts.
    delays: Vec<Duration>,
}

/// Longest `Retry-After` a receiver can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl Default for RetrySchedule {
    /// Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    fn default() -> Self {
        Self::from_secs(&[0, 5, 300, 1800, 7200, 18000, 36000, 36000])
    }
}

impl RetrySchedule {
    pub fn from_secs(delays: &[u64]) -> Self {
        Self {
            delays: delays.iter().map(|s| Duration::from_secs(*s)).collect(),
        }
    }

    pub fn from_delays(delays: Vec<Duration>) -> Self {
        Self { delays }
    }

    /// "base 1 s, doubling, 5 attempts" and the like.
    pub fn exponential(base: Duration, attempts: u32) -> Self {
        let mut delays = vec![Duration::ZERO];
        delays.extend((0..attempts.saturating_sub(1)).map(|i| base * 2u32.pow(i)));
        Self { delays }
    }

    /// Parses `WEBHOOKS_RETRY_SCHEDULE`, seconds separated by commas.
    pub fn parse(text: &str) -> Option<Self> {
        let delays: Option<Vec<u64>> = text.split(',').map(|s| s.trim().parse().ok()).collect();
        delays.filter(|d| !d.is_empty()).map(|d| Self::from_secs(&d))
    }

    /// The wait before the next attempt after `attempts_made` failed ones,
    /// or `None` when the schedule is exhausted.
    pub fn next_delay(&self, attempts_made: usize, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.delays.get(attempts_made)?;
        let jittered = base.mul_f64(rand::thread_rng().gen_range(0.8..=1.2));
        Some(match retry_after {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_has_eight_attempts_with_jitter() {
        let s = RetrySchedule::default();
        assert_eq!(s.next_delay(0, None), Some(Duration::ZERO));
        let d = s.next_delay(1, None).unwrap();
        assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(6), "{d:?}");
        assert!(s.next_delay(7, None).is_some());
        assert_eq!(s.next_delay(8, None), None, "after the eighth attempt it is failed");
    }

    #[test]
    fn doubling_from_one_second_for_five_attempts_is_expressible() {
        let s = RetrySchedule::exponential(Duration::from_secs(1), 5);
        assert_eq!(s, RetrySchedule::from_secs(&[0, 1, 2, 4, 8]));
    }

    #[test]
    fn retry_after_is_honoured_but_bounded() {
        let s = RetrySchedule::from_secs(&[0, 1]);
        let d = s.next_delay(1, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(d, Duration::from_secs(30));
        let capped = s.next_delay(1, Some(Duration::from_secs(1_000_000))).unwrap();
        assert_eq!(capped, MAX_RETRY_AFTER);
    }
}
