//! Calls between the platform's components, authenticated.
//!
//! A service believes the principal in a call's metadata only when the call
//! carries a token it can verify: an HMAC-SHA256 over the principal, the
//! request id, the RPC's path and an expiry no later than the call's
//! deadline, keyed by a secret shared by exactly one caller and one callee
//! ([`keys`]). The gateway is the only holder of the keys services accept
//! from it, so nothing else in the network can speak for a workspace; a
//! token copied from one call is worthless for another workspace, another
//! RPC or after its deadline.
//!
//! Why a MAC rather than a signature: verifying an Ed25519 signature costs
//! tens of microseconds, as much as the whole of a cheap read; a MAC costs
//! about one. Pairwise keys keep the property a signature would give: a
//! callee can forge tokens only to itself.
//!
//! Each service also checks the RPC's `platform.required_scope` itself
//! ([`scopes`]), so a principal gets no more from a service directly than
//! through the gateway.

pub mod checking;
pub mod keys;
pub mod scopes;
pub mod signing;
mod token;

pub use checking::{CallCheckLayer, Caller};
pub use keys::{CallKeys, CallKeysError, Party};
pub use signing::Signed;

/// The metadata key carrying the token.
pub const TOKEN: &str = "x-call-token";
