//! What a bot reads of a product: one knowledge item with its title,
//! description, price and stock, whether the product comes from a Shopify
//! store or from a workspace's own database.

use proto::chatbot::v1::{Document, SourcedItem};
use serde_json::{Value, json};

use crate::{
    kinds::{database::DatabaseSettings, shopify::ShopifySettings},
    store::{
        db_products,
        shopify_catalog::{Pending, ProductView},
    },
};

/// The products as items to upsert (active ones) and ids to remove (the
/// rest: deleted, draft or archived).
pub fn store_items(settings: &ShopifySettings, pending: &[Pending]) -> (Vec<SourcedItem>, Vec<String>) {
    let mut upserts = Vec::new();
    let mut removed = Vec::new();
    for Pending { view, .. } in pending {
        let external_id = view.product_id.to_string();
        if view.deleted || view.status != "active" {
            removed.push(external_id);
        } else {
            upserts.push(SourcedItem {
                external_id,
                document: Some(document(&settings.shop, view)),
            });
        }
    }
    (upserts, removed)
}

/// A product as a bot reads it.
fn document(shop: &str, product: &ProductView) -> Document {
    let mut text = product.title.clone();
    if !product.description.is_empty() {
        text.push_str("\n\n");
        text.push_str(&product.description);
    }
    match (&product.price_min, &product.price_max) {
        (Some(min), Some(max)) if min != max => text.push_str(&format!("\n\nPrice: from {min} to {max}.")),
        (Some(price), _) => text.push_str(&format!("\n\nPrice: {price}.")),
        _ => {}
    }
    text.push_str(&stock_line(product.stock, None));
    let metadata = json!({
        "product_id": product.product_id.to_string(),
        "shop": shop,
        "price_min": product.price_min,
        "price_max": product.price_max,
        "stock": product.stock.map(|n| n.to_string()),
    });
    Document {
        title: product.title.clone(),
        text,
        source_url: format!("https://{shop}/products/{}", product.handle),
        metadata: Some(service_runtime::proto_json::json_to_struct(strip_nulls(metadata))),
    }
}

/// A database's products as items to upsert, and the ids of the ones
/// deleted there to remove.
pub fn database_items(
    settings: &DatabaseSettings,
    pending: &[db_products::Pending],
) -> (Vec<SourcedItem>, Vec<String>) {
    let (deleted, present): (Vec<_>, Vec<_>) = pending.iter().partition(|p| p.deleted);
    let upserts = present
        .into_iter()
        .map(|p| SourcedItem {
            external_id: p.view.external_id.clone(),
            document: Some(database_document(settings, &p.view)),
        })
        .collect();
    (
        upserts,
        deleted.into_iter().map(|p| p.view.external_id.clone()).collect(),
    )
}

/// A database's product as a bot reads it: low stock is said as such, so
/// the bot can tell a customer to hurry.
fn database_document(settings: &DatabaseSettings, product: &db_products::DbProductView) -> Document {
    let mut text = product.title.clone();
    if !product.description.is_empty() {
        text.push_str("\n\n");
        text.push_str(&product.description);
    }
    if let Some(price) = &product.price {
        text.push_str(&format!("\n\nPrice: {price}."));
    }
    text.push_str(&stock_line(product.stock, Some(settings.low_stock_threshold)));
    let metadata = json!({
        "product_id": product.external_id,
        "database": settings.database,
        "price": product.price,
        "stock": product.stock.map(|n| n.to_string()),
    });
    Document {
        title: product.title.clone(),
        text,
        source_url: String::new(),
        metadata: Some(service_runtime::proto_json::json_to_struct(strip_nulls(metadata))),
    }
}

/// How much is left, low stock (under `low`) said as such.
fn stock_line(stock: Option<i64>, low: Option<i64>) -> String {
    match stock {
        Some(n) if n <= 0 => "\nOut of stock.".to_owned(),
        Some(n) if low.is_some_and(|low| n < low) => format!("\nLow stock: only {n} left."),
        Some(n) => format!("\nIn stock: {n} available."),
        None => String::new(),
    }
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(stock: Option<i64>, prices: (&str, &str)) -> ProductView {
        ProductView {
            product_id: 9_007_199_254_740_993,
            title: "Blue mug".into(),
            description: "Holds tea.".into(),
            handle: "blue-mug".into(),
            status: "active".into(),
            price_min: Some(prices.0.into()),
            price_max: Some(prices.1.into()),
            stock,
            deleted: false,
        }
    }

    #[test]
    fn a_product_reads_as_its_title_description_price_and_stock() {
        let doc = document("acme.myshopify.com", &product(Some(21), ("12.50", "99.00")));
        assert_eq!(doc.title, "Blue mug");
        assert_eq!(
            doc.text,
            "Blue mug\n\nHolds tea.\n\nPrice: from 12.50 to 99.00.\nIn stock: 21 available."
        );
        assert_eq!(doc.source_url, "https://acme.myshopify.com/products/blue-mug");
        let sold_out = document("acme.myshopify.com", &product(Some(0), ("5.00", "5.00")));
        assert!(
            sold_out.text.ends_with("Price: 5.00.\nOut of stock."),
            "{}",
            sold_out.text
        );
    }
}
