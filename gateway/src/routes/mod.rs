//! The REST route table, built once at start-up from the descriptor set's
//! `google.api.http` annotations. Adding a public endpoint means annotating
//! an RPC; nothing here changes.

mod http_rule;
pub mod path_template;

use std::sync::Arc;

use http::Method;
use prost_reflect::{DescriptorPool, MethodDescriptor};

pub use http_rule::{INBOUND_HEADERS_FIELD, INBOUND_PREFIX, RouteError};
use path_template::{Binding, PathTemplate};

/// `/package.Service/Method`, the gRPC path of `method`.
fn grpc_path_of(method: &MethodDescriptor) -> Result<http::uri::PathAndQuery, RouteError> {
    format!("/{}/{}", method.parent_service().full_name(), method.name())
        .parse()
        .map_err(|_| RouteError::Invalid {
            method: method.full_name().to_owned(),
            reason: "the gRPC path is not a valid URI path".into(),
        })
}

/// One REST binding of one RPC.
#[derive(Debug)]
pub struct Route {
    pub http_method: Method,
    pub template: PathTemplate,
    /// The template as text, shared with the usage records of its requests.
    pub label: Arc<str>,
    /// The scope a caller must hold (`platform.required_scope`); empty for
    /// an inbound webhook.
    pub required_scope: String,
    /// Called by another system's webhooks, with no principal
    /// (`platform.inbound_webhook`).
    pub inbound_webhook: bool,
    pub method: MethodDescriptor,
    /// `""` (no body), `"*"` (the whole request) or a request field name.
    pub body: String,
    /// `""` (the whole response) or the response field to return.
    pub response_body: String,
    /// Index of the upstream serving this route.
    pub upstream: usize,
    /// `/package.Service/Method`, the gRPC path.
    pub grpc_path: http::uri::PathAndQuery,
    /// The status of a successful answer (`platform.success_status`).
    pub success_status: http::StatusCode,
    /// Called instead for `Accept: text/event-stream` (`platform.event_stream`).
    pub event_stream: Option<EventStream>,
}

/// A server-streaming RPC whose messages become Server-Sent Events.
#[derive(Debug)]
pub struct EventStream {
    pub method: MethodDescriptor,
    pub grpc_path: http::uri::PathAndQuery,
}

/// What a request path and method resolve to.
pub enum Resolution<'a> {
    Found(&'a Route, Vec<Binding>),
    /// The path exists, but not for this method; `allow` lists the methods.
    MethodNotAllowed {
        allow: Vec<Method>,
    },
    NotFound,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Reads every annotated method of `pool`; `upstream_for` picks the
    /// upstream of a route from its literal path prefix.
    pub fn build(pool: &DescriptorPool, upstream_for: impl Fn(&str) -> Option<usize>) -> Result<Self, RouteError> {
        let mut routes = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                let success_status = http_rule::success_status(pool, &method)?;
                let inbound_webhook = http_rule::inbound_webhook(pool, &method);
                for binding in http_rule::bindings(pool, &method)? {
                    let prefix = binding.template.literal_prefix();
                    let upstream = upstream_for(&prefix).ok_or_else(|| RouteError::NoUpstream {
                        path: binding.template.as_str().to_owned(),
                    })?;
                    let grpc_path = grpc_path_of(&method)?;
                    let event_stream = http_rule::event_stream(pool, &method)?
                        .map(|m| grpc_path_of(&m).map(|grpc_path| EventStream { method: m, grpc_path }))
                        .transpose()?;
                    routes.push(Arc::new(Route {
                        http_method: binding.http_method,
                        label: Arc::from(binding.template.as_str()),
                        template: binding.template,
                        required_scope: binding.required_scope,
                        inbound_webhook,
                        method: method.clone(),
                        body: binding.body,
                        response_body: binding.response_body,
                        upstream,
                        grpc_path,
                        success_status,
                        event_stream,
                    }));
                }
            }
        }
        // Most specific first, so `/bots/search` wins over `/bots/{bot_id}`.
        routes.sort_by_key(|r| std::cmp::Reverse(r.template.specificity()));
        Ok(Self { routes })
    }

    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(Arc::as_ref)
    }

    pub fn resolve(&self, method: &Method, path: &str) -> Resolution<'_> {
        let mut allow = Vec::new();
        for route in &self.routes {
            let Some(bindings) = route.template.matches(path) else {
                continue;
            };
            if route.http_method == *method {
                return Resolution::Found(route, bindings);
            }
            if !allow.contains(&route.http_method) {
                allow.push(route.http_method.clone());
            }
        }
        if allow.is_empty() {
            Resolution::NotFound
        } else {
            Resolution::MethodNotAllowed { allow }
        }
    }
}
