//! Reading a whole store through the GraphQL Admin API, a page at a time:
//! products with their variants and stock, and orders as summaries. Nodes
//! are read into the same types webhooks bring (`legacyResourceId` is the
//! REST id, a string in GraphQL so 64-bit ids stay exact), so both paths
//! store and compare the same values.
//!
//! Page sizes keep each query's requested cost well under Shopify's
//! single-query limit of 1 000 points; a product with more variants than
//! one page carries is completed by follow-up queries.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::payloads::{Customer, Fulfillment, LineItem, Order, Product, Variant};

pub const PRODUCTS_PER_PAGE: u32 = 20;
pub const VARIANTS_PER_PRODUCT: u32 = 20;
pub const VARIANTS_PER_FOLLOW_UP: u32 = 100;
pub const ORDERS_PER_PAGE: u32 = 10;
pub const LINE_ITEMS_PER_ORDER: u32 = 50;

const VARIANT_FIELDS: &str = "legacyResourceId title sku price inventoryQuantity inventoryItem { legacyResourceId }";

pub fn products_query() -> String {
    format!(
        "query Products($first: Int!, $after: String, $variants: Int!) {{ \
         products(first: $first, after: $after, sortKey: ID) {{ pageInfo {{ hasNextPage endCursor }} \
         nodes {{ id legacyResourceId title descriptionHtml handle status updatedAt \
         variants(first: $variants) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {VARIANT_FIELDS} }} }} }} }} }}"
    )
}

pub fn variants_query() -> String {
    format!(
        "query Variants($id: ID!, $first: Int!, $after: String) {{ product(id: $id) {{ \
         variants(first: $first, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {VARIANT_FIELDS} }} }} }} }}"
    )
}

pub const ORDERS_QUERY: &str = "query Orders($first: Int!, $after: String, $lineItems: Int!) { \
    orders(first: $first, after: $after, sortKey: ID) { pageInfo { hasNextPage endCursor } \
    nodes { legacyResourceId name email createdAt updatedAt cancelledAt \
    displayFinancialStatus displayFulfillmentStatus customer { legacyResourceId email } \
    totalPriceSet { shopMoney { amount currencyCode } } \
    lineItems(first: $lineItems) { nodes { title quantity } } \
    fulfillments(first: 10) { trackingInfo(first: 10) { number company url } } } } }";

pub fn page_variables(after: Option<&str>, first: u32, nested: (&str, u32)) -> Value {
    let mut variables = json!({ "first": first, "after": after });
    variables[nested.0] = json!(nested.1);
    variables
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// A connection as GraphQL returns it. Nodes stay JSON until each is read
/// on its own, so one unreadable node fails alone.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nodes {
    pub page_info: PageInfo,
    pub nodes: Vec<Value>,
}

impl Nodes {
    /// The cursor to read on from, when there is more.
    pub fn next(&self) -> Option<String> {
        match self.page_info.has_next_page {
            true => self.page_info.end_cursor.clone(),
            false => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Legacy {
    legacy_resource_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductNode {
    id: String,
    legacy_resource_id: String,
    #[serde(default)]
    title: String,
    description_html: Option<String>,
    #[serde(default)]
    handle: String,
    #[serde(default)]
    status: String,
    updated_at: Option<DateTime<Utc>>,
    variants: Nodes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VariantNode {
    legacy_resource_id: String,
    #[serde(default)]
    title: String,
    sku: Option<String>,
    #[serde(default)]
    price: String,
    inventory_quantity: Option<i64>,
    inventory_item: Option<Legacy>,
}

/// A product read from a page: the product with the variants the page
/// carried, and where to read the rest of its variants from, if any.
pub struct ProductRead {
    pub product: Product,
    /// The product's GraphQL id and the cursor after its last variant read.
    pub more_variants: Option<(String, String)>,
}

fn id(text: &str, what: &str) -> Result<i64, String> {
    text.parse()
        .map_err(|_| format!("the {what} id {text:?} is not a 64-bit integer"))
}

pub fn product(node: Value) -> Result<ProductRead, String> {
    let node: ProductNode = serde_json::from_value(node).map_err(|e| format!("a product does not read: {e}"))?;
    let more_variants = node.variants.next().map(|cursor| (node.id.clone(), cursor));
    let product = Product {
        id: id(&node.legacy_resource_id, "product")?,
        title: node.title,
        body_html: node.description_html,
        handle: node.handle,
        status: node.status.to_ascii_lowercase(),
        updated_at: node.updated_at,
        variants: variants(node.variants.nodes)?,
    };
    Ok(ProductRead { product, more_variants })
}

pub fn variants(nodes: Vec<Value>) -> Result<Vec<Variant>, String> {
    nodes
        .into_iter()
        .map(|node| {
            let node: VariantNode =
                serde_json::from_value(node).map_err(|e| format!("a variant does not read: {e}"))?;
            Ok(Variant {
                id: id(&node.legacy_resource_id, "variant")?,
                title: node.title,
                sku: node.sku,
                price: node.price,
                inventory_item_id: match node.inventory_item {
                    Some(item) => Some(id(&item.legacy_resource_id, "inventory item")?),
                    None => None,
                },
                inventory_quantity: node.inventory_quantity,
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderNode {
    legacy_resource_id: String,
    #[serde(default)]
    name: String,
    email: Option<String>,
    customer: Option<CustomerNode>,
    display_financial_status: Option<String>,
    display_fulfillment_status: Option<String>,
    total_price_set: Option<MoneyBag>,
    line_items: LineItemNodes,
    #[serde(default)]
    fulfillments: Vec<FulfillmentNode>,
    cancelled_at: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerNode {
    legacy_resource_id: String,
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MoneyBag {
    shop_money: Money,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Money {
    amount: String,
    currency_code: String,
}

#[derive(Deserialize)]
struct LineItemNodes {
    nodes: Vec<LineItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FulfillmentNode {
    #[serde(default)]
    tracking_info: Vec<TrackingNode>,
}

#[derive(Deserialize)]
struct TrackingNode {
    number: Option<String>,
    company: Option<String>,
    url: Option<String>,
}

/// GraphQL's display statuses in the words REST webhooks use, so an order
/// stored from either reads the same.
fn fulfillment_status(display: Option<&str>) -> Option<String> {
    Some(match display? {
        "UNFULFILLED" => super::payloads::UNFULFILLED.to_owned(),
        "PARTIALLY_FULFILLED" => "partial".to_owned(),
        other => other.to_ascii_lowercase(),
    })
}

pub fn order(node: Value) -> Result<Order, String> {
    let node: OrderNode = serde_json::from_value(node).map_err(|e| format!("an order does not read: {e}"))?;
    let customer = match node.customer {
        Some(c) => Some(Customer {
            id: Some(id(&c.legacy_resource_id, "customer")?),
            email: c.email,
        }),
        None => None,
    };
    let (total_price, currency) = node
        .total_price_set
        .map(|bag| (bag.shop_money.amount, bag.shop_money.currency_code))
        .unwrap_or_default();
    let fulfillments = node
        .fulfillments
        .into_iter()
        .flat_map(|f| f.tracking_info)
        .filter_map(|t| {
            Some(Fulfillment {
                tracking_number: Some(t.number?),
                tracking_company: t.company,
                tracking_url: t.url,
                ..Fulfillment::default()
            })
        })
        .collect();
    Ok(Order {
        id: id(&node.legacy_resource_id, "order")?,
        name: node.name,
        email: node.email,
        customer,
        financial_status: node.display_financial_status.map(|s| s.to_ascii_lowercase()),
        fulfillment_status: fulfillment_status(node.display_fulfillment_status.as_deref()),
        total_price,
        currency,
        line_items: node.line_items.nodes,
        fulfillments,
        cancelled_at: node.cancelled_at,
        created_at: node.created_at,
        updated_at: node.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_node_reads_as_its_webhook_would() {
        let node = json!({
            "id": "gid://shopify/Product/9007199254740993", "legacyResourceId": "9007199254740993",
            "title": "Mug", "descriptionHtml": "<p>Holds tea</p>", "handle": "mug", "status": "ACTIVE",
            "updatedAt": "2026-12-01T10:00:00Z",
            "variants": {"pageInfo": {"hasNextPage": true, "endCursor": "v1"}, "nodes": [
                {"legacyResourceId": "11", "title": "Blue", "sku": null, "price": "12.50",
                 "inventoryQuantity": 4, "inventoryItem": {"legacyResourceId": "111"}}]}
        });
        let read = product(node).unwrap();
        assert_eq!(read.product.id, 9_007_199_254_740_993);
        assert_eq!(read.product.status, "active");
        assert_eq!(read.product.description(), "Holds tea");
        assert_eq!(read.product.variants[0].inventory_item_id, Some(111));
        assert_eq!(
            read.more_variants,
            Some(("gid://shopify/Product/9007199254740993".into(), "v1".into()))
        );
        assert!(
            product(json!({"id": "x", "legacyResourceId": "not a number", "variants": {
            "pageInfo": {"hasNextPage": false}, "nodes": []}}))
            .is_err()
        );
    }

    #[test]
    fn an_order_node_reads_as_its_webhook_would() {
        let node = json!({
            "legacyResourceId": "450789469", "name": "#1001", "email": null,
            "customer": {"legacyResourceId": "207119551", "email": "ann@example.com"},
            "displayFinancialStatus": "PAID", "displayFulfillmentStatus": "PARTIALLY_FULFILLED",
            "totalPriceSet": {"shopMoney": {"amount": "25.00", "currencyCode": "EUR"}},
            "lineItems": {"nodes": [{"title": "Mug", "quantity": 2}]},
            "fulfillments": [{"trackingInfo": [{"number": "1Z9", "company": "UPS", "url": "https://ups.example/1Z9"}]}],
            "createdAt": "2026-12-01T10:00:00Z", "updatedAt": "2026-12-01T11:00:00Z", "cancelledAt": null
        });
        let order = order(node).unwrap();
        assert_eq!(order.email(), "ann@example.com");
        assert_eq!(order.financial_status.as_deref(), Some("paid"));
        assert_eq!(order.fulfillment_status.as_deref(), Some("partial"));
        assert_eq!((order.total_price.as_str(), order.currency.as_str()), ("25.00", "EUR"));
        assert_eq!(order.tracking()[0].company, "UPS");
    }
}
