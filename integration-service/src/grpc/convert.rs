//! What the store holds, as the API's messages.

use proto::integration::v1::{DataRequest, Lead, LineItem, Order, Product, SyncCounts, SyncRun, Tracking};
use serde::Deserialize;
use service_runtime::{error::ServiceError, proto_json::json_to_struct, time::timestamp};

use crate::store::{
    db_products::DbProductView,
    salesforce_leads::LeadRow,
    shopify_catalog::ProductView,
    shopify_orders::{DataRequestRow, OrderView},
    sync_runs::SyncRunRow,
};

pub fn lead(row: LeadRow) -> Lead {
    Lead {
        conversation_id: row.id,
        status: row.status,
        lead_id: row.lead_id,
        fields: Some(json_to_struct(row.fields)),
        attempts: row.attempts,
        last_error: row.last_error,
        created_at: Some(timestamp(row.created_at)),
        synced_at: row.synced_at.map(timestamp),
    }
}

pub fn sync_run(row: SyncRunRow) -> SyncRun {
    SyncRun {
        id: row.id,
        integration_id: row.integration_id,
        trigger: row.trigger,
        status: row.status,
        phase: row.phase,
        pages: row.pages,
        counts: Some(SyncCounts {
            created: row.counts.created,
            updated: row.counts.updated,
            removed: row.counts.removed,
            failed: row.counts.failed,
        }),
        attempts: row.attempts,
        last_error: row.last_error,
        queued_at: Some(timestamp(row.queued_at)),
        started_at: row.started_at.map(timestamp),
        finished_at: row.finished_at.map(timestamp),
        next_attempt_at: Some(timestamp(row.next_attempt_at)),
    }
}

/// A product read from a workspace's own database.
pub fn database_product(view: DbProductView) -> Product {
    Product {
        id: 0,
        external_id: view.external_id,
        title: view.title,
        description: view.description,
        handle: String::new(),
        status: "active".into(),
        price_min: view.price.clone().unwrap_or_default(),
        price_max: view.price.unwrap_or_default(),
        stock: view.stock,
    }
}

pub fn product(view: ProductView) -> Product {
    Product {
        external_id: String::new(),
        id: view.product_id,
        title: view.title,
        description: view.description,
        handle: view.handle,
        status: view.status,
        price_min: view.price_min.unwrap_or_default(),
        price_max: view.price_max.unwrap_or_default(),
        stock: view.stock,
    }
}

pub fn order(view: OrderView) -> Order {
    Order {
        id: view.order_id,
        name: view.name,
        email: view.email,
        customer_id: view.customer_id,
        financial_status: view.financial_status,
        fulfillment_status: view.fulfillment_status,
        total_price: view.total_price,
        currency: view.currency,
        line_items: view
            .line_items
            .0
            .into_iter()
            .map(|l| LineItem {
                title: l.title,
                quantity: l.quantity,
            })
            .collect(),
        tracking: view
            .tracking
            .0
            .into_iter()
            .map(|t| Tracking {
                number: t.number,
                company: t.company,
                url: t.url,
            })
            .collect(),
        cancelled_at: view.cancelled_at.map(timestamp),
        created_at: view.created_at.map(timestamp),
        updated_at: view.updated_at.map(timestamp),
        external_id: String::new(),
        status: String::new(),
    }
}

/// A data request, its stored export read back into orders.
pub fn data_request(row: DataRequestRow) -> Result<DataRequest, ServiceError> {
    #[derive(Deserialize)]
    struct Export {
        orders: Vec<OrderView>,
    }
    let broken = |what: &str| ServiceError::Internal(format!("data request {}'s {what} does not read", row.id));
    let export: Export = serde_json::from_value(row.export).map_err(|_| broken("export"))?;
    Ok(DataRequest {
        id: row.id.parse().map_err(|_| broken("id"))?,
        customer_id: row.customer["id"].as_i64(),
        customer_email: row.customer["email"].as_str().unwrap_or_default().to_owned(),
        orders: export.orders.into_iter().map(order).collect(),
        received_at: Some(timestamp(row.created_at)),
    })
}
