//! The `shopify_orders` table: order summaries a bot answers "where is my
//! order" from, guarded like the catalog by when Shopify produced the
//! news; and `shopify_data_requests`, what customers asked to see of what
//! is stored about them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_runtime::{error::ServiceError, pagination::NewestFirst};
use sqlx::{PgConnection, PgExecutor, types::Json};

use super::shopify_catalog::{Source, Stored};
use crate::kinds::shopify::payloads::{LineItem, Order, Tracking, UNFULFILLED, price};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Stores the order unless newer news of it is stored; with the tracking
/// it had before (none when it is new).
pub async fn upsert(conn: &mut PgConnection, source: &Source<'_>, order: &Order) -> Result<(Stored, Vec<Tracking>)> {
    let hash = order.fingerprint();
    let line_items: Vec<LineItem> = order
        .line_items
        .iter()
        .map(|l| LineItem {
            title: l.title.clone(),
            quantity: l.quantity,
        })
        .collect();
    type Returned = (bool, bool, Option<i64>, Option<Json<Vec<Tracking>>>);
    let returned: Option<Returned> = sqlx::query_as(
        "WITH old AS (SELECT content_hash, tracking FROM shopify_orders WHERE integration_id = $1 AND order_id = $2)
         INSERT INTO shopify_orders
             (integration_id, order_id, workspace_id, name, email, customer_id, financial_status,
              fulfillment_status, total_price, currency, line_items, tracking, cancelled_at,
              created_at, updated_at, triggered_at, content_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (integration_id, order_id) DO UPDATE SET
             name = EXCLUDED.name, email = EXCLUDED.email, customer_id = EXCLUDED.customer_id,
             financial_status = EXCLUDED.financial_status, fulfillment_status = EXCLUDED.fulfillment_status,
             total_price = EXCLUDED.total_price, currency = EXCLUDED.currency,
             line_items = EXCLUDED.line_items, tracking = EXCLUDED.tracking,
             cancelled_at = EXCLUDED.cancelled_at, created_at = EXCLUDED.created_at,
             updated_at = EXCLUDED.updated_at, triggered_at = EXCLUDED.triggered_at,
             content_hash = EXCLUDED.content_hash
         WHERE shopify_orders.triggered_at < EXCLUDED.triggered_at
         RETURNING EXISTS (SELECT 1 FROM old), false, (SELECT content_hash FROM old), (SELECT tracking FROM old)",
    )
    .bind(source.integration_id)
    .bind(order.id)
    .bind(source.workspace_id)
    .bind(&order.name)
    .bind(order.email())
    .bind(order.customer.as_ref().and_then(|c| c.id))
    .bind(order.financial_status.as_deref().unwrap_or_default())
    .bind(order.fulfillment_status.as_deref().unwrap_or(UNFULFILLED))
    .bind(price(&order.total_price))
    .bind(&order.currency)
    .bind(Json(line_items))
    .bind(Json(order.tracking()))
    .bind(order.cancelled_at)
    .bind(order.created_at)
    .bind(order.updated_at)
    .bind(source.triggered_at)
    .bind(hash)
    .fetch_optional(conn)
    .await?;
    let previous = returned
        .as_ref()
        .and_then(|r| r.3.as_ref())
        .map(|tracking| tracking.0.clone())
        .unwrap_or_default();
    let stored = Stored::from_returned(returned.map(|(a, b, c, _)| (a, b, c)), hash);
    Ok((stored, previous))
}

/// An order as a bot, the API and a data export see it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize, PartialEq)]
pub struct OrderView {
    pub order_id: i64,
    pub name: String,
    pub email: String,
    pub customer_id: Option<i64>,
    pub financial_status: String,
    pub fulfillment_status: String,
    pub total_price: String,
    pub currency: String,
    pub line_items: Json<Vec<LineItem>>,
    pub tracking: Json<Vec<Tracking>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

const ORDER_VIEW: &str = "SELECT order_id, name, email, customer_id, financial_status, fulfillment_status,
    total_price, currency, line_items, tracking, cancelled_at, created_at, updated_at FROM shopify_orders";

/// A connection's orders after `after`, by id.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    integration_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<OrderView>> {
    Ok(sqlx::query_as(&format!(
        "{ORDER_VIEW} WHERE workspace_id = $1 AND integration_id = $2 AND order_id > $3
         ORDER BY order_id LIMIT $4"
    ))
    .bind(workspace_id)
    .bind(integration_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// A customer's latest orders over the workspace's connected stores.
pub async fn customer_latest<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    email: Option<&str>,
    customer_id: Option<i64>,
    limit: i64,
) -> Result<Vec<OrderView>> {
    Ok(sqlx::query_as(&format!(
        "{ORDER_VIEW} o WHERE o.workspace_id = $1
           AND ((o.email <> '' AND lower(o.email) = lower($2)) OR o.customer_id = $3)
           AND EXISTS (SELECT 1 FROM integrations i WHERE i.id = o.integration_id AND i.status <> 'disconnected')
         ORDER BY o.created_at DESC NULLS LAST, o.order_id DESC LIMIT $4"
    ))
    .bind(workspace_id)
    .bind(email)
    .bind(customer_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Who a privacy request is about: a customer id, an email, and orders
/// Shopify names.
pub struct Customer<'a> {
    pub id: Option<i64>,
    pub email: &'a str,
    pub order_ids: &'a [i64],
}

const OF_CUSTOMER: &str = "integration_id = $1
    AND (customer_id = $2 OR ($3 <> '' AND lower(email) = lower($3)) OR order_id = ANY($4))";

/// Every stored order of the customer (`customers/data_request`).
pub async fn of_customer(
    conn: &mut PgConnection,
    integration_id: &str,
    customer: &Customer<'_>,
) -> Result<Vec<OrderView>> {
    Ok(
        sqlx::query_as(&format!("{ORDER_VIEW} WHERE {OF_CUSTOMER} ORDER BY order_id"))
            .bind(integration_id)
            .bind(customer.id)
            .bind(customer.email)
            .bind(customer.order_ids)
            .fetch_all(conn)
            .await?,
    )
}

/// Deletes every stored order of the customer (`customers/redact`); how many.
pub async fn redact_customer(conn: &mut PgConnection, integration_id: &str, customer: &Customer<'_>) -> Result<u64> {
    Ok(sqlx::query(&format!("DELETE FROM shopify_orders WHERE {OF_CUSTOMER}"))
        .bind(integration_id)
        .bind(customer.id)
        .bind(customer.email)
        .bind(customer.order_ids)
        .execute(conn)
        .await?
        .rows_affected())
}

/// Records what a customer asked to see, with its export.
pub async fn record_data_request(
    conn: &mut PgConnection,
    source: &Source<'_>,
    request_id: i64,
    customer: &Value,
    export: &Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO shopify_data_requests (integration_id, request_id, workspace_id, customer, export)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (integration_id, request_id) DO NOTHING",
    )
    .bind(source.integration_id)
    .bind(request_id)
    .bind(source.workspace_id)
    .bind(customer)
    .bind(export)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DataRequestRow {
    /// Shopify's data request id, as text.
    pub id: String,
    pub customer: Value,
    pub export: Value,
    /// When it was received.
    pub created_at: DateTime<Utc>,
}

/// A page of a connection's data requests, newest first.
pub async fn data_requests<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    integration_id: &str,
    page: &NewestFirst,
) -> Result<Vec<DataRequestRow>> {
    let select = "SELECT * FROM (
             SELECT workspace_id, integration_id, request_id::text AS id, customer, export,
                    received_at AS created_at
             FROM shopify_data_requests) r";
    super::connection_page(db, select, workspace_id, integration_id, page).await
}

/// Forgets a connection's orders, shipping notices and data requests
/// (`shop/redact`).
pub async fn forget(conn: &mut PgConnection, integration_id: &str) -> Result<()> {
    let tables = ["order_notices", "shopify_orders", "shopify_data_requests"];
    super::forget(conn, &tables, integration_id).await
}
