//! The service's SQL over the API's tables, one module per table. Every
//! query that reads tenant data takes the workspace id. Sending's own
//! bookkeeping (leases, outcomes) lives with the senders in
//! [`delivery`](crate::delivery).

pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod replays;
