//! Stored times as protobuf `Timestamp`s.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// The inverse of [`timestamp`]; `None` for out-of-range values.
pub fn from_timestamp(ts: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}
