//! Typed, prefixed resource ids (`conv_…`, `msg_…`, `bot_…`, `job_…`, `kn_…`),
//! parsed and printed in this one place.

use std::fmt;

use rand::Rng;

use crate::error::{Error, Result};

const ID_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 20;

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $kind:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        // Not every id type uses every helper.
        #[allow(dead_code)]
        impl $name {
            pub const KIND: &'static str = $kind;

            pub fn generate() -> Self {
                Self(generate($prefix))
            }

            /// Parses a caller-supplied id. A malformed id cannot name any
            /// resource, so it is NOT_FOUND (not a hint about what exists).
            pub fn parse(field: &'static str, value: &str) -> Result<Self> {
                if value.is_empty() {
                    return Err(Error::invalid(field, "is required"));
                }
                if well_formed($prefix, value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(Error::not_found($kind, value))
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
    };
}

prefixed_id!(ConversationId, "conv_", "conversation");
prefixed_id!(MessageId, "msg_", "message");
prefixed_id!(BotId, "bot_", "bot");
prefixed_id!(JobId, "job_", "training job");
prefixed_id!(KnowledgeItemId, "kn_", "knowledge item");

fn generate(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(prefix.len() + RANDOM_LEN);
    id.push_str(prefix);
    for _ in 0..RANDOM_LEN {
        id.push(ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())] as char);
    }
    id
}

fn well_formed(prefix: &str, value: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| {
        (1..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_parse_back() {
        let id = ConversationId::generate();
        assert!(id.as_str().starts_with("conv_"));
        assert_eq!(ConversationId::parse("conversation_id", id.as_str()).unwrap(), id);
    }

    #[test]
    fn an_id_of_another_kind_is_not_found() {
        let bot = BotId::generate();
        assert!(matches!(
            ConversationId::parse("conversation_id", bot.as_str()),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn an_empty_id_is_an_invalid_argument() {
        assert!(matches!(
            MessageId::parse("message_id", ""),
            Err(Error::InvalidArgument { field, .. }) if field == "message_id"
        ));
    }
}
