//! When a failed call is tried again: a schedule of delays (one per
//! attempt after the first) with ±20% jitter, so many callers failing
//! together do not retry in lockstep, and `Retry-After` honoured up to a
//! bound the caller sets.

use std::time::Duration;

use rand::Rng;
use reqwest::{StatusCode, header::HeaderMap};

/// Random spread around each delay, as a fraction of it.
const JITTER: f64 = 0.2;

#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// Delay before attempt 1, 2, …; the number of entries is the number of
    /// attempts.
    delays: Vec<Duration>,
    /// Longest `Retry-After` a server can impose.
    max_retry_after: Duration,
}

impl RetrySchedule {
    pub fn from_delays(delays: Vec<Duration>) -> Self {
        Self {
            delays,
            max_retry_after: Duration::from_secs(3600),
        }
    }

    pub fn from_secs(delays: &[u64]) -> Self {
        Self::from_delays(delays.iter().map(|s| Duration::from_secs(*s)).collect())
    }

    /// `attempts` in all: the first at once, then after `base`, doubling
    /// ("base 1 s, doubling, 5 attempts" and the like).
    pub fn exponential(base: Duration, attempts: u32) -> Self {
        let mut delays = vec![Duration::ZERO];
        delays.extend((0..attempts.saturating_sub(1)).map(|i| base * 2u32.pow(i.min(16))));
        Self::from_delays(delays)
    }

    /// Caps what a server's `Retry-After` can make the caller wait.
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// Parses delays in seconds separated by commas (`0,5,300`).
    pub fn parse(text: &str) -> Option<Self> {
        let delays: Option<Vec<u64>> = text.split(',').map(|s| s.trim().parse().ok()).collect();
        delays.filter(|d| !d.is_empty()).map(|d| Self::from_secs(&d))
    }

    /// How many attempts the schedule allows.
    pub fn attempts(&self) -> usize {
        self.delays.len()
    }

    /// The wait before the next attempt after `attempts_made` failed ones,
    /// or `None` when the schedule is exhausted. A server's `Retry-After`
    /// lengthens it, never shortens it.
    pub fn next_delay(&self, attempts_made: usize, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.delays.get(attempts_made)?;
        let jittered = base.mul_f64(rand::thread_rng().gen_range(1.0 - JITTER..=1.0 + JITTER));
        Some(match retry_after {
            Some(asked) => jittered.max(asked.min(self.max_retry_after)),
            None => jittered,
        })
    }
}

/// Whether an answer with `status` is worth trying again: the server was
/// overloaded or failed, not the request.
pub fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` as a wait: seconds (fractional ones too, as some APIs
/// send) or an HTTP date (RFC 9110 section 10.2.3). A date in the past is
/// no wait.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_of_eight_attempts_has_jitter_and_an_end() {
        let s = RetrySchedule::from_secs(&[0, 5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(s.next_delay(0, None), Some(Duration::ZERO));
        let d = s.next_delay(1, None).unwrap();
        assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(6), "{d:?}");
        assert!(s.next_delay(7, None).is_some());
        assert_eq!(s.next_delay(8, None), None, "after the eighth attempt it is over");
    }

    #[test]
    fn doubling_from_one_second_for_five_attempts_is_expressible() {
        let s = RetrySchedule::exponential(Duration::from_secs(1), 5);
        assert_eq!(s, RetrySchedule::from_secs(&[0, 1, 2, 4, 8]));
        assert_eq!(s.attempts(), 5);
    }

    #[test]
    fn retry_after_is_honoured_but_bounded() {
        let s = RetrySchedule::from_secs(&[0, 1]);
        let d = s.next_delay(1, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(d, Duration::from_secs(30));
        let capped = s.next_delay(1, Some(Duration::from_secs(1_000_000))).unwrap();
        assert_eq!(capped, Duration::from_secs(3600));
        let tight = RetrySchedule::from_secs(&[0, 1]).with_max_retry_after(Duration::from_secs(2));
        assert_eq!(
            tight.next_delay(1, Some(Duration::from_secs(30))).unwrap(),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn retry_after_reads_seconds_fractions_and_dates() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(reqwest::header::RETRY_AFTER, value.parse().unwrap());
            headers
        };
        assert_eq!(retry_after(&headers("120")), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&headers("1.5")), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after(&headers("-3")), None);
        assert_eq!(retry_after(&headers("soon")), None);
        let past = retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(past, Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let wait = retry_after(&headers(&later.replace("+0000", "GMT"))).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn overload_and_server_failures_are_retryable_refusals_are_not() {
        assert!(retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable_status(StatusCode::BAD_GATEWAY));
        assert!(!retryable_status(StatusCode::BAD_REQUEST));
        assert!(!retryable_status(StatusCode::UNAUTHORIZED));
    }
}
