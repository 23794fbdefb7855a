//! Secrets a workspace gives the platform (database passwords, vendor
//! tokens), sealed at rest with AES-256-GCM under keys from configuration.
//!
//! Every ciphertext names the key that sealed it, so keys rotate without a
//! migration: new secrets are sealed with the active key, and older ones
//! still open with theirs for as long as it is configured. Every
//! ciphertext is also bound to its owner (the workspace and the row it
//! belongs to, as associated data): copied into another workspace's row,
//! or read back for another one, it does not open. A database dump alone
//! reveals nothing.
//!
//! A sealed secret is `s1 | key id length | key id | nonce | ciphertext`.

pub mod webhook_signature;

use std::collections::HashMap;

use aes_gcm::{
    Aes256Gcm, Key, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use rand::RngCore;

const FORMAT: &[u8] = b"s1";
const NONCE_LEN: usize = 12;
const MAX_KEY_ID_LEN: usize = 32;

/// The keys secrets are sealed and opened with.
#[derive(Clone)]
pub struct Keyring {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for Keyring {
    /// Names the keys, never their bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("keys", &ids)
            .finish()
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("no keys: list them as id:base64-of-32-bytes, comma-separated, the active one first")]
    Empty,
    #[error("{0:?} is not id:base64-of-32-bytes")]
    Malformed(String),
    #[error("key id {0:?} must be 1 to {MAX_KEY_ID_LEN} letters, digits, '-' or '_'")]
    BadId(String),
    #[error("key {0:?} is not base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)")]
    BadKey(String),
    #[error("key id {0:?} is listed twice")]
    Repeated(String),
}

/// Why a sealed secret did not open. Deliberately vague: whether the key
/// is missing, the bytes were altered or the owner differs is not for
/// whoever asked to learn.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the secret was sealed with key {0:?}, which is no longer configured")]
    UnknownKey(String),
    #[error("the secret cannot be opened here (altered, or sealed for another owner)")]
    Refused,
}

impl Keyring {
    /// Parses `id:base64,id:base64,…`; the first key is the one that seals.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut active = None;
        let mut keys = HashMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, key) = entry
                .split_once(':')
                .ok_or_else(|| KeyringError::Malformed(entry.split(':').next().unwrap_or_default().to_owned()))?;
            let id = id.trim();
            if id.is_empty()
                || id.len() > MAX_KEY_ID_LEN
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(KeyringError::BadId(id.to_owned()));
            }
            let bytes = STANDARD
                .decode(key.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| KeyringError::BadKey(id.to_owned()))?;
            if keys.insert(id.to_owned(), cipher(&bytes)).is_some() {
                return Err(KeyringError::Repeated(id.to_owned()));
            }
            active.get_or_insert_with(|| id.to_owned());
        }
        let active = active.ok_or(KeyringError::Empty)?;
        Ok(Self { active, keys })
    }

    /// One key, for tests and local runs only.
    pub fn single(id: &str, key: &[u8; 32]) -> Self {
        Self {
            active: id.to_owned(),
            keys: HashMap::from([(id.to_owned(), cipher(key))]),
        }
    }

    /// The id of the key new secrets are sealed with.
    pub fn active(&self) -> &str {
        &self.active
    }

    /// Seals `secret` for `owner` (the workspace and row it belongs to).
    pub fn seal(&self, secret: &[u8], owner: &[&str]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(owner);
        let sealed = self.keys[&self.active]
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret, aad: &aad })
            .expect("AES-GCM encryption of a short secret cannot fail");
        let id = self.active.as_bytes();
        [FORMAT, &[id.len() as u8], id, &nonce, &sealed].concat()
    }

    /// Opens a secret sealed for `owner`.
    pub fn open(&self, sealed: &[u8], owner: &[&str]) -> Result<Vec<u8>, OpenError> {
        let (id, nonce, ciphertext) = split(sealed).ok_or(OpenError::Refused)?;
        let key = self.keys.get(id).ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let aad = associated_data(owner);
        key.decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError::Refused)
    }

    /// The id of the key that sealed `sealed`, to find what a rotation must
    /// re-seal.
    pub fn key_id(sealed: &[u8]) -> Option<&str> {
        split(sealed).map(|(id, _, _)| id)
    }
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
}

/// The owner's parts, each prefixed with its length so that no two
/// different owners give the same bytes.
fn associated_data(owner: &[&str]) -> Vec<u8> {
    let mut aad = Vec::new();
    for part in owner {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Key id, nonce and ciphertext of a sealed secret.
fn split(sealed: &[u8]) -> Option<(&str, &[u8], &[u8])> {
    let rest = sealed.strip_prefix(FORMAT)?;
    let (&id_len, rest) = rest.split_first()?;
    let id_len = usize::from(id_len);
    if rest.len() < id_len + NONCE_LEN {
        return None;
    }
    let (id, rest) = rest.split_at(id_len);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    Some((std::str::from_utf8(id).ok()?, nonce, ciphertext))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &[&str] = &["ws_1", "int_1"];

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn a_sealed_secret_opens_for_its_owner_and_is_not_stored_in_clear() {
        let keys = Keyring::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed = keys.seal(b"hunter2", OWNER);
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(keys.open(&sealed, OWNER).unwrap(), b"hunter2");
        assert_eq!(Keyring::key_id(&sealed), Some("k1"));
    }

    #[test]
    fn another_owner_cannot_open_it() {
        let keys = Keyring::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed = keys.seal(b"hunter2", OWNER);
        assert_eq!(keys.open(&sealed, &["ws_2", "int_1"]), Err(OpenError::Refused));
        // Length prefixes keep ("ws_1i", "nt_1") from meaning ("ws_1", "int_1").
        assert_eq!(keys.open(&sealed, &["ws_1i", "nt_1"]), Err(OpenError::Refused));
    }

    #[test]
    fn after_a_rotation_old_secrets_still_open_and_new_ones_use_the_new_key() {
        let old = Keyring::parse(&format!("k1:{}", key(1))).unwrap();
        let sealed_before = old.seal(b"old", OWNER);
        let rotated = Keyring::parse(&format!("k2:{}, k1:{}", key(2), key(1))).unwrap();
        assert_eq!(rotated.open(&sealed_before, OWNER).unwrap(), b"old");
        let sealed_after = rotated.seal(b"new", OWNER);
        assert_eq!(Keyring::key_id(&sealed_after), Some("k2"));
        let retired = Keyring::parse(&format!("k2:{}", key(2))).unwrap();
        assert_eq!(
            retired.open(&sealed_before, OWNER),
            Err(OpenError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn altered_bytes_do_not_open() {
        let keys = Keyring::parse(&format!("k1:{}", key(1))).unwrap();
        let mut sealed = keys.seal(b"hunter2", OWNER);
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(keys.open(&sealed, OWNER), Err(OpenError::Refused));
        assert_eq!(keys.open(b"s1", OWNER), Err(OpenError::Refused));
        assert_eq!(keys.open(b"nonsense", OWNER), Err(OpenError::Refused));
    }

    #[test]
    fn bad_key_lists_say_what_is_wrong_without_the_key() {
        assert_eq!(Keyring::parse("").unwrap_err(), KeyringError::Empty);
        assert_eq!(
            Keyring::parse("k1:c2hvcnQ=").unwrap_err(),
            KeyringError::BadKey("k1".into())
        );
        assert_eq!(Keyring::parse("k1").unwrap_err(), KeyringError::Malformed("k1".into()));
        assert_eq!(
            Keyring::parse(&format!("a b:{}", key(1))).unwrap_err(),
            KeyringError::BadId("a b".into())
        );
        assert_eq!(
            Keyring::parse(&format!("k1:{},k1:{}", key(1), key(2))).unwrap_err(),
            KeyringError::Repeated("k1".into())
        );
        let keys = Keyring::parse(&format!("k1:{}", key(1))).unwrap();
        assert!(!format!("{keys:?}").contains(&key(1)));
    }
}
