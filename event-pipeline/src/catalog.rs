//! The event types of the platform, as producers emit them and consumers
//! (webhook filters, analytics) match them. The type is also the routing
//! key on the `events` exchange.

pub const CONVERSATION_STARTED: &str = "conversation.started";
/// `data`: the conversation, and `changes` (field, old and new value).
pub const CONVERSATION_UPDATED: &str = "conversation.updated";
pub const CONVERSATION_ENDED: &str = "conversation.ended";

/// A user's message.
pub const MESSAGE_RECEIVED: &str = "message.received";
/// A bot's or an agent's message.
pub const MESSAGE_SENT: &str = "message.sent";
/// The bot could not answer: `data` holds the question, the fallback sent
/// instead, and the reason.
pub const MESSAGE_FAILED: &str = "message.failed";

pub const BOT_TRAINED: &str = "bot.trained";
pub const BOT_DEPLOYED: &str = "bot.deployed";
/// Training failed: `data.reason` says why.
pub const BOT_ERROR: &str = "bot.error";

/// `data.integration`: the integration as the API shows it, credentials
/// never included.
pub const INTEGRATION_CONNECTED: &str = "integration.connected";
pub const INTEGRATION_DISCONNECTED: &str = "integration.disconnected";
/// A reconciliation finished: `data.sync` with its counts (created,
/// updated, removed, failed).
pub const INTEGRATION_SYNC_COMPLETED: &str = "integration.sync_completed";
/// A reconciliation attempt failed: `data.reason`, `data.next_retry_at`.
pub const INTEGRATION_SYNC_FAILED: &str = "integration.sync_failed";

/// A product of a workspace's own database fell below its connection's
/// `low_stock_threshold`: `data.product`, `data.threshold`.
pub const PRODUCT_LOW_STOCK: &str = "product.low_stock";
/// A product of a workspace's own database has none left.
pub const PRODUCT_OUT_OF_STOCK: &str = "product.out_of_stock";

/// Sent on request to one webhook endpoint only, to try it.
pub const WEBHOOK_TEST: &str = "webhook.test";
/// An endpoint that kept failing was disabled.
pub const WEBHOOK_ENDPOINT_DISABLED: &str = "webhook.endpoint.disabled";
