//! Webhook signatures, as the Standard Webhooks specification defines them
//! (so any of its verifier libraries, or Svix's, accepts them): the HMAC-SHA256
//! of `"{id}.{timestamp}.{body}"` keyed with the base64-decoded part of a
//! `whsec_` secret, sent as `v1,<base64>`. Plus `X-Signature:
//! sha256=<hex>` over the raw body for receivers that want only that.
//!
//! Both are computed over the exact bytes sent.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 24 random bytes in base64.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// The key bytes of a `whsec_` secret.
pub fn key_bytes(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length")
}

/// One `v1,<base64>` signature of a message.
pub fn standard_signature(key: &[u8], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(format!("{message_id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether `header` (space-separated `v1,<base64>` signatures, as
/// `webhook-signature` carries them) holds the signature of the message
/// under one of `keys`. Each is compared in constant time; signatures of
/// other versions are passed over, as the specification asks.
pub fn verify_standard(keys: &[&[u8]], message_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let given: Vec<Vec<u8>> = header
        .split_ascii_whitespace()
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .collect();
    keys.iter().any(|key| {
        let mut signed = mac(key);
        signed.update(format!("{message_id}.{timestamp}.").as_bytes());
        signed.update(body);
        given
            .iter()
            .any(|signature| signed.clone().verify_slice(signature).is_ok())
    })
}

/// `sha256=<hex>` of the body alone.
pub fn body_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector_signs_as_specified() {
        let key = key_bytes("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let signature = standard_signature(
            &key,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn a_signature_verifies_under_its_key_only_and_among_others() {
        let key = key_bytes("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let good = "v2,abc v1,bm90IGl0 v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        assert!(verify_standard(
            &[&key],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            body,
            good
        ));
        assert!(!verify_standard(
            &[&key],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367554,
            body,
            good
        ));
        assert!(!verify_standard(
            &[b"other"],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            body,
            good
        ));
        assert!(!verify_standard(
            &[&key],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            body,
            "v1,"
        ));
    }

    #[test]
    fn new_secrets_carry_24_random_bytes() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(key_bytes(&secret).unwrap().len(), 24);
        assert_ne!(secret, generate_secret());
        assert!(key_bytes("not-a-secret").is_none());
    }

    #[test]
    fn the_body_signature_is_hex_hmac_of_the_body() {
        let sig = body_signature(b"key", b"The quick brown fox jumps over the lazy dog");
        // RFC 4231-style check value for HMAC-SHA256("key", fox sentence).
        assert_eq!(
            sig,
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
