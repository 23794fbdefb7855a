//! The errors a gRPC service answers with, one vocabulary for every
//! service: each service's own failures convert into it, and it converts
//! into a `tonic::Status` once, at the edge. Database causes and internal
//! details are logged, never sent.

use std::borrow::Cow;

use ids::IdError;
use tonic::{Status, metadata::MetadataValue};

/// Trailer telling the gateway which kind of failure a status is, where
/// gRPC's codes are coarser than HTTP's: `unprocessable` (HTTP 422) on a
/// FAILED_PRECONDITION.
pub const ERROR_KIND_KEY: &str = "x-error-kind";
pub const UNPROCESSABLE: &str = "unprocessable";
/// `dependency` on an UNAVAILABLE: another system the service called is out
/// of reach, not the service itself, so the gateway neither retries the
/// call nor counts it against the service's breaker.
pub const DEPENDENCY: &str = "dependency";

/// Whether `status` blames another system the service depends on.
pub fn is_dependency_failure(status: &Status) -> bool {
    status.metadata().get(ERROR_KIND_KEY).and_then(|v| v.to_str().ok()) == Some(DEPENDENCY)
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: Cow<'static, str>, reason: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request was well formed, but the system it names refused it
    /// (a database that turns down the credentials, say): the reason is
    /// that system's own.
    #[error("{0}")]
    Unprocessable(String),
    /// The caller could not be authenticated (a webhook whose signature
    /// does not verify).
    #[error("{0}")]
    Unauthenticated(String),
    /// Another system the request needs is out of reach for now; the
    /// request may be sent again.
    #[error("{0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A fault of the service; the detail is logged, never sent.
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: Cow::Borrowed(field),
            reason: reason.into(),
        }
    }

    /// The same error with its field named inside a parent, such as
    /// `items[3].faq.question` for `faq.question` of the fourth item.
    pub fn within(self, parent: &str) -> Self {
        match self {
            Self::InvalidArgument { field, reason } => Self::InvalidArgument {
                field: Cow::Owned(format!("{parent}.{field}")),
                reason,
            },
            other => other,
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound { kind, id: id.into() }
    }
}

/// A caller-supplied id that names nothing: a missing one is an invalid
/// argument, a malformed one is simply not found.
impl From<IdError> for ServiceError {
    fn from(error: IdError) -> Self {
        match error {
            IdError::Missing { field } => Self::invalid(field, "is required"),
            IdError::Unknown { kind, value } => Self::not_found(kind, value),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::InvalidArgument { field, reason } => crate::field_error::invalid_argument(&field, &reason),
            ServiceError::NotFound { .. } => Status::not_found(error.to_string()),
            ServiceError::FailedPrecondition(message) => Status::failed_precondition(message),
            ServiceError::AlreadyExists(message) => Status::already_exists(message),
            ServiceError::Unprocessable(reason) => {
                let mut status = Status::failed_precondition(reason);
                status
                    .metadata_mut()
                    .insert(ERROR_KIND_KEY, MetadataValue::from_static(UNPROCESSABLE));
                status
            }
            ServiceError::Unauthenticated(message) => Status::unauthenticated(message),
            ServiceError::Unavailable(message) => {
                let mut status = Status::unavailable(message);
                status
                    .metadata_mut()
                    .insert(ERROR_KIND_KEY, MetadataValue::from_static(DEPENDENCY));
                status
            }
            ServiceError::Database(source) => crate::database::internal_error(source),
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_id_names_its_field_and_a_malformed_one_is_not_found() {
        let missing = Status::from(ServiceError::from(IdError::Missing { field: "bot_id" }));
        assert_eq!(missing.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            missing.metadata().get(crate::field_error::ERROR_FIELD_KEY).unwrap(),
            "bot_id"
        );
        let unknown = Status::from(ServiceError::from(IdError::Unknown {
            kind: "bot",
            value: "conv_1".into(),
        }));
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        assert_eq!(unknown.message(), "bot conv_1 not found");
    }

    #[test]
    fn nested_fields_are_named_with_their_parent() {
        let error = ServiceError::invalid("faq.question", "is required").within("items[3]");
        assert_eq!(error.to_string(), "items[3].faq.question: is required");
    }

    #[test]
    fn a_refusal_by_another_system_is_marked_for_the_gateway() {
        let status = Status::from(ServiceError::Unprocessable("password authentication failed".into()));
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(status.message(), "password authentication failed");
        assert_eq!(status.metadata().get(ERROR_KIND_KEY).unwrap(), UNPROCESSABLE);
    }

    #[test]
    fn another_systems_outage_is_told_from_the_services_own() {
        let status = Status::from(ServiceError::Unavailable("Shopify could not be reached".into()));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(is_dependency_failure(&status));
        assert!(!is_dependency_failure(&Status::unavailable("connection refused")));
    }

    #[test]
    fn internal_causes_never_reach_the_caller() {
        let status = Status::from(ServiceError::Internal("table bots is corrupt".into()));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }
}
