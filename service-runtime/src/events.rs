//! The one envelope every event travels in:
//! `{"id": "evt_…", "event": "message.received", "timestamp": RFC 3339,
//!   "version": "1.0", "workspace_id": …, "data": {…}}`.
//!
//! The envelope is serialised once, when the event is recorded; the same
//! bytes are published, delivered and signed, never re-serialised.

use rand::Rng;
use serde_json::{Value, json};

pub const VERSION: &str = "1.0";

/// An event ready to record: its id, type and exact bytes.
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    pub workspace_id: String,
    pub body: Vec<u8>,
}

impl Envelope {
    pub fn new(event_type: &str, workspace_id: &str, data: Value) -> Self {
        let id = new_event_id();
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
        }
    }
}

fn new_event_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..24)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("evt_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_carries_the_standard_fields() {
        let envelope = Envelope::new("message.received", "ws_1", json!({"message_id": "msg_1"}));
        let parsed: Value = serde_json::from_slice(&envelope.body).unwrap();
        assert_eq!(parsed["id"], envelope.id.as_str());
        assert!(envelope.id.starts_with("evt_"));
        assert_eq!(parsed["event"], "message.received");
        assert_eq!(parsed["version"], "1.0");
        assert_eq!(parsed["workspace_id"], "ws_1");
        assert_eq!(parsed["data"]["message_id"], "msg_1");
        assert!(chrono::DateTime::parse_from_rfc3339(parsed["timestamp"].as_str().unwrap()).is_ok());
    }
}
