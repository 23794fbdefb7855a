//! Who is calling, as the gateway tells the services in gRPC metadata.
//!
//! The gateway is the only component that sees credentials; it authenticates
//! once and forwards the principal in these keys. Services believe them only
//! as vouched for by the call's token ([`crate::calls`]), which a layer in
//! front of every service checks before a handler runs.

use tonic::{Request, Status, metadata::MetadataMap};

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
    /// The principal of a call whose token checked out (the call check
    /// puts it in the request's extensions, nothing else does): without a
    /// workspace the call is UNAUTHENTICATED, because every query is
    /// scoped by it.
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        request
            .extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("the call names no workspace"))
    }

    /// The principal in metadata values a call token covered.
    pub(crate) fn from_verified(workspace_id: &str, principal_id: &str, scopes: &str) -> Option<Self> {
        let workspace_id = workspace_id.trim();
        (!workspace_id.is_empty()).then(|| Self {
            workspace_id: workspace_id.to_owned(),
            principal_id: principal_id.trim().to_owned(),
            scopes: scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        })
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
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
