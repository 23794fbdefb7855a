//! What each topic does to what the platform holds of a store. Every write
//! is guarded by when Shopify produced the news (see the store), so
//! deliveries may be applied in any order and any number of times.

use event_pipeline::Outbox;
use ids::IntegrationId;
use serde::de::DeserializeOwned;
use serde_json::json;
use service_runtime::error::ServiceError;
use sqlx::{PgConnection, Postgres, Transaction};

use crate::{
    events,
    kinds::shopify::{
        ShopifySettings,
        payloads::{CustomerRequest, Deleted, InventoryLevel, Order, Product},
    },
    order_notices,
    store::{
        integrations, knowledge_queue,
        shopify_catalog::{self, Source},
        shopify_deliveries::Claimed,
        shopify_orders::{self, Customer},
    },
};

/// Why a delivery did not apply.
#[derive(Debug)]
pub enum Failure {
    /// It never will: its body is not what its topic says.
    Unusable(String),
    /// A fault of ours; trying again may succeed.
    Ours(ServiceError),
}

impl From<ServiceError> for Failure {
    fn from(error: ServiceError) -> Self {
        Self::Ours(error)
    }
}

type Result<T, E = Failure> = std::result::Result<T, E>;

pub async fn apply(tx: &mut Transaction<'_, Postgres>, outbox: &Outbox, delivery: &Claimed) -> Result<()> {
    let source = Source {
        workspace_id: &delivery.workspace_id,
        integration_id: &delivery.integration_id,
        triggered_at: delivery.triggered_at,
    };
    match delivery.topic.as_str() {
        "products/create" | "products/update" => {
            shopify_catalog::upsert_product(tx, &source, &body::<Product>(delivery)?, None).await?;
        }
        "products/delete" => {
            shopify_catalog::delete_product(tx, &source, body::<Deleted>(delivery)?.id).await?;
        }
        "inventory_levels/update" => {
            let level = body::<InventoryLevel>(delivery)?;
            shopify_catalog::set_inventory_level(tx, source.integration_id, &level).await?;
        }
        "orders/create" | "orders/updated" => {
            order_notices::store_order(tx, &source, &body::<Order>(delivery)?).await?;
        }
        "app/uninstalled" => uninstalled(tx, outbox, &source).await?,
        "customers/redact" => {
            let request = body::<CustomerRequest>(delivery)?;
            let removed = shopify_orders::redact_customer(tx, source.integration_id, &customer(&request)).await?;
            tracing::info!(
                integration = source.integration_id,
                removed,
                "redacted a customer's orders"
            );
        }
        "customers/data_request" => data_request(tx, &source, &body::<CustomerRequest>(delivery)?).await?,
        "shop/redact" => {
            forget_products(tx, &source).await?;
            shopify_orders::forget(tx, source.integration_id).await?;
            tracing::info!(integration = source.integration_id, "redacted the shop's data");
        }
        other => {
            return Err(Failure::Unusable(format!(
                "{other} is not a topic this service handles"
            )));
        }
    }
    Ok(())
}

/// The delivery's body as its topic's payload.
fn body<T: DeserializeOwned>(delivery: &Claimed) -> Result<T> {
    serde_json::from_slice(&delivery.body)
        .map_err(|error| Failure::Unusable(format!("the {} body does not read: {error}", delivery.topic)))
}

fn customer(request: &CustomerRequest) -> Customer<'_> {
    Customer {
        id: request.customer.id,
        email: request.customer.email.as_deref().unwrap_or_default(),
        order_ids: if request.orders_to_redact.is_empty() {
            &request.orders_requested
        } else {
            &request.orders_to_redact
        },
    }
}

/// The store removed the app: its token is revoked and its webhooks are
/// gone, so the connection is disconnected; its data stays until the
/// store's `shop/redact`.
async fn uninstalled(tx: &mut Transaction<'_, Postgres>, outbox: &Outbox, source: &Source<'_>) -> Result<()> {
    let id = IntegrationId::parse("integration_id", source.integration_id).map_err(ServiceError::from)?;
    let marked = integrations::mark_uninstalled(tx, source.workspace_id, &id, "the app was uninstalled from the store");
    let row = match marked.await {
        Ok(row) => row,
        // Disconnected here first: nothing is left to mark.
        Err(ServiceError::NotFound { .. }) => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    outbox
        .record(tx, &events::disconnected(source.workspace_id, &row))
        .await
        .map_err(ServiceError::from)?;
    Ok(())
}

/// Forgets the store's products, and makes the linked bots forget them.
async fn forget_products(tx: &mut Transaction<'_, Postgres>, source: &Source<'_>) -> Result<()> {
    shopify_catalog::forget(tx, source.integration_id).await?;
    let Some((_, _, settings)) = integrations::linked(&mut **tx, source.integration_id).await? else {
        return Ok(());
    };
    let bots = settings
        .as_object()
        .and_then(|s| ShopifySettings::parse(s).ok())
        .map(|s| s.bot_ids);
    knowledge_queue::clear_later(
        tx,
        source.workspace_id,
        ("shopify", source.integration_id),
        &bots.unwrap_or_default(),
    )
    .await?;
    Ok(())
}

/// Keeps what is stored about the customer for the workspace to send them.
async fn data_request(conn: &mut PgConnection, source: &Source<'_>, request: &CustomerRequest) -> Result<()> {
    let Some(data_request) = &request.data_request else {
        return Err(Failure::Unusable("the data request has no id".into()));
    };
    let orders = shopify_orders::of_customer(conn, source.integration_id, &customer(request)).await?;
    let subject = json!({
        "id": request.customer.id,
        "email": request.customer.email,
    });
    let export = json!({ "orders": orders });
    shopify_orders::record_data_request(conn, source, data_request.id, &subject, &export).await?;
    Ok(())
}
