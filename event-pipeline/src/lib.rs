//! The event pipeline every service uses as it is, from a state change to
//! every consumer:
//!
//! 1. a producer builds an [`Envelope`] (the one shape every event has,
//!    serialised once) with a type from the [`catalog`];
//! 2. records it in its [`Outbox`] in the transaction of the change;
//! 3. its [`relay`] publishes recorded events to the `events` topic
//!    exchange ([`broker`]) with publisher confirms, routing key = type;
//! 4. a consumer reads them from a durable queue of its own
//!    ([`subscriber`]), committing what they mean before acknowledging.
//!
//! Delivery is at least once end to end; consumers deduplicate by event id.

pub mod broker;
/// The event types, part of the contract: see `proto::events`.
pub use proto::events as catalog;
pub mod envelope;
pub mod outbox;
pub mod queue_depth;
pub mod relay;
pub mod subscriber;

pub use broker::BrokerSettings;
pub use envelope::{Envelope, Received};
pub use outbox::Outbox;
