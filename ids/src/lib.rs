//! Every resource id of the platform, in one place: a prefix naming the
//! kind (`conv_`, `bot_`, `evt_`, …) and a random lowercase alphanumeric
//! suffix. Each kind is its own type, so an endpoint id can never be passed
//! where a delivery id is expected, and each is parsed and printed here
//! only.
//!
//! Not for secrets: API keys, client secrets and webhook signing secrets
//! are key material, made by the code that owns their format.

use std::fmt;

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Random characters after the prefix: about 103 bits.
const SUFFIX_LEN: usize = 20;
/// Longest suffix a caller-supplied id may have.
const MAX_SUFFIX_LEN: usize = 64;

/// Why a caller-supplied id names nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The field was empty.
    #[error("{field}: is required")]
    Missing { field: &'static str },
    /// Not an id of this kind. A malformed id cannot name any resource, so
    /// callers answer NOT_FOUND, giving away nothing about what exists.
    #[error("{kind} {value} not found")]
    Unknown { kind: &'static str, value: String },
}

/// `len` random characters of `[0-9a-z]`.
pub fn random_suffix(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn well_formed(prefix: &str, value: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| {
        (1..=MAX_SUFFIX_LEN).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal, $len:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            /// What the resource is called in messages (`"{KIND} {id} not found"`).
            pub const KIND: &'static str = $kind;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_suffix($len)))
            }

            /// Parses a caller-supplied id for request field `field`.
            pub fn parse(field: &'static str, value: &str) -> Result<Self, IdError> {
                if value.is_empty() {
                    return Err(IdError::Missing { field });
                }
                if well_formed($prefix, value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(IdError::Unknown {
                        kind: $kind,
                        value: value.to_owned(),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

// The gateway's own resources.
prefixed_id!(WorkspaceId, "ws_", "workspace", SUFFIX_LEN);
prefixed_id!(ApiKeyId, "key_", "API key", SUFFIX_LEN);
prefixed_id!(OAuthClientId, "cli_", "OAuth client", SUFFIX_LEN);
prefixed_id!(
    /// The refresh tokens descended from one authorization: replaying a
    /// rotated one revokes the whole family.
    GrantFamilyId,
    "fam_",
    "grant",
    SUFFIX_LEN
);

// chatbot-service.
prefixed_id!(ConversationId, "conv_", "conversation", SUFFIX_LEN);
prefixed_id!(MessageId, "msg_", "message", SUFFIX_LEN);
prefixed_id!(BotId, "bot_", "bot", SUFFIX_LEN);
prefixed_id!(TrainingJobId, "job_", "training job", SUFFIX_LEN);
prefixed_id!(KnowledgeItemId, "kn_", "knowledge item", SUFFIX_LEN);

// integration-service.
prefixed_id!(IntegrationId, "int_", "integration", SUFFIX_LEN);
prefixed_id!(
    /// One reconciliation of a connection with its store.
    SyncRunId,
    "sync_",
    "sync run",
    SUFFIX_LEN
);

// The event pipeline and webhook-dispatcher.
prefixed_id!(
    /// An event's id: the Standard Webhooks `webhook-id` of every delivery
    /// of it, so receivers can deduplicate.
    EventId,
    "evt_",
    "event",
    24
);
prefixed_id!(EndpointId, "ep_", "endpoint", SUFFIX_LEN);
prefixed_id!(
    /// One event bound for one endpoint: the `X-Idempotency-Key` of every
    /// attempt to deliver it.
    DeliveryId,
    "dlv_",
    "delivery",
    SUFFIX_LEN
);
prefixed_id!(
    /// A replay of an endpoint's events, running in the background.
    ReplayId,
    "rpl_",
    "replay",
    SUFFIX_LEN
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_parse_back() {
        let id = ConversationId::generate();
        assert!(id.as_str().starts_with("conv_"));
        assert_eq!(id.as_str().len(), "conv_".len() + SUFFIX_LEN);
        assert_eq!(ConversationId::parse("conversation_id", id.as_str()).unwrap(), id);
        assert_eq!(EventId::generate().as_str().len(), "evt_".len() + 24);
        assert_ne!(BotId::generate(), BotId::generate());
    }

    #[test]
    fn an_id_of_another_kind_is_unknown_not_invalid() {
        let bot = BotId::generate();
        assert_eq!(
            ConversationId::parse("conversation_id", bot.as_str()),
            Err(IdError::Unknown {
                kind: "conversation",
                value: bot.into_string()
            })
        );
        assert!(matches!(
            EndpointId::parse("endpoint_id", "ep_../../etc"),
            Err(IdError::Unknown { .. })
        ));
        assert!(matches!(
            EndpointId::parse("endpoint_id", &format!("ep_{}", "a".repeat(65))),
            Err(IdError::Unknown { .. })
        ));
    }

    #[test]
    fn an_empty_id_names_the_missing_field() {
        assert_eq!(
            MessageId::parse("message_id", ""),
            Err(IdError::Missing { field: "message_id" })
        );
    }

    #[test]
    fn ids_serialise_as_their_text() {
        let id = DeliveryId::parse("delivery_id", "dlv_abc").unwrap();
        assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!("dlv_abc"));
    }
}
