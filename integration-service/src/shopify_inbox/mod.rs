//! Shopify's webhooks for connected stores: received (verified, stored once
//! per webhook id, answered at once) and then processed by any replica
//! into the store's products, stock and orders, or honoured as the privacy
//! requests they are.

mod applying;
mod processing;
mod receiving;

pub use processing::Processor;
pub use receiving::{Received, Receiver};
