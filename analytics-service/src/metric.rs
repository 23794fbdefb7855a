//! The names counts are kept under.

pub const CONVERSATIONS_STARTED: &str = "conversations.started";
pub const CONVERSATIONS_ENDED: &str = "conversations.ended";
pub const CONVERSATIONS_HANDED_OFF: &str = "conversations.handed_off";
pub const MESSAGES_RECEIVED: &str = "messages.received";
pub const MESSAGES_SENT: &str = "messages.sent";
pub const MESSAGES_FAILED: &str = "messages.failed";

pub const CONVERSATION_METRICS: [&str; 3] = [CONVERSATIONS_STARTED, CONVERSATIONS_ENDED, CONVERSATIONS_HANDED_OFF];
pub const MESSAGE_METRICS: [&str; 3] = [MESSAGES_RECEIVED, MESSAGES_SENT, MESSAGES_FAILED];
