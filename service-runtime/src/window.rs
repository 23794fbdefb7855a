//! The time window every report takes (`since` and `until`), checked the
//! same way by every service that reports.

use crate::{field_error::invalid_argument, time::from_timestamp};
use chrono::{DateTime, Duration, Utc};
use prost_types::Timestamp;
use tonic::Status;

/// Longest window one call may ask for.
const MAX_WINDOW_DAYS: i64 = 366;

#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Window {
    /// The requested window; by default the 24 hours before `until`, which
    /// is now by default.
    pub fn of(since: Option<&Timestamp>, until: Option<&Timestamp>) -> Result<Self, Status> {
        let until = match until {
            Some(ts) => from_timestamp(ts).ok_or_else(|| invalid_argument("until", "is out of range"))?,
            None => Utc::now(),
        };
        let since = match since {
            Some(ts) => from_timestamp(ts).ok_or_else(|| invalid_argument("since", "is out of range"))?,
            None => until - Duration::hours(24),
        };
        if since > until {
            return Err(invalid_argument("since", "must not be after until"));
        }
        if until - since > Duration::days(MAX_WINDOW_DAYS) {
            return Err(invalid_argument(
                "since",
                &format!("the window may span at most {MAX_WINDOW_DAYS} days"),
            ));
        }
        Ok(Self { since, until })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::timestamp;

    #[test]
    fn windows_default_to_the_last_day_and_refuse_backwards_or_huge_ones() {
        let window = Window::of(None, None).unwrap();
        assert_eq!(window.until - window.since, Duration::hours(24));
        let now = Utc::now();
        let later = timestamp(now + Duration::hours(1));
        let earlier = timestamp(now);
        assert!(Window::of(Some(&later), Some(&earlier)).is_err());
        let long_ago = timestamp(now - Duration::days(400));
        assert!(Window::of(Some(&long_ago), Some(&earlier)).is_err());
    }
}
