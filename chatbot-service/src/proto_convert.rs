//! Stored values in their protobuf forms, with this service's bound on
//! metadata.

use prost_types::Struct;
use serde_json::Value;
pub use service_runtime::{proto_json::json_to_struct, time::timestamp};

use crate::error::Result;

/// Largest metadata object accepted, serialised.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Metadata from a request, as a JSON object for storage (absent = `{}`).
pub fn metadata_to_json(field: &'static str, metadata: Option<Struct>) -> Result<Value> {
    service_runtime::proto_json::struct_to_json(field, metadata, MAX_METADATA_BYTES)
}
