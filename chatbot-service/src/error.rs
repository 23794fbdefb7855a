//! The service's one error type, turned into a gRPC status at the edge.

use std::borrow::Cow;

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    InvalidArgument { field: Cow<'static, str>, reason: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A fault of this service; the detail is logged, never sent.
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument { field, reason } => service_runtime::field_error::invalid_argument(&field, &reason),
            Error::NotFound { .. } => Status::not_found(error.to_string()),
            Error::FailedPrecondition(message) => Status::failed_precondition(message),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::Database(source) => service_runtime::database::internal_error(source),
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
