//! gRPC status codes to HTTP statuses, by the table grpc-gateway and Envoy
//! use, so clients of either see the same answers here.

use http::StatusCode;
use tonic::Code;

pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status code"),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A stable, URL-safe name of the problem, used in the problem `type`.
pub fn slug(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::InvalidArgument | Code::OutOfRange => "invalid-argument",
        Code::FailedPrecondition => "failed-precondition",
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "permission-denied",
        Code::NotFound => "not-found",
        Code::AlreadyExists => "already-exists",
        Code::Aborted => "conflict",
        Code::ResourceExhausted => "rate-limited",
        Code::Unimplemented => "not-implemented",
        Code::Unavailable => "upstream-unavailable",
        Code::DeadlineExceeded => "upstream-timeout",
        Code::Cancelled => "cancelled",
        Code::Unknown | Code::Internal | Code::DataLoss => "internal",
    }
}

/// The problem `title` for a code: one fixed phrase per kind of problem.
pub fn title(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::InvalidArgument | Code::OutOfRange => "Invalid argument",
        Code::FailedPrecondition => "Not allowed in the current state",
        Code::Unauthenticated => "Authentication required",
        Code::PermissionDenied => "Permission denied",
        Code::NotFound => "Not found",
        Code::AlreadyExists => "Already exists",
        Code::Aborted => "Conflict",
        Code::ResourceExhausted => "Too many requests",
        Code::Unimplemented => "Not implemented",
        Code::Unavailable => "Service unavailable",
        Code::DeadlineExceeded => "Upstream timeout",
        Code::Cancelled => "Request cancelled",
        Code::Unknown | Code::Internal | Code::DataLoss => "Internal error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_as_grpc_gateway_does() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::OutOfRange, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::ResourceExhausted, 429),
            (Code::Cancelled, 499),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
            (Code::Unknown, 500),
            (Code::DataLoss, 500),
        ];
        for (code, status) in table {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }
}
