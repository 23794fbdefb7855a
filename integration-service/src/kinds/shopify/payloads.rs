//! The bodies of Shopify's webhooks, as the platform reads them. Ids are
//! 64-bit integers read straight into `i64`, never through a float, so ids
//! above 2^53 stay exact. Fields the platform does not keep are ignored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, Deserialize)]
pub struct Product {
    pub id: i64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body_html: Option<String>,
    #[serde(default)]
    pub handle: String,
    #[serde(default)]
    pub status: String,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub variants: Vec<Variant>,
}

impl Product {
    /// The description as plain text: the bot quotes it, it renders nothing.
    pub fn description(&self) -> String {
        let html = self.body_html.as_deref().unwrap_or_default();
        nanohtml2text::html2text(html).trim().to_owned()
    }

    /// A hash of what is stored of the product, to tell a change from a
    /// repeat of what is already held.
    pub fn fingerprint(&self) -> i64 {
        let variants: Vec<Value> = self
            .variants
            .iter()
            .map(|v| {
                json!([
                    v.id,
                    v.title,
                    v.sku,
                    price(&v.price),
                    v.inventory_item_id,
                    v.inventory_quantity
                ])
            })
            .collect();
        fingerprint(&json!([
            self.title,
            self.description(),
            self.handle,
            self.status,
            variants
        ]))
    }
}

/// What an order with no fulfillment status is: REST writes `null`,
/// GraphQL `UNFULFILLED`.
pub const UNFULFILLED: &str = "unfulfilled";

/// A price as one spelling: GraphQL's `Money` may write "12.5" where REST
/// writes "12.50", and the two must compare equal.
pub fn price(text: &str) -> String {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole.trim_start_matches('-')) || !digits(fraction) {
        return text.to_owned();
    }
    let fraction = fraction.trim_end_matches('0');
    format!("{whole}.{fraction:0<2}")
}

/// The first 8 bytes of the SHA-256 of `value`'s JSON.
fn fingerprint(value: &Value) -> i64 {
    let digest = Sha256::digest(value.to_string().as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("a digest is 32 bytes"))
}

#[derive(Debug, Deserialize)]
pub struct Variant {
    pub id: i64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub price: String,
    pub inventory_item_id: Option<i64>,
    pub inventory_quantity: Option<i64>,
}

/// `products/delete` carries the id alone.
#[derive(Debug, Deserialize)]
pub struct Deleted {
    pub id: i64,
}

#[derive(Debug, Deserialize)]
pub struct InventoryLevel {
    pub inventory_item_id: i64,
    pub location_id: i64,
    pub available: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub customer: Option<Customer>,
    #[serde(default)]
    pub financial_status: Option<String>,
    #[serde(default)]
    pub fulfillment_status: Option<String>,
    #[serde(default)]
    pub total_price: String,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub line_items: Vec<LineItem>,
    #[serde(default)]
    pub fulfillments: Vec<Fulfillment>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Order {
    /// The order's email, or its customer's.
    pub fn email(&self) -> String {
        self.email
            .as_deref()
            .filter(|e| !e.is_empty())
            .or_else(|| self.customer.as_ref().and_then(|c| c.email.as_deref()))
            .unwrap_or_default()
            .to_owned()
    }

    /// A hash of what is stored of the order.
    pub fn fingerprint(&self) -> i64 {
        fingerprint(&json!([
            self.name,
            self.email(),
            self.customer.as_ref().and_then(|c| c.id),
            self.financial_status.as_deref().unwrap_or_default(),
            self.fulfillment_status.as_deref().unwrap_or(UNFULFILLED),
            price(&self.total_price),
            self.currency,
            self.line_items,
            self.tracking(),
            self.cancelled_at,
            self.created_at,
            self.updated_at,
        ]))
    }

    /// Every tracking number its fulfillments carry.
    pub fn tracking(&self) -> Vec<Tracking> {
        self.fulfillments
            .iter()
            .flat_map(|f| {
                let numbers = match (&f.tracking_numbers, &f.tracking_number) {
                    (numbers, _) if !numbers.is_empty() => numbers.clone(),
                    (_, Some(number)) => vec![number.clone()],
                    _ => Vec::new(),
                };
                numbers.into_iter().enumerate().map(move |(i, number)| Tracking {
                    number,
                    company: f.tracking_company.clone().unwrap_or_default(),
                    url: f
                        .tracking_urls
                        .get(i)
                        .cloned()
                        .or_else(|| f.tracking_url.clone())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
pub struct Customer {
    pub id: Option<i64>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LineItem {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub quantity: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct Fulfillment {
    #[serde(default)]
    pub tracking_number: Option<String>,
    #[serde(default)]
    pub tracking_numbers: Vec<String>,
    #[serde(default)]
    pub tracking_company: Option<String>,
    #[serde(default)]
    pub tracking_url: Option<String>,
    #[serde(default)]
    pub tracking_urls: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Tracking {
    pub number: String,
    pub company: String,
    pub url: String,
}

/// `customers/redact` and `customers/data_request`.
#[derive(Debug, Deserialize)]
pub struct CustomerRequest {
    pub customer: Customer,
    #[serde(default)]
    pub orders_to_redact: Vec<i64>,
    #[serde(default)]
    pub orders_requested: Vec<i64>,
    #[serde(default)]
    pub data_request: Option<DataRequest>,
}

#[derive(Debug, Deserialize)]
pub struct DataRequest {
    pub id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_beyond_a_floats_precision_are_read_exactly() {
        let product: Product = serde_json::from_str(
            r#"{"id": 9007199254740993, "title": "Mug", "body_html": "<p>Holds <b>tea</b> &amp; coffee</p>",
                "variants": [{"id": 9223372036854775807, "price": "12.50", "inventory_item_id": 1, "inventory_quantity": 3}]}"#,
        )
        .unwrap();
        assert_eq!(product.id, 9_007_199_254_740_993);
        assert_eq!(product.variants[0].id, i64::MAX);
        assert_eq!(product.description(), "Holds tea & coffee");
    }

    #[test]
    fn prices_compare_however_they_are_spelled() {
        assert_eq!(price("12.5"), "12.50");
        assert_eq!(price("12"), "12.00");
        assert_eq!(price("12.50"), "12.50");
        assert_eq!(price("0.125"), "0.125");
        assert_eq!(price("free"), "free");
    }

    #[test]
    fn an_orders_tracking_comes_from_every_fulfillment() {
        let order: Order = serde_json::from_str(
            r#"{"id": 1, "customer": {"id": 7, "email": "ann@example.com"}, "fulfillments": [
                {"tracking_numbers": ["1Z1", "1Z2"], "tracking_company": "UPS", "tracking_urls": ["u1", "u2"]},
                {"tracking_number": "LX9", "tracking_url": "u3"}]}"#,
        )
        .unwrap();
        assert_eq!(order.email(), "ann@example.com");
        let numbers: Vec<_> = order.tracking().into_iter().map(|t| (t.number, t.url)).collect();
        assert_eq!(
            numbers,
            [
                ("1Z1".into(), "u1".into()),
                ("1Z2".into(), "u2".into()),
                ("LX9".into(), "u3".into())
            ]
        );
    }
}
