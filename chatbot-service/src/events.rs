//! The events this service emits and what their `data` holds, built from
//! the rows the store returns. Callers record them in the transaction (or
//! statement) of the change they describe.

use event_pipeline::{Envelope, catalog};
use ids::{BotId, TrainingJobId};
use serde_json::{Value, json};

use crate::store::{conversations::ConversationRow, messages::MessageRow};

fn to_json(row: &impl serde::Serialize) -> Value {
    serde_json::to_value(row).expect("rows serialise to JSON")
}

pub fn conversation_started(workspace_id: &str, row: &ConversationRow) -> Envelope {
    Envelope::new(
        catalog::CONVERSATION_STARTED,
        workspace_id,
        json!({ "conversation": to_json(row) }),
    )
}

/// `conversation.updated` listing the fields that changed, and
/// `conversation.ended` when the change ended it; none when nothing changed.
pub fn conversation_changed(workspace_id: &str, before: &ConversationRow, after: &ConversationRow) -> Vec<Envelope> {
    let mut changes = Vec::new();
    if before.status != after.status {
        changes.push(change("status", json!(before.status), json!(after.status)));
    }
    if before.channel != after.channel {
        changes.push(change("channel", json!(before.channel), json!(after.channel)));
    }
    if before.metadata != after.metadata {
        changes.push(change("metadata", before.metadata.clone(), after.metadata.clone()));
    }
    if changes.is_empty() {
        return Vec::new();
    }
    let conversation = to_json(after);
    let mut events = vec![Envelope::new(
        catalog::CONVERSATION_UPDATED,
        workspace_id,
        json!({ "conversation": conversation, "changes": changes }),
    )];
    if after.status != before.status && after.status == crate::model::ConversationStatus::Ended.as_str() {
        events.push(Envelope::new(
            catalog::CONVERSATION_ENDED,
            workspace_id,
            json!({ "conversation": conversation }),
        ));
    }
    events
}

fn change(field: &str, old_value: Value, new_value: Value) -> Value {
    json!({ "field": field, "old_value": old_value, "new_value": new_value })
}

/// `message.received` for what users send, `message.sent` for what the bot
/// or an agent sends; system notes are not announced.
pub fn message(workspace_id: &str, row: &MessageRow) -> Option<Envelope> {
    let event_type = match row.role.as_str() {
        "user" => catalog::MESSAGE_RECEIVED,
        "bot" | "agent" => catalog::MESSAGE_SENT,
        _ => return None,
    };
    Some(Envelope::new(
        event_type,
        workspace_id,
        json!({ "message": to_json(row) }),
    ))
}

/// `message.failed`: the bot could not answer `question`; `reply` is the
/// fallback it sent instead.
pub fn message_failed(workspace_id: &str, question: &MessageRow, reply: &MessageRow, reason: &str) -> Envelope {
    Envelope::new(
        catalog::MESSAGE_FAILED,
        workspace_id,
        json!({ "message": to_json(question), "reply": to_json(reply), "reason": reason }),
    )
}

pub fn bot_deployed(workspace_id: &str, bot_id: &BotId, version: i32, previous_version: i32) -> Envelope {
    Envelope::new(
        catalog::BOT_DEPLOYED,
        workspace_id,
        json!({ "bot_id": bot_id, "version": version, "previous_version": previous_version }),
    )
}

pub fn bot_trained(
    workspace_id: &str,
    bot_id: &BotId,
    job_id: &TrainingJobId,
    version: i32,
    passages: i64,
) -> Envelope {
    Envelope::new(
        catalog::BOT_TRAINED,
        workspace_id,
        json!({ "bot_id": bot_id, "job_id": job_id, "version": version, "passages": passages }),
    )
}

/// `bot.error`: training failed for `reason`.
pub fn bot_error(workspace_id: &str, bot_id: &BotId, job_id: &TrainingJobId, version: i32, reason: &str) -> Envelope {
    Envelope::new(
        catalog::BOT_ERROR,
        workspace_id,
        json!({ "bot_id": bot_id, "job_id": job_id, "version": version, "reason": reason }),
    )
}
