//! Which conversations become Salesforce leads. integration-service
//! consumes `conversation.ended` and `message.received` from the events
//! exchange with a durable queue of its own. A conversation whose
//! `metadata.customer` gives a way to reach the customer (email or phone)
//! is queued as a lead, in the transaction that acknowledges the event:
//! for orgs that qualify leads by keywords, as soon as the visitor writes
//! one (and updated with the final summary when it ends); for the others,
//! when it ends.

use std::sync::Arc;

use event_pipeline::{
    BrokerSettings, Received, catalog,
    subscriber::{self, Handler, Queue, QueueKind},
};
use serde_json::{Value, json};
use service_runtime::error::ServiceError;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{chatbot::Chatbot, kinds::salesforce, store::salesforce_leads};

/// The service's queue on `exchange`.
pub fn queue_name(exchange: &str) -> String {
    format!("integration-service.{exchange}")
}

/// Consumes ended conversations and visitors' messages until `shutdown`;
/// the service is ready once the queue is bound.
pub fn consume(
    pool: PgPool,
    chatbot: Chatbot,
    broker: BrokerSettings,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> subscriber::Bound {
    let queue = Queue {
        name: queue_name(&broker.exchange),
        bindings: vec![catalog::CONVERSATION_ENDED.into(), catalog::MESSAGE_RECEIVED.into()],
        prefetch: 200,
        batch: 100,
        kind: QueueKind::Quorum,
    };
    subscriber::spawn(broker, queue, LeadQueue { pool, chatbot, wake }, shutdown)
}

struct LeadQueue {
    pool: PgPool,
    chatbot: Chatbot,
    wake: Arc<Notify>,
}

impl Handler for LeadQueue {
    type Error = ServiceError;

    async fn handle(&self, events: Vec<Received>) -> Result<(), ServiceError> {
        let mut tx = self.pool.begin().await?;
        let mut queued = self.qualify(&mut tx, &events).await?;
        for event in events.iter().filter(|e| e.event_type == catalog::CONVERSATION_ENDED) {
            let Ok(body) = serde_json::from_slice::<Value>(&event.body) else {
                continue;
            };
            let conversation = &body["data"]["conversation"];
            let (Some(id), Some(fields)) = (conversation["id"].as_str(), lead_fields(conversation, None)) else {
                continue;
            };
            queued += salesforce_leads::queue(&mut tx, &event.workspace_id, id, &fields).await?;
        }
        tx.commit().await?;
        if queued > 0 {
            self.wake.notify_one();
        }
        Ok(())
    }
}

impl LeadQueue {
    /// Queues a lead for each org whose keywords a visitor's message
    /// contains; how many.
    async fn qualify(&self, tx: &mut PgConnection, events: &[Received]) -> Result<u64, ServiceError> {
        let messages: Vec<(&str, Value)> = events
            .iter()
            .filter(|e| e.event_type == catalog::MESSAGE_RECEIVED)
            .filter_map(|e| Some((e.workspace_id.as_str(), serde_json::from_slice(&e.body).ok()?)))
            .collect();
        if messages.is_empty() {
            return Ok(0);
        }
        let mut workspaces: Vec<String> = messages.iter().map(|(w, _)| (*w).to_owned()).collect();
        workspaces.sort_unstable();
        workspaces.dedup();
        let orgs = salesforce_leads::keyword_orgs(&mut *tx, &workspaces).await?;
        let mut queued = 0;
        for (workspace_id, body) in &messages {
            let message = &body["data"]["message"];
            let text = message["content"].as_str().unwrap_or_default();
            let qualified: Vec<(String, String)> = orgs
                .iter()
                .filter(|(w, _, _)| w == workspace_id)
                .filter_map(|(_, org, keywords)| {
                    let keyword = salesforce::qualifying_keyword(keywords, text)?;
                    Some((org.clone(), keyword.to_owned()))
                })
                .collect();
            let Some(conversation_id) = message["conversation_id"].as_str().filter(|_| !qualified.is_empty()) else {
                continue;
            };
            queued += self
                .queue_qualified(tx, workspace_id, conversation_id, &qualified)
                .await?;
        }
        Ok(queued)
    }

    async fn queue_qualified(
        &self,
        tx: &mut PgConnection,
        workspace_id: &str,
        conversation_id: &str,
        qualified: &[(String, String)],
    ) -> Result<u64, ServiceError> {
        let conversation = self
            .chatbot
            .conversation(workspace_id, conversation_id)
            .await
            .map_err(|error| ServiceError::Unavailable(format!("reading a qualified conversation: {error}")))?;
        let Some(conversation) = conversation.map(conversation_json) else {
            return Ok(0);
        };
        let Some(fields) = lead_fields(&conversation, Some(&qualified[0].1)) else {
            return Ok(0);
        };
        let orgs: Vec<String> = qualified.iter().map(|(org, _)| org.clone()).collect();
        salesforce_leads::queue_qualified(tx, workspace_id, conversation_id, &fields, &orgs).await
    }
}

/// A conversation as its events show it.
fn conversation_json(conversation: proto::chatbot::v1::Conversation) -> Value {
    let metadata = service_runtime::proto_json::struct_to_json("metadata", conversation.metadata, usize::MAX)
        .unwrap_or(Value::Null);
    json!({
        "id": conversation.id, "channel": conversation.channel, "message_count": conversation.message_count,
        "metadata": metadata,
    })
}

/// The lead a conversation makes: its customer's name, contact and
/// company, and what happened (it ended, or the visitor wrote `keyword`);
/// `None` when the customer cannot be reached.
fn lead_fields(conversation: &Value, keyword: Option<&str>) -> Option<Value> {
    let customer = &conversation["metadata"]["customer"];
    let text = |key: &str| customer[key].as_str().map(str::trim).filter(|v| !v.is_empty());
    let (email, phone) = (text("email"), text("phone"));
    if email.is_none() && phone.is_none() {
        return None;
    }
    let name = text("name").unwrap_or_default();
    let (first, last) = match name.rsplit_once(' ') {
        Some((first, last)) => (Some(first.trim()), last),
        None if !name.is_empty() => (None, name),
        // Salesforce requires a last name.
        None => (None, email.or(phone).unwrap_or_default()),
    };
    let id = conversation["id"].as_str().unwrap_or_default();
    let channel = conversation["channel"].as_str().unwrap_or("an unknown channel");
    let description = match keyword {
        Some(keyword) => {
            format!("Chat conversation {id} on {channel}, qualified when the visitor wrote \"{keyword}\".")
        }
        None => format!(
            "Chat conversation {id} on {channel} with {} messages, ended {}.",
            conversation["message_count"].as_i64().unwrap_or(0),
            conversation["last_activity"].as_str().unwrap_or_default(),
        ),
    };
    Some(json!({
        "FirstName": first, "LastName": last, "Email": email, "Phone": phone,
        // Salesforce requires a company.
        "Company": text("company").unwrap_or("Not provided"),
        "LeadSource": "Chat", "Description": description,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lead_names_the_customer_and_what_happened() {
        let conversation = json!({"id": "conv_1", "channel": "web", "message_count": 4,
            "metadata": {"customer": {"name": "Ann Marie Lee", "email": "ann@example.com"}}});
        let lead = lead_fields(&conversation, None).unwrap();
        assert_eq!(
            (lead["FirstName"].as_str(), lead["LastName"].as_str()),
            (Some("Ann Marie"), Some("Lee"))
        );
        assert_eq!(lead["Company"], "Not provided");
        assert!(
            lead["Description"]
                .as_str()
                .unwrap()
                .contains("conv_1 on web with 4 messages")
        );
        let unnamed = lead_fields(
            &json!({"metadata": {"customer": {"phone": "+1 555 0100"}}}),
            Some("quote"),
        )
        .unwrap();
        assert_eq!(unnamed["LastName"], "+1 555 0100");
        assert!(
            unnamed["Description"]
                .as_str()
                .unwrap()
                .contains("qualified when the visitor wrote \"quote\"")
        );
        assert_eq!(
            lead_fields(&json!({"metadata": {"customer": {"name": "Ann"}}}), None),
            None
        );
        assert_eq!(lead_fields(&json!({"metadata": {}}), None), None);
    }
}
