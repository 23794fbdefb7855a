//! The service's errors: the vocabulary every gRPC service shares
//! (`service_runtime::error::ServiceError`), turned into a status at the edge.

pub use service_runtime::error::ServiceError as Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;
