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

/// Every event type with what it announces, for the API's description.
pub const DESCRIBED: &[(&str, &str)] = &[
    (CONVERSATION_STARTED, "A conversation started: `data.conversation`."),
    (
        CONVERSATION_UPDATED,
        "A conversation changed: `data.conversation` and `data.changes` (field, old and new value).",
    ),
    (CONVERSATION_ENDED, "A conversation ended: `data.conversation`."),
    (MESSAGE_RECEIVED, "A user's message: `data.message`."),
    (MESSAGE_SENT, "A bot's or an agent's message: `data.message`."),
    (
        MESSAGE_FAILED,
        "The bot could not answer: the question, the fallback sent instead, and the reason.",
    ),
    (BOT_TRAINED, "A training job finished: the bot and its new version."),
    (BOT_DEPLOYED, "A bot now answers with another version."),
    (BOT_ERROR, "Training failed: `data.reason` says why."),
    (
        INTEGRATION_CONNECTED,
        "An integration connected: `data.integration`, credentials never included.",
    ),
    (INTEGRATION_DISCONNECTED, "An integration was removed."),
    (
        INTEGRATION_SYNC_COMPLETED,
        "A reconciliation finished: `data.sync` with its counts.",
    ),
    (
        INTEGRATION_SYNC_FAILED,
        "A reconciliation attempt failed: `data.reason`, `data.next_retry_at`.",
    ),
    (
        PRODUCT_LOW_STOCK,
        "A product fell below its connection's threshold: `data.product`, `data.threshold`.",
    ),
    (PRODUCT_OUT_OF_STOCK, "A product has none left: `data.product`."),
    (WEBHOOK_TEST, "Sent on request to one endpoint, to try it."),
    (WEBHOOK_ENDPOINT_DISABLED, "An endpoint that kept failing was disabled."),
];

#[cfg(test)]
mod tests {
    /// Every event type declared in this file is described.
    #[test]
    fn every_event_type_is_described() {
        let source = include_str!("events.rs");
        let declared = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub const ").and_then(|l| l.split_once(": &str = \"")))
            .map(|(_, rest)| rest.trim_end_matches("\";"));
        for event in declared {
            assert!(
                super::DESCRIBED.iter().any(|(e, _)| *e == event),
                "{event} is missing from DESCRIBED"
            );
        }
    }
}
