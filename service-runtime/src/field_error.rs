//! The gRPC form of "this request field is wrong".
//!
//! The field's name travels twice: in the status message for people, and in
//! the `x-error-field` trailer so the gateway can put it in the problem
//! document without parsing prose.

use tonic::{Status, metadata::MetadataValue};

pub const ERROR_FIELD_KEY: &str = "x-error-field";

/// INVALID_ARGUMENT naming `field`.
pub fn invalid_argument(field: &str, reason: &str) -> Status {
    let mut status = Status::invalid_argument(format!("{field}: {reason}"));
    if let Ok(value) = MetadataValue::try_from(field) {
        status.metadata_mut().insert(ERROR_FIELD_KEY, value);
    }
    status
}
