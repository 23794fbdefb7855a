//! Calls this platform makes to servers it does not run (webhook
//! receivers, model servers, vendor APIs, identity providers), written
//! once:
//!
//! - [`client`]: an HTTP client with bounded connect and request times, no
//!   redirects, and (for targets users choose) a resolver that refuses
//!   internal addresses ([`target_guard`]);
//! - [`body`]: reading answers without trusting their size;
//! - [`failure`]: why a request got no answer, down to its root cause;
//! - [`retry`]: when to try again, with jitter, honouring `Retry-After`;
//! - [`breaker`]: a circuit breaker per target, so a dead one is not waited
//!   on call after call;
//! - [`policy`]: the two together, the one policy for calls to vendors.
//!
//! It holds no policy of its own: each caller says how long to wait and how
//! often to retry.

pub mod body;
pub mod breaker;
pub mod client;
pub mod failure;
pub mod policy;
pub mod retry;
pub mod target_guard;
pub mod tls;

pub use failure::Failure;
pub use retry::RetrySchedule;
pub use target_guard::{Cidr, TargetGuard};
