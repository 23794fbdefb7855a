//! The events this service emits, built from the rows the store returns:
//! the integration as the API shows it, never its credentials.

use event_pipeline::{Envelope, catalog};
use serde_json::json;

use crate::store::integrations::IntegrationRow;

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
