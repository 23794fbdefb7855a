//! "Where is my order?": answered from the workspace's connected stores,
//! for the conversation's verified customer only. The customer is the one
//! the workspace's backend named in the conversation's `metadata.customer`
//! (`email`, `shopify_customer_id`); nothing the end user types can make
//! the bot look up someone else's orders.

use std::time::Duration;

use proto::integration::v1::{
    CustomerOrdersRequest, FindProductsRequest, Order, Product, integration_service_client::IntegrationServiceClient,
};
use serde_json::{Value, json};
use service_runtime::{calls::Party, config::ServiceSettings, grpc_client::ServiceClient};
use tonic::Request;

use super::Draft;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Orders a reply lists.
const SHOWN: i32 = 3;

/// Phrases that make a message a question about the customer's own orders.
const ORDER_PHRASES: &[&str] = &[
    "my order",
    "my package",
    "my parcel",
    "my delivery",
    "my shipment",
    "order status",
    "tracking number",
    "track my",
    "where is my",
    "has my",
];

/// The customer a conversation's metadata names.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub email: String,
    pub shopify_customer_id: String,
}

impl Customer {
    /// From a conversation's metadata; `None` when it names nobody.
    pub fn from_metadata(metadata: &Value) -> Option<Self> {
        let customer = metadata.get("customer")?;
        let text = |key: &str| match &customer[key] {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let found = Self {
            email: text("email"),
            shopify_customer_id: text("shopify_customer_id"),
        };
        (!found.email.is_empty() || !found.shopify_customer_id.is_empty()).then_some(found)
    }
}

/// Whether `question` asks about the customer's own orders.
pub fn is_order_question(question: &str) -> bool {
    let lower = question.to_lowercase();
    ORDER_PHRASES.iter().any(|phrase| lower.contains(phrase))
}

#[derive(Clone)]
pub struct OrderDesk {
    client: ServiceClient,
}

impl OrderDesk {
    /// integration-service at `url` (`http://host:port`), connected on
    /// first use.
    pub fn new(url: &str, settings: &ServiceSettings) -> anyhow::Result<Self> {
        Ok(Self {
            client: ServiceClient::new(url, TIMEOUT, settings, Party::Integration)?,
        })
    }

    /// A request to integration-service for the workspace, as this service.
    fn acting_for<T>(&self, workspace_id: &str, message: T) -> Result<Request<T>, String> {
        self.client
            .acting_for(workspace_id, "manage:integrations", message)
            .map_err(|status| status.message().to_owned())
    }

    /// The customer's latest `limit` orders over the workspace's stores.
    pub async fn latest(&self, workspace_id: &str, customer: &Customer, limit: i32) -> Result<Vec<Order>, String> {
        let request = self.acting_for(
            workspace_id,
            CustomerOrdersRequest {
                customer_email: customer.email.clone(),
                shopify_customer_id: customer.shopify_customer_id.clone(),
                limit,
            },
        )?;
        IntegrationServiceClient::new(self.client.channel())
            .customer_orders(request)
            .await
            .map(|answer| answer.into_inner().orders)
            .map_err(|status| status.message().to_owned())
    }

    /// Active products of the workspace's stores whose title matches.
    pub async fn find_products(&self, workspace_id: &str, query: &str) -> Result<Vec<Product>, String> {
        let request = self.acting_for(
            workspace_id,
            FindProductsRequest {
                query: query.to_owned(),
                limit: SHOWN,
            },
        )?;
        IntegrationServiceClient::new(self.client.channel())
            .find_products(request)
            .await
            .map(|answer| answer.into_inner().products)
            .map_err(|status| status.message().to_owned())
    }

    /// The reply listing the customer's latest orders; `None` when the
    /// stores cannot be asked now (the question then goes the usual way).
    pub async fn answer(&self, workspace_id: &str, customer: &Customer) -> Option<Draft> {
        let orders = match self.latest(workspace_id, customer, SHOWN).await {
            Ok(orders) => orders,
            Err(reason) => {
                tracing::warn!(%reason, "looking up a customer's orders");
                return None;
            }
        };
        Some(Draft {
            content: describe(&orders),
            metadata: json!({
                "source": "orders",
                "orders": orders.iter().map(|o| o.name.clone()).collect::<Vec<_>>(),
            }),
            handoff: None,
            failure: None,
        })
    }
}

/// An order as a tool answers the model.
pub fn order_json(order: &Order) -> Value {
    let placed = order
        .created_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.to_rfc3339());
    let mut json = json!({
        "number": order.name, "placed_at": placed, "total": format!("{} {}", order.total_price, order.currency),
        "payment": order.financial_status, "fulfillment": order.fulfillment_status,
        "cancelled": order.cancelled_at.is_some(),
        "items": order.line_items.iter().map(|l| json!({"title": l.title, "quantity": l.quantity})).collect::<Vec<_>>(),
        "tracking": order.tracking.iter().map(|t| json!({"number": t.number, "carrier": t.company, "url": t.url})).collect::<Vec<_>>(),
    });
    // A database's order says where it is in its own words.
    if !order.status.is_empty() {
        json["status"] = json!(order.status);
    }
    json
}

/// A product as a tool answers the model.
pub fn product_json(product: &Product) -> Value {
    json!({
        "title": product.title, "description": product.description,
        "price_min": product.price_min, "price_max": product.price_max, "in_stock": product.stock,
    })
}

/// The reply: each order, newest first, with where it stands.
fn describe(orders: &[Order]) -> String {
    if orders.is_empty() {
        return "I could not find any orders for you. If you ordered with another email address, \
                our team can look it up for you."
            .to_owned();
    }
    let lines: Vec<String> = orders.iter().map(line).collect();
    let heading = match orders.len() {
        1 => "Here is your latest order:",
        _ => "Here are your latest orders:",
    };
    format!("{heading}\n{}", lines.join("\n"))
}

fn line(order: &Order) -> String {
    let placed = order
        .created_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| format!(" placed {}", t.format("%-d %b %Y")))
        .unwrap_or_default();
    let total = format!("{} {}", order.total_price, order.currency);
    let state = if order.cancelled_at.is_some() {
        "cancelled".to_owned()
    } else if let Some(tracking) = order.tracking.first() {
        let carrier = match tracking.company.is_empty() {
            true => String::new(),
            false => format!("{} ", tracking.company),
        };
        let link = match tracking.url.is_empty() {
            true => String::new(),
            false => format!(" ({})", tracking.url),
        };
        format!("shipped, {carrier}tracking number {}{link}", tracking.number)
    } else if !order.status.is_empty() {
        // A database's own word for where the order is.
        order.status.clone()
    } else {
        "not shipped yet".to_owned()
    };
    format!("- Order {}{placed}, {total}: {state}.", order.name)
}

#[cfg(test)]
mod tests {
    use proto::integration::v1::Tracking;

    use super::*;

    #[test]
    fn only_questions_about_the_customers_own_orders_count() {
        assert!(is_order_question("Where is my order?"));
        assert!(is_order_question("Has my package shipped yet"));
        assert!(is_order_question("What's the tracking number"));
        assert!(!is_order_question("How do I place an order?"));
        assert!(!is_order_question("Do you ship to Canada?"));
    }

    #[test]
    fn the_customer_is_whoever_the_metadata_names() {
        let named = Customer::from_metadata(&json!({"customer": {"shopify_customer_id": 207119551}})).unwrap();
        assert_eq!(named.shopify_customer_id, "207119551");
        assert_eq!(Customer::from_metadata(&json!({"customer": {"email": " "}})), None);
        assert_eq!(Customer::from_metadata(&json!({})), None);
    }

    #[test]
    fn each_order_says_where_it_stands() {
        let shipped = Order {
            name: "#1001".into(),
            total_price: "25.00".into(),
            currency: "EUR".into(),
            tracking: vec![Tracking {
                number: "1Z999".into(),
                company: "UPS".into(),
                url: "https://ups.example/1Z999".into(),
            }],
            ..Order::default()
        };
        let waiting = Order {
            name: "#1002".into(),
            total_price: "9.50".into(),
            currency: "EUR".into(),
            ..Order::default()
        };
        assert_eq!(
            describe(&[shipped, waiting]),
            "Here are your latest orders:\n\
             - Order #1001, 25.00 EUR: shipped, UPS tracking number 1Z999 (https://ups.example/1Z999).\n\
             - Order #1002, 9.50 EUR: not shipped yet."
        );
        assert!(describe(&[]).starts_with("I could not find any orders"));
    }
}
