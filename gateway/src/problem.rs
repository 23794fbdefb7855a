//! RFC 9457 problem details: every error the gateway returns, as
//! `application/problem+json` (or `application/problem+xml` for XML clients),
//! carrying the request id.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};

use service_runtime::error;

use crate::{request_id, status_map, transcode::response::Format};

const TYPE_BASE: &str = "https://chatbot-platform.dev/problems/";

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// Short name, the last part of the problem `type` URI.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, title, detail)
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.retain(|(existing, _)| *existing != name);
        self.headers.push((name, value));
        self
    }

    pub fn not_found_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "route-not-found",
            "No such route",
            format!("no API route matches {path}"),
        )
    }

    pub fn method_not_allowed(method: &Method, allow: &[Method]) -> Self {
        let list = allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("{method} is not allowed here; use {list}"),
        )
        .with_header(
            header::ALLOW,
            HeaderValue::from_str(&list).expect("method names are valid header text"),
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Request body too large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    pub fn headers_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            format!("the request's headers exceed the limit of {limit} bytes together"),
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            detail,
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"api\""),
        )
    }

    /// 401 for a credential that was presented but refused (RFC 6750 §3.1).
    pub fn invalid_token(reason: &str) -> Self {
        let safe: String = reason.chars().filter(|c| *c != '"' && *c != '\\').collect();
        let challenge = format!("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{safe}\"");
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
            reason,
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer realm=\"api\"")),
        )
    }

    /// 403 with the RFC 6750 challenge naming the missing scope.
    pub fn insufficient_scope(scope: &str) -> Self {
        let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient-scope",
            "Insufficient scope",
            format!("this call needs the {scope} scope, which the credential does not hold"),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).expect("scopes are header-safe ASCII"),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed",
        )
    }

    /// A query parameter that is not a field of the request.
    pub fn unknown_parameter(name: &str) -> Self {
        Self::bad_request(
            "unknown-parameter",
            "Unknown query parameter",
            format!("query parameter {name:?} is not a field of this request"),
        )
        .with_field(name)
    }

    /// A resource of the gateway's own that the caller cannot see.
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("{kind} {id} not found"),
        )
    }

    /// A failure of the gateway's own database: logged here with its
    /// cause, 500 with no detail on the wire.
    pub fn database(error: sqlx::Error) -> Self {
        tracing::error!(%error, "gateway store");
        Self::internal()
    }

    pub fn invalid_argument(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self::bad_request("invalid-argument", "Invalid argument", format!("{field}: {reason}")).with_field(field)
    }

    /// The problem for a gRPC status from an upstream.
    pub fn from_status(status: &tonic::Status) -> Self {
        let code = status.code();
        let http = status_map::http_status(code);
        let title = status_map::title(code);
        let detail = match code {
            // Upstream transport errors can name internal hosts; say what
            // happened without them.
            tonic::Code::Unavailable => "the service behind this route is unavailable; retry later".to_owned(),
            tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
                "the request could not be completed".to_owned()
            }
            _ => status.message().to_owned(),
        };
        let mut problem = Self::new(http, status_map::slug(code), title, detail);
        if status
            .metadata()
            .get(error::ERROR_KIND_KEY)
            .and_then(|v| v.to_str().ok())
            == Some(error::UNPROCESSABLE)
        {
            // The request was fine; the system it names refused it.
            problem.status = StatusCode::UNPROCESSABLE_ENTITY;
            problem.kind = "unprocessable";
            problem.title = "Refused by the other system";
        }
        if let Some(field) = status
            .metadata()
            .get(service_runtime::field_error::ERROR_FIELD_KEY)
            .and_then(|v| v.to_str().ok())
        {
            problem.field = Some(field.to_owned());
        }
        if code == tonic::Code::Unavailable {
            problem = problem.with_header(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        problem
    }

    /// The problem document (RFC 9457) as JSON.
    pub fn body(&self, request_id: &str, instance: &str) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("{TYPE_BASE}{}", self.kind)));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.insert("instance".into(), json!(instance));
        body.insert("request_id".into(), json!(request_id));
        if let Some(field) = &self.field {
            body.insert("field".into(), json!(field));
        }
        Value::Object(body)
    }

    /// The response for a request, in the format the client asked for.
    pub fn render(self, context: &ProblemContext) -> Response {
        let body = self.body(&context.request_id, &context.instance);
        let (content_type, bytes) = match context.format {
            Format::Json => (
                "application/problem+json",
                serde_json::to_vec(&body).unwrap_or_default(),
            ),
            Format::Xml => {
                let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
                out.push_str("<problem xmlns=\"urn:ietf:rfc:7807\">");
                if let Value::Object(map) = &body {
                    for (k, v) in map {
                        crate::transcode::xml_element(&mut out, k, v);
                    }
                }
                out.push_str("</problem>");
                ("application/problem+xml", out.into_bytes())
            }
        };
        let mut response = (self.status, [(header::CONTENT_TYPE, content_type)], bytes).into_response();
        response
            .headers_mut()
            .extend(self.headers.into_iter().map(|(k, v)| (Some(k), v)));
        response
    }
}

/// What a problem response needs from its request.
#[derive(Debug, Clone)]
pub struct ProblemContext {
    pub request_id: String,
    pub instance: String,
    pub format: Format,
}

impl ProblemContext {
    pub fn of(parts: &http::request::Parts) -> Self {
        Self::from_head(&parts.headers, &parts.uri)
    }

    pub fn of_request<B>(request: &http::Request<B>) -> Self {
        Self::from_head(request.headers(), request.uri())
    }

    fn from_head(headers: &HeaderMap, uri: &http::Uri) -> Self {
        Self {
            request_id: request_id::of(headers),
            instance: uri.path().to_owned(),
            format: Format::negotiate(headers, uri.query()),
        }
    }
}

/// A problem that renders itself against the request it answers; handlers
/// return `Result<_, ProblemResponse>`. Boxed: errors stay small to move.
pub struct ProblemResponse(Box<(Problem, ProblemContext)>);

impl ProblemResponse {
    pub fn new(problem: Problem, context: ProblemContext) -> Self {
        Self(Box::new((problem, context)))
    }
}

impl IntoResponse for ProblemResponse {
    fn into_response(self) -> Response {
        let (problem, context) = *self.0;
        problem.render(&context)
    }
}

#[cfg(test)]
mod tests {
    use service_runtime::error::ServiceError;

    use super::*;

    #[test]
    fn a_refusal_by_the_named_system_is_422_with_its_reason() {
        let status = tonic::Status::from(ServiceError::Unprocessable(
            "password authentication failed for user \"shop\"".into(),
        ));
        let problem = Problem::from_status(&status);
        assert_eq!(problem.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem.kind, "unprocessable");
        assert_eq!(problem.detail, "password authentication failed for user \"shop\"");
    }

    #[test]
    fn other_failed_preconditions_stay_400() {
        let problem = Problem::from_status(&tonic::Status::failed_precondition("conversation is ended"));
        assert_eq!(problem.status, StatusCode::BAD_REQUEST);
        assert_eq!(problem.kind, "failed-precondition");
    }
}
