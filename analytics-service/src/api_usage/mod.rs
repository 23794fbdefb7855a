//! The API monitoring report: what the gateways record about every request
//! ([`record`]) and the report over any window ([`report`]).

pub mod record;
pub mod report;
mod summary;
