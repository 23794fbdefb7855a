//! The secrets calls are authenticated with: one per (caller, callee) pair,
//! from `PLATFORM_CALL_KEYS`.
//!
//! The variable lists `caller>callee:base64-of-32-bytes` entries. A process
//! uses the entries that name it and ignores the rest, so one list can serve
//! a local stack, while a cluster gives each service only its own (a
//! service holding the gateway's key to another service could speak for any
//! workspace there). Listing a pair twice rotates its key: the first signs,
//! both verify.

use std::{collections::HashMap, fmt, str::FromStr};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub(crate) type CallMac = Hmac<Sha256>;

const MIN_KEY_LEN: usize = 32;

/// The components that call one another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    Gateway,
    Chatbot,
    Integration,
    Analytics,
    Webhooks,
}

impl Party {
    pub const ALL: [Party; 5] = [
        Party::Gateway,
        Party::Chatbot,
        Party::Integration,
        Party::Analytics,
        Party::Webhooks,
    ];

    /// Every call the platform makes, as (caller, callee).
    pub const CALLS: [(Party, Party); 7] = [
        (Party::Gateway, Party::Chatbot),
        (Party::Gateway, Party::Integration),
        (Party::Gateway, Party::Analytics),
        (Party::Gateway, Party::Webhooks),
        (Party::Integration, Party::Chatbot),
        (Party::Chatbot, Party::Integration),
        (Party::Analytics, Party::Chatbot),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Party::Gateway => "gateway",
            Party::Chatbot => "chatbot",
            Party::Integration => "integration",
            Party::Analytics => "analytics",
            Party::Webhooks => "webhooks",
        }
    }
}

impl FromStr for Party {
    type Err = ();

    fn from_str(name: &str) -> Result<Self, ()> {
        Party::ALL.into_iter().find(|p| p.name() == name).ok_or(())
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallKeysError {
    #[error("{0:?} is not caller>callee:base64-of-32-bytes")]
    Malformed(String),
    #[error("{0:?} is not one of gateway, chatbot, integration, analytics, webhooks")]
    UnknownParty(String),
    #[error("the key for {0} is not base64 of at least 32 bytes (generate one with `openssl rand -base64 32`)")]
    BadKey(String),
    #[error("no key lets {callee} check calls from {caller}: add {caller}>{callee}:<key> to PLATFORM_CALL_KEYS")]
    MissingVerifier { caller: Party, callee: Party },
    #[error("no key lets {caller} call {callee}: add {caller}>{callee}:<key> to PLATFORM_CALL_KEYS")]
    MissingSigner { caller: Party, callee: Party },
}

/// The keys one component signs its calls and checks its callers with.
#[derive(Clone)]
pub struct CallKeys {
    me: Party,
    /// Per callee, the key this component signs with.
    signing: HashMap<Party, CallMac>,
    /// Per caller, every key a call from it may carry.
    checking: HashMap<Party, Vec<CallMac>>,
}

impl fmt::Debug for CallKeys {
    /// Names the pairs, never the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallKeys")
            .field("me", &self.me)
            .field("calls", &self.signing.keys().collect::<Vec<_>>())
            .field("called_by", &self.checking.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CallKeys {
    /// The entries of `text` that name `me`.
    pub fn parse(me: Party, text: &str) -> Result<Self, CallKeysError> {
        let mut keys = Self {
            me,
            signing: HashMap::new(),
            checking: HashMap::new(),
        };
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (caller, callee, mac) = parse_entry(entry)?;
            if caller == me {
                keys.signing.entry(callee).or_insert_with(|| mac.clone());
            }
            if callee == me {
                keys.checking.entry(caller).or_default().push(mac);
            }
        }
        Ok(keys)
    }

    /// Fails unless this component can make every call the platform has it
    /// make and check every caller the platform has call it.
    pub fn require_platform_calls(self) -> Result<Self, CallKeysError> {
        for (caller, callee) in Party::CALLS {
            if caller == self.me && !self.signing.contains_key(&callee) {
                return Err(CallKeysError::MissingSigner { caller, callee });
            }
            if callee == self.me && !self.checking.contains_key(&caller) {
                return Err(CallKeysError::MissingVerifier { caller, callee });
            }
        }
        Ok(self)
    }

    pub fn me(&self) -> Party {
        self.me
    }

    pub(crate) fn signer(&self, callee: Party) -> Option<&CallMac> {
        self.signing.get(&callee)
    }

    pub(crate) fn checkers(&self, caller: Party) -> &[CallMac] {
        self.checking.get(&caller).map_or(&[], Vec::as_slice)
    }
}

fn parse_entry(entry: &str) -> Result<(Party, Party, CallMac), CallKeysError> {
    let malformed = || CallKeysError::Malformed(entry.chars().take(40).collect());
    let (pair, key) = entry.split_once(':').ok_or_else(malformed)?;
    let (caller, callee) = pair.split_once('>').ok_or_else(malformed)?;
    let party = |name: &str| {
        let name = name.trim();
        name.parse::<Party>()
            .map_err(|()| CallKeysError::UnknownParty(name.to_owned()))
    };
    let (caller, callee) = (party(caller)?, party(callee)?);
    let bytes = STANDARD
        .decode(key.trim())
        .ok()
        .filter(|k| k.len() >= MIN_KEY_LEN)
        .ok_or_else(|| CallKeysError::BadKey(format!("{caller}>{callee}")))?;
    let mac = CallMac::new_from_slice(&bytes).expect("HMAC takes keys of any length");
    Ok((caller, callee, mac))
}

/// A fresh `PLATFORM_CALL_KEYS` value with a random key for every call the
/// platform makes: for local stacks and tests, which hand it to every
/// component.
pub fn generate() -> String {
    let mut rng = rand::thread_rng();
    Party::CALLS
        .iter()
        .map(|(caller, callee)| {
            let mut key = [0u8; MIN_KEY_LEN];
            rng.fill_bytes(&mut key);
            format!("{caller}>{callee}:{}", STANDARD.encode(key))
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_keeps_only_the_pairs_naming_it() {
        let text = generate();
        let chatbot = CallKeys::parse(Party::Chatbot, &text).unwrap();
        let mut callers: Vec<_> = chatbot.checking.keys().map(|p| p.name()).collect();
        callers.sort();
        assert_eq!(callers, ["analytics", "gateway", "integration"]);
        assert!(chatbot.signer(Party::Integration).is_some());
        assert!(chatbot.signer(Party::Webhooks).is_none());
        assert!(chatbot.require_platform_calls().is_ok());
    }

    #[test]
    fn a_missing_pair_is_named() {
        let text = generate().replace("gateway>webhooks", "gateway>analytics");
        let error = CallKeys::parse(Party::Webhooks, &text)
            .unwrap()
            .require_platform_calls()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no key lets webhooks check calls from gateway: add gateway>webhooks:<key> to PLATFORM_CALL_KEYS"
        );
    }

    #[test]
    fn bad_entries_are_refused_without_echoing_keys() {
        let short = format!("gateway>chatbot:{}", STANDARD.encode([7u8; 16]));
        assert_eq!(
            CallKeys::parse(Party::Chatbot, &short).unwrap_err(),
            CallKeysError::BadKey("gateway>chatbot".into())
        );
        assert!(matches!(
            CallKeys::parse(Party::Chatbot, "gateway>bank:AAAA"),
            Err(CallKeysError::UnknownParty(p)) if p == "bank"
        ));
        assert!(matches!(
            CallKeys::parse(Party::Chatbot, "gateway-chatbot"),
            Err(CallKeysError::Malformed(_))
        ));
        let debug = format!("{:?}", CallKeys::parse(Party::Chatbot, &generate()).unwrap());
        assert!(!debug.contains('='), "{debug}");
    }
}
