//! Shopify's webhooks as they arrive: which topics a connection subscribes
//! to, the headers every delivery carries, and its signature:
//! `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of the exact body
//! bytes under the app's client secret.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Topics a connection subscribes to when it connects.
pub const TOPICS: &[&str] = &[
    "orders/create",
    "orders/updated",
    "products/create",
    "products/update",
    "products/delete",
    "inventory_levels/update",
    "app/uninstalled",
];

/// Topics Shopify sends every app without a subscription: the privacy
/// requests it must honour.
pub const PRIVACY_TOPICS: &[&str] = &["customers/data_request", "customers/redact", "shop/redact"];

const SIGNATURE: &str = "x-shopify-hmac-sha256";
const TOPIC: &str = "x-shopify-topic";
const WEBHOOK_ID: &str = "x-shopify-webhook-id";
const SHOP: &str = "x-shopify-shop-domain";
const TRIGGERED_AT: &str = "x-shopify-triggered-at";

/// What a delivery's headers say about it.
#[derive(Debug)]
pub struct Delivery {
    pub webhook_id: String,
    pub topic: String,
    pub shop: String,
    /// When Shopify produced it: older news never overwrites newer.
    pub triggered_at: DateTime<Utc>,
    /// Decoded `X-Shopify-Hmac-Sha256`.
    signature: Vec<u8>,
}

/// Why a delivery is refused before it is stored.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("{0} is not a topic this connection receives")]
    UnknownTopic(String),
}

impl Delivery {
    pub fn from_headers(headers: &HashMap<String, String>) -> Result<Self, Refusal> {
        let get = |name: &'static str| {
            headers
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .ok_or(Refusal::Missing(name))
        };
        let signature = STANDARD
            .decode(get(SIGNATURE)?)
            .map_err(|_| Refusal::Malformed(SIGNATURE))?;
        let triggered_at = DateTime::parse_from_rfc3339(get(TRIGGERED_AT)?)
            .map_err(|_| Refusal::Malformed(TRIGGERED_AT))?
            .with_timezone(&Utc);
        let topic = get(TOPIC)?.to_owned();
        if !TOPICS.contains(&topic.as_str()) && !PRIVACY_TOPICS.contains(&topic.as_str()) {
            return Err(Refusal::UnknownTopic(topic));
        }
        let webhook_id = get(WEBHOOK_ID)?;
        if webhook_id.len() > 200 {
            return Err(Refusal::Malformed(WEBHOOK_ID));
        }
        Ok(Self {
            webhook_id: webhook_id.to_owned(),
            topic,
            shop: get(SHOP)?.to_owned(),
            triggered_at,
            signature,
        })
    }

    /// Whether one of `secrets` signed `body`, compared in constant time.
    pub fn signed_by_one_of(&self, secrets: &[&str], body: &[u8]) -> bool {
        secrets.iter().any(|secret| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
            mac.update(body);
            mac.verify_slice(&self.signature).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature Shopify puts on `body`.
    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(body);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    fn headers(body: &[u8], secret: &str) -> HashMap<String, String> {
        [
            (SIGNATURE, sign(secret, body)),
            (TOPIC, "orders/create".into()),
            (WEBHOOK_ID, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into()),
            (SHOP, "acme.myshopify.com".into()),
            (TRIGGERED_AT, "2026-12-01T10:00:00.123456789Z".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    #[test]
    fn a_delivery_verifies_under_the_secret_that_signed_its_exact_bytes() {
        let body = br#"{"id": 820982911946154508}"#;
        let delivery = Delivery::from_headers(&headers(body, "old")).unwrap();
        assert!(delivery.signed_by_one_of(&["new", "old"], body));
        assert!(!delivery.signed_by_one_of(&["new"], body));
        assert!(!delivery.signed_by_one_of(&[], body));
        let reserialised = br#"{"id":820982911946154508}"#;
        assert!(!delivery.signed_by_one_of(&["old"], reserialised), "bytes, not meaning");
        assert_eq!(delivery.triggered_at.timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let body = b"{}";
        for (header, expected) in [
            (SIGNATURE, Refusal::Missing(SIGNATURE)),
            (WEBHOOK_ID, Refusal::Missing(WEBHOOK_ID)),
            (TRIGGERED_AT, Refusal::Missing(TRIGGERED_AT)),
        ] {
            let mut given = headers(body, "s");
            given.remove(header);
            assert_eq!(Delivery::from_headers(&given).unwrap_err(), expected);
        }
        let mut given = headers(body, "s");
        given.insert(SIGNATURE.into(), "not base64!".into());
        assert_eq!(
            Delivery::from_headers(&given).unwrap_err(),
            Refusal::Malformed(SIGNATURE)
        );
        given = headers(body, "s");
        given.insert(TOPIC.into(), "carts/create".into());
        assert!(matches!(Delivery::from_headers(&given), Err(Refusal::UnknownTopic(_))));
    }
}
