//! The events this service emits, built from the rows the store returns:
//! the integration as the API shows it, never its credentials.

use event_pipeline::{Envelope, catalog};
use serde_json::json;

use chrono::{DateTime, Utc};

use crate::store::{integrations::IntegrationRow, salesforce_leads::LeadRow, sync_runs::SyncRunRow};

fn integration(event_type: &str, workspace_id: &str, row: &IntegrationRow) -> Envelope {
    let view = serde_json::to_value(row).expect("rows serialise to JSON");
    Envelope::new(event_type, workspace_id, json!({ "integration": view }))
}

pub fn connected(workspace_id: &str, row: &IntegrationRow) -> Envelope {
    integration(catalog::INTEGRATION_CONNECTED, workspace_id, row)
}

pub fn disconnected(workspace_id: &str, row: &IntegrationRow) -> Envelope {
    integration(catalog::INTEGRATION_DISCONNECTED, workspace_id, row)
}

/// `data.sync`: the run, its counts (created, updated, removed, failed).
pub fn sync_completed(workspace_id: &str, run: &SyncRunRow) -> Envelope {
    let data = json!({ "integration_id": run.integration_id, "sync": run });
    Envelope::new(catalog::INTEGRATION_SYNC_COMPLETED, workspace_id, data)
}

/// `data.reason` and `data.next_retry_at` (null: none is planned).
pub fn sync_failed(workspace_id: &str, run: &SyncRunRow, next_retry_at: Option<DateTime<Utc>>) -> Envelope {
    let data = json!({
        "integration_id": run.integration_id,
        "sync": run,
        "reason": run.last_error,
        "next_retry_at": next_retry_at,
    });
    Envelope::new(catalog::INTEGRATION_SYNC_FAILED, workspace_id, data)
}

/// A lead reached Salesforce: `data.lead`, and counts as a sync's.
pub fn lead_synced(lead: &LeadRow, created: bool) -> Envelope {
    let counts = json!({"created": created as i32, "updated": !created as i32, "removed": 0, "failed": 0});
    let data = json!({ "integration_id": lead.integration_id, "lead": lead, "counts": counts });
    Envelope::new(catalog::INTEGRATION_SYNC_COMPLETED, &lead.workspace_id, data)
}

/// A lead did not reach Salesforce: `data.reason`, and `data.next_retry_at`
/// (null: it will not be retried).
pub fn lead_failed(lead: &LeadRow, next_retry_at: Option<DateTime<Utc>>) -> Envelope {
    let data = json!({
        "integration_id": lead.integration_id,
        "lead": lead,
        "reason": lead.last_error,
        "next_retry_at": next_retry_at,
    });
    Envelope::new(catalog::INTEGRATION_SYNC_FAILED, &lead.workspace_id, data)
}

/// A product whose stock crossed a line, as events show it.
pub struct StockedProduct<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub price: Option<&'a str>,
    pub stock: i64,
}

/// A product that crossed into low stock or out of stock.
pub fn stock(
    workspace_id: &str,
    integration_id: &str,
    product: StockedProduct<'_>,
    out: bool,
    threshold: i64,
) -> Envelope {
    let kind = if out {
        catalog::PRODUCT_OUT_OF_STOCK
    } else {
        catalog::PRODUCT_LOW_STOCK
    };
    let data = json!({
        "integration_id": integration_id,
        "product": {"id": product.id, "title": product.title, "price": product.price, "stock": product.stock},
        "threshold": threshold,
    });
    Envelope::new(kind, workspace_id, data)
}
