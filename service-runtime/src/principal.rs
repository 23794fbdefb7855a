//! Who is calling, as the gateway tells the services in gRPC metadata.
//!
//! The gateway is the only component that sees credentials; it authenticates
//! once and forwards these keys. Services trust them because only the
//! gateway can reach them (network policy in Kubernetes).

use tonic::{Status, metadata::MetadataMap};

pub const WORKSPACE_ID: &str = "x-workspace-id";
pub const PRINCIPAL_ID: &str = "x-principal-id";
pub const SCOPES: &str = "x-scopes";
pub const REQUEST_ID: &str = "x-request-id";
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The authenticated caller of a gRPC request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub workspace_id: String,
    pub principal_id: String,
    pub scopes: Vec<String>,
}

impl Principal {
    /// Reads the principal from request metadata; without a workspace the
    /// call is UNAUTHENTICATED, because every query is scoped by it.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, Status> {
        let text = |key: &str| text(metadata, key);
        let workspace_id =
            text(WORKSPACE_ID).ok_or_else(|| Status::unauthenticated("missing x-workspace-id metadata"))?;
        Ok(Self {
            principal_id: text(PRINCIPAL_ID).unwrap_or_default(),
            scopes: text(SCOPES)
                .map(|s| s.split(' ').map(str::to_owned).collect())
                .unwrap_or_default(),
            workspace_id,
        })
    }
}

/// The request's idempotency key, if the caller sent one.
pub fn idempotency_key(metadata: &MetadataMap) -> Option<String> {
    text(metadata, IDEMPOTENCY_KEY)
}

/// The non-blank text of `key`.
fn text(metadata: &MetadataMap, key: &str) -> Option<String> {
    metadata
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}
