//! The gRPC services: thin adapters that check a request, run it against
//! the store (or sending, replying, training) and answer with protos.

pub mod bots;
pub mod conversations;
pub mod knowledge;
pub mod messages;
pub mod secrets;
