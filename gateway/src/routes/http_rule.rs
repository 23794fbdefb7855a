//! Reading `google.api.http` options out of method descriptors.

use http::Method;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};
use proto::google::api::{HttpRule, http_rule::Pattern};

use super::path_template::{PathTemplate, TemplateError};

const HTTP_EXTENSION: &str = "google.api.http";
const SCOPE_EXTENSION: &str = "platform.required_scope";
const STATUS_EXTENSION: &str = "platform.success_status";
const STREAM_EXTENSION: &str = "platform.event_stream";
const INBOUND_EXTENSION: &str = "platform.inbound_webhook";
/// Where inbound webhook routes live, and only they.
pub const INBOUND_PREFIX: &str = "/hooks/";
/// The request field an inbound webhook's headers go into.
pub const INBOUND_HEADERS_FIELD: &str = "headers";

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{method}: {reason}")]
    Invalid { method: String, reason: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{method} is public (google.api.http) but declares no platform.required_scope")]
    MissingScope { method: String },
    #[error("no upstream is configured for route {path}; add its prefix to GATEWAY_ROUTES")]
    NoUpstream { path: String },
}

pub struct Binding {
    pub http_method: Method,
    /// Empty for an inbound webhook, which has no principal.
    pub required_scope: String,
    pub template: PathTemplate,
    pub body: String,
    pub response_body: String,
}

/// The REST bindings of `method`: its rule plus `additional_bindings`.
/// Methods without the option are not public and get none.
pub fn bindings(pool: &DescriptorPool, method: &MethodDescriptor) -> Result<Vec<Binding>, RouteError> {
    let Some(extension) = pool.get_extension_by_name(HTTP_EXTENSION) else {
        return Ok(Vec::new());
    };
    let options = method.options();
    if !options.has_extension(&extension) {
        return Ok(Vec::new());
    }
    let invalid = |reason: String| RouteError::Invalid {
        method: method.full_name().to_owned(),
        reason,
    };
    let rule: HttpRule = match options.get_extension(&extension).as_ref() {
        Value::Message(message) => decode(message).map_err(invalid)?,
        _ => return Err(invalid("google.api.http is not a message".into())),
    };
    let inbound = inbound_webhook(pool, method);
    let scope = match inbound {
        true => String::new(),
        false => required_scope(pool, method).ok_or_else(|| RouteError::MissingScope {
            method: method.full_name().to_owned(),
        })?,
    };
    let mut out = Vec::new();
    collect(&rule, &scope, method, &mut out, true).map_err(|e| match e {
        Ok(reason) => invalid(reason),
        Err(template) => RouteError::Template(template),
    })?;
    for binding in &out {
        check_inbound(method, binding, inbound).map_err(invalid)?;
    }
    Ok(out)
}

/// Whether the method is an inbound webhook (`platform.inbound_webhook`).
pub fn inbound_webhook(pool: &DescriptorPool, method: &MethodDescriptor) -> bool {
    matches!(method_option(pool, method, INBOUND_EXTENSION), Some(Value::Bool(true)))
}

/// An inbound webhook lives under `/hooks/`, takes its body as bytes and
/// has a place for the headers; nothing else lives under `/hooks/`.
fn check_inbound(method: &MethodDescriptor, binding: &Binding, inbound: bool) -> Result<(), String> {
    let under_hooks = binding.template.as_str().starts_with(INBOUND_PREFIX);
    if !inbound {
        return match under_hooks {
            true => Err(format!(
                "only platform.inbound_webhook routes may live under {INBOUND_PREFIX}"
            )),
            false => Ok(()),
        };
    }
    if !under_hooks {
        return Err(format!("an inbound webhook's path must start with {INBOUND_PREFIX}"));
    }
    let input = method.input();
    let body = input.get_field_by_name(&binding.body);
    if !body.is_some_and(|f| f.kind() == prost_reflect::Kind::Bytes && !f.is_list()) {
        return Err("an inbound webhook's body must name a bytes field of its request".into());
    }
    let headers = input.get_field_by_name(INBOUND_HEADERS_FIELD);
    let string_map = headers.is_some_and(|f| match f.kind() {
        prost_reflect::Kind::Message(entry) if f.is_map() => {
            entry.map_entry_key_field().kind() == prost_reflect::Kind::String
                && entry.map_entry_value_field().kind() == prost_reflect::Kind::String
        }
        _ => false,
    });
    if !string_map {
        return Err(format!(
            "an inbound webhook's request needs a map<string, string> {INBOUND_HEADERS_FIELD}"
        ));
    }
    Ok(())
}

/// The method's `platform.required_scope`, if it declares one.
fn required_scope(pool: &DescriptorPool, method: &MethodDescriptor) -> Option<String> {
    match method_option(pool, method, SCOPE_EXTENSION)? {
        Value::String(scope) if !scope.is_empty() => Some(scope),
        _ => None,
    }
}

fn method_option(pool: &DescriptorPool, method: &MethodDescriptor, name: &str) -> Option<Value> {
    let extension = pool.get_extension_by_name(name)?;
    let options = method.options();
    options
        .has_extension(&extension)
        .then(|| options.get_extension(&extension).into_owned())
}

/// The HTTP status of a successful answer: `platform.success_status`, or 200.
pub fn success_status(pool: &DescriptorPool, method: &MethodDescriptor) -> Result<http::StatusCode, RouteError> {
    match method_option(pool, method, STATUS_EXTENSION) {
        None => Ok(http::StatusCode::OK),
        Some(Value::I32(code)) => u16::try_from(code)
            .ok()
            .and_then(|c| http::StatusCode::from_u16(c).ok())
            .filter(|c| c.is_success())
            .ok_or_else(|| RouteError::Invalid {
                method: method.full_name().to_owned(),
                reason: format!("platform.success_status {code} is not a 2xx status"),
            }),
        Some(_) => Err(RouteError::Invalid {
            method: method.full_name().to_owned(),
            reason: "platform.success_status is not an int32".into(),
        }),
    }
}

/// The server-streaming sibling named by `platform.event_stream`, checked:
/// same service, same request type, streams its answers.
pub fn event_stream(pool: &DescriptorPool, method: &MethodDescriptor) -> Result<Option<MethodDescriptor>, RouteError> {
    let Some(Value::String(name)) = method_option(pool, method, STREAM_EXTENSION) else {
        return Ok(None);
    };
    let invalid = |reason: String| RouteError::Invalid {
        method: method.full_name().to_owned(),
        reason,
    };
    let sibling = method
        .parent_service()
        .methods()
        .find(|m| m.name() == name)
        .ok_or_else(|| {
            invalid(format!(
                "platform.event_stream names {name}, which is not a method of this service"
            ))
        })?;
    if !sibling.is_server_streaming() || sibling.is_client_streaming() {
        return Err(invalid(format!(
            "platform.event_stream {name} must be server-streaming only"
        )));
    }
    if sibling.input() != method.input() {
        return Err(invalid(format!(
            "platform.event_stream {name} must take {}",
            method.input().full_name()
        )));
    }
    Ok(Some(sibling))
}

fn decode(message: &DynamicMessage) -> Result<HttpRule, String> {
    message.transcode_to::<HttpRule>().map_err(|e| e.to_string())
}

type CollectError = Result<String, TemplateError>;

fn collect(
    rule: &HttpRule,
    scope: &str,
    method: &MethodDescriptor,
    out: &mut Vec<Binding>,
    top: bool,
) -> Result<(), CollectError> {
    let (http_method, path) = match &rule.pattern {
        Some(Pattern::Get(p)) => (Method::GET, p),
        Some(Pattern::Put(p)) => (Method::PUT, p),
        Some(Pattern::Post(p)) => (Method::POST, p),
        Some(Pattern::Delete(p)) => (Method::DELETE, p),
        Some(Pattern::Patch(p)) => (Method::PATCH, p),
        Some(Pattern::Custom(c)) => (
            Method::from_bytes(c.kind.as_bytes()).map_err(|_| Ok(format!("bad custom method {:?}", c.kind)))?,
            &c.path,
        ),
        None => return Err(Ok("google.api.http has no pattern".into())),
    };
    let template = PathTemplate::parse(path).map_err(Err)?;
    check_field(method, &rule.body, true).map_err(Ok)?;
    check_field(method, &rule.response_body, false).map_err(Ok)?;
    out.push(Binding {
        http_method,
        required_scope: scope.to_owned(),
        template,
        body: rule.body.clone(),
        response_body: rule.response_body.clone(),
    });
    if top {
        for extra in &rule.additional_bindings {
            collect(extra, scope, method, out, false)?;
        }
    }
    Ok(())
}

fn check_field(method: &MethodDescriptor, name: &str, input: bool) -> Result<(), String> {
    if name.is_empty() || (input && name == "*") {
        return Ok(());
    }
    let message = if input { method.input() } else { method.output() };
    message
        .get_field_by_name(name)
        .map(|_| ())
        .ok_or_else(|| format!("body field {name:?} is not a field of {}", message.full_name()))
}
