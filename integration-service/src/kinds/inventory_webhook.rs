//! The inventory webhook a workspace sends the platform when stock changes
//! in its own database (the reference article's `updateInventoryWebhook`).
//! It is signed the Standard Webhooks way, the same scheme the platform
//! signs its own webhooks with: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (`v1,<base64>` of the HMAC-SHA256 of
//! `{id}.{timestamp}.{body}`), under the connection's
//! `inventory_webhook_secret`. The body is one change or a list of them:
//! `{"product_id": "sku-1", "stock": 3}`.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use sealing::webhook_signature;
use serde::Deserialize;
use serde_json::Value;

/// How far a delivery's timestamp may be from now: an older one is a
/// replay.
const TOLERANCE: Duration = Duration::from_secs(300);
const MAX_CHANGES: usize = 1_000;
const MAX_ID_LEN: usize = 255;

/// The headers of a delivery, read.
#[derive(Debug)]
pub struct Signed {
    pub webhook_id: String,
    pub at: DateTime<Utc>,
    seconds: i64,
    signatures: String,
}

/// Why a delivery is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("webhook-timestamp is more than {} s from now: a replay, or the sender's clock is wrong", TOLERANCE.as_secs())]
    OutOfTolerance,
    #[error("webhook-signature is not the signature of this delivery under the connection's inventory_webhook_secret")]
    BadSignature,
    #[error("the body must be {{\"product_id\": …, \"stock\": …}} or a list of at most {MAX_CHANGES} of them: {0}")]
    Body(String),
}

impl Signed {
    pub fn from_headers(headers: &HashMap<String, String>, now: DateTime<Utc>) -> Result<Self, Refusal> {
        let get = |name: &'static str| {
            headers
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .ok_or(Refusal::Missing(name))
        };
        let webhook_id = get("webhook-id")?;
        if webhook_id.len() > MAX_ID_LEN {
            return Err(Refusal::Malformed("webhook-id"));
        }
        let seconds: i64 = get("webhook-timestamp")?
            .parse()
            .map_err(|_| Refusal::Malformed("webhook-timestamp"))?;
        let at = DateTime::from_timestamp(seconds, 0).ok_or(Refusal::Malformed("webhook-timestamp"))?;
        if (now - at).abs() > chrono::Duration::from_std(TOLERANCE).unwrap_or_default() {
            return Err(Refusal::OutOfTolerance);
        }
        Ok(Self {
            webhook_id: webhook_id.to_owned(),
            at,
            seconds,
            signatures: get("webhook-signature")?.to_owned(),
        })
    }

    /// Checks the signature over the exact body, in constant time.
    pub fn verify(&self, key: &[u8], body: &[u8]) -> Result<(), Refusal> {
        match webhook_signature::verify_standard(&[key], &self.webhook_id, self.seconds, body, &self.signatures) {
            true => Ok(()),
            false => Err(Refusal::BadSignature),
        }
    }
}

/// One product's new stock.
#[derive(Debug, Clone, PartialEq)]
pub struct StockChange {
    pub product_id: String,
    pub stock: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Given {
    product_id: Value,
    stock: i64,
}

/// The changes a body carries, by id: ids may be strings or whole numbers
/// (the database's own), stock a whole number; the last change of a
/// product in one delivery wins.
pub fn changes(body: &[u8]) -> Result<Vec<StockChange>, Refusal> {
    let body: Value = serde_json::from_slice(body).map_err(|e| Refusal::Body(e.to_string()))?;
    let list = match body {
        Value::Array(list) => list,
        one => vec![one],
    };
    if list.is_empty() || list.len() > MAX_CHANGES {
        return Err(Refusal::Body(format!("{} changes", list.len())));
    }
    let mut changes: Vec<StockChange> = Vec::with_capacity(list.len());
    for item in list {
        let given: Given = serde_json::from_value(item).map_err(|e| Refusal::Body(e.to_string()))?;
        let product_id = match given.product_id {
            Value::String(id) if !id.is_empty() && id.len() <= MAX_ID_LEN => id,
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            other => return Err(Refusal::Body(format!("product_id {other} is not an id"))),
        };
        changes.retain(|c| c.product_id != product_id);
        changes.push(StockChange {
            product_id,
            stock: given.stock,
        });
    }
    // Applied in byte order of the ids, as reads lock them.
    changes.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(id: &str, at: i64, signature: &str) -> HashMap<String, String> {
        HashMap::from([
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), at.to_string()),
            ("webhook-signature".to_owned(), signature.to_owned()),
        ])
    }

    #[test]
    fn a_delivery_verifies_only_when_fresh_and_signed_over_its_exact_bytes() {
        let key = webhook_signature::key_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let now = Utc::now();
        let body = br#"{"product_id": "sku-1", "stock": 3}"#;
        let signature = webhook_signature::standard_signature(&key, "msg_1", now.timestamp(), body);
        let signed = Signed::from_headers(&headers("msg_1", now.timestamp(), &signature), now).unwrap();
        assert_eq!(signed.verify(&key, body), Ok(()));
        assert_eq!(
            signed.verify(&key, br#"{"product_id": "sku-1", "stock": 30}"#),
            Err(Refusal::BadSignature)
        );
        let stale = headers("msg_1", now.timestamp() - 301, &signature);
        assert_eq!(Signed::from_headers(&stale, now).unwrap_err(), Refusal::OutOfTolerance);
        let mut unsigned = headers("msg_1", now.timestamp(), &signature);
        unsigned.remove("webhook-signature");
        assert_eq!(
            Signed::from_headers(&unsigned, now).unwrap_err(),
            Refusal::Missing("webhook-signature")
        );
    }

    #[test]
    fn one_change_or_a_list_is_read_with_ids_as_text() {
        assert_eq!(
            changes(br#"{"product_id": 42, "stock": 0}"#).unwrap(),
            vec![StockChange {
                product_id: "42".into(),
                stock: 0
            }]
        );
        let list = changes(
            br#"[{"product_id": "a", "stock": 5}, {"product_id": "b", "stock": 1}, {"product_id": "a", "stock": 4}]"#,
        )
        .unwrap();
        assert_eq!(
            list.iter()
                .map(|c| (c.product_id.as_str(), c.stock))
                .collect::<Vec<_>>(),
            [("a", 4), ("b", 1)]
        );
        for wrong in [
            &b"[]"[..],
            br#"{"product_id": "a"}"#,
            br#"{"product_id": 1.5, "stock": 1}"#,
            br#"{"productId": "a", "stock": 1}"#,
            b"not json",
        ] {
            assert!(changes(wrong).is_err(), "{}", String::from_utf8_lossy(wrong));
        }
    }
}
