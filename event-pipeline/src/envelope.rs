//! The one envelope every event travels in:
//! `{"id": "evt_…", "event": "message.received", "timestamp": RFC 3339,
//!   "version": "1.0", "workspace_id": …, "data": {…}}`.
//!
//! The envelope is serialised once, when the event is recorded; the same
//! bytes are published, delivered and signed, never re-serialised.

use ids::EventId;
use serde::Deserialize;
use serde_json::{Value, json};

pub const VERSION: &str = "1.0";

/// An event ready to record: its id, type and exact bytes.
pub struct Envelope {
    pub id: EventId,
    pub event_type: String,
    pub workspace_id: String,
    pub body: Vec<u8>,
    /// The span the change was made in, when traces are exported: the
    /// event's publication and processing join the same trace.
    pub traceparent: Option<String>,
}

impl Envelope {
    pub fn new(event_type: &str, workspace_id: &str, data: Value) -> Self {
        let id = EventId::generate();
        let body = json!({
            "id": id,
            "event": event_type,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "version": VERSION,
            "workspace_id": workspace_id,
            "data": data,
        });
        Self {
            id,
            event_type: event_type.to_owned(),
            workspace_id: workspace_id.to_owned(),
            body: serde_json::to_vec(&body).expect("a JSON value always serialises"),
            traceparent: service_runtime::telemetry::propagation::current(),
        }
    }
}

/// An event as a consumer receives it: the envelope's fields it routes by,
/// and the exact bytes it came as.
#[derive(Debug)]
pub struct Received {
    pub id: EventId,
    pub event_type: String,
    pub workspace_id: String,
    pub data: Value,
    pub body: Vec<u8>,
    /// When the producer recorded it (the envelope's `timestamp`).
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its position, when it was read from a stream.
    pub offset: Option<u64>,
    /// The publishing span, from the message's `traceparent` header.
    pub traceparent: Option<String>,
}

#[derive(Deserialize)]
struct Head {
    id: String,
    #[serde(default)]
    timestamp: Option<String>,
    event: String,
    workspace_id: String,
    #[serde(default)]
    data: Value,
}

impl Received {
    /// Parses a message body; the error says why it is not an event.
    pub fn parse(body: Vec<u8>) -> Result<Self, String> {
        let head: Head = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let id = EventId::parse("id", &head.id).map_err(|e| e.to_string())?;
        Ok(Self {
            id,
            event_type: head.event,
            workspace_id: head.workspace_id,
            data: head.data,
            body,
            occurred_at: head
                .timestamp
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.to_utc()),
            offset: None,
            traceparent: None,
        })
    }

    /// The conversation the event is about, if any.
    pub fn conversation_id(&self) -> Option<&str> {
        self.data["conversation"]["id"]
            .as_str()
            .or_else(|| self.data["message"]["conversation_id"].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_carries_the_standard_fields() {
        let envelope = Envelope::new("message.received", "ws_1", json!({"message_id": "msg_1"}));
        let parsed: Value = serde_json::from_slice(&envelope.body).unwrap();
        assert_eq!(parsed["id"], envelope.id.as_str());
        assert!(envelope.id.as_str().starts_with("evt_"));
        assert_eq!(parsed["event"], "message.received");
        assert_eq!(parsed["version"], "1.0");
        assert_eq!(parsed["workspace_id"], "ws_1");
        assert_eq!(parsed["data"]["message_id"], "msg_1");
        assert!(chrono::DateTime::parse_from_rfc3339(parsed["timestamp"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn a_consumer_reads_back_what_was_recorded_byte_for_byte() {
        let envelope = Envelope::new(
            "message.sent",
            "ws_1",
            json!({"message": {"conversation_id": "conv_1"}}),
        );
        let received = Received::parse(envelope.body.clone()).unwrap();
        assert_eq!(received.id, envelope.id);
        assert_eq!(received.event_type, "message.sent");
        assert_eq!(received.workspace_id, "ws_1");
        assert_eq!(received.conversation_id(), Some("conv_1"));
        assert!(
            received
                .occurred_at
                .is_some_and(|at| (chrono::Utc::now() - at).num_seconds() < 60)
        );
        assert_eq!(received.body, envelope.body);
    }

    #[test]
    fn bodies_that_are_not_events_say_why() {
        assert!(Received::parse(b"not json".to_vec()).is_err());
        let foreign_id = br#"{"id": "123", "event": "x", "workspace_id": "ws_1"}"#.to_vec();
        assert!(Received::parse(foreign_id).unwrap_err().contains("event 123"));
    }
}
