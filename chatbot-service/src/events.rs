//! The events this service emits, and what their `data` holds. Each is
//! recorded in the transaction of the change it describes.

use serde_json::{Value, json};
use service_runtime::events::Envelope;

use crate::{conversations::ConversationRow, messages::MessageRow};

pub const CONVERSATION_STARTED: &str = "conversation.started";
pub const CONVERSATION_UPDATED: &str = "conversation.updated";
pub const CONVERSATION_ENDED: &str = "conversation.ended";
pub const MESSAGE_RECEIVED: &str = "message.received";
pub const MESSAGE_SENT: &str = "message.sent";
pub const MESSAGE_FAILED: &str = "message.failed";

pub fn conversation(event_type: &str, workspace_id: &str, row: &ConversationRow) -> Envelope {
    Envelope::new(event_type, workspace_id, json!({ "conversation": row.to_json() }))
}

/// `conversation.updated` with the fields that changed.
pub fn conversation_updated(workspace_id: &str, row: &ConversationRow, changes: Vec<Value>) -> Envelope {
    Envelope::new(
        CONVERSATION_UPDATED,
        workspace_id,
        json!({ "conversation": row.to_json(), "changes": changes }),
    )
}

pub fn change(field: &str, old_value: Value, new_value: Value) -> Value {
    json!({ "field": field, "old_value": old_value, "new_value": new_value })
}

/// `message.received` for what users send, `message.sent` for what the bot
/// or an agent sends; system notes are not announced.
pub fn message(workspace_id: &str, row: &MessageRow) -> Option<Envelope> {
    let event_type = match row.role() {
        "user" => MESSAGE_RECEIVED,
        "bot" | "agent" => MESSAGE_SENT,
        _ => return None,
    };
    Some(Envelope::new(
        event_type,
        workspace_id,
        json!({ "message": row.to_json() }),
    ))
}

/// `message.failed`: the bot could not answer `question`; `reply` is the
/// fallback it sent instead.
pub fn message_failed(workspace_id: &str, question: &MessageRow, reply: &MessageRow, reason: &str) -> Envelope {
    Envelope::new(
        MESSAGE_FAILED,
        workspace_id,
        json!({ "message": question.to_json(), "reply": reply.to_json(), "reason": reason }),
    )
}
