//! The OpenAPI 3.1 description of the public API, served at
//! `/openapi.json` and `/openapi.yaml`. It is generated at start-up from
//! the same descriptor set and route table that route requests, so it
//! cannot drift from them: every transcoded route with its parameters,
//! bodies and responses, the proto comments as descriptions. The gateway's
//! own routes (API keys, OAuth clients and endpoints, the admin API) are
//! described in `gateway_paths.json`, beside the code that serves them.

mod common;
mod operations;
mod schemas;
mod yaml;

use std::sync::Arc;

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use prost_reflect::DescriptorPool;
use serde_json::{Map, Value, json};

use crate::{AppState, auth::scopes, routes::RouteTable};
use schemas::{Comments, Direction, Schemas};

/// The document, rendered once.
pub struct OpenApi {
    json: Bytes,
    yaml: Bytes,
}

impl OpenApi {
    pub fn build(routes: &RouteTable, pool: &DescriptorPool, public_url: &str) -> Self {
        let document = document(routes, pool, public_url);
        Self {
            json: serde_json::to_vec(&document).expect("a JSON value serialises").into(),
            yaml: yaml::render(&document).into(),
        }
    }
}

pub async fn json(State(state): State<Arc<AppState>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        state.openapi.json.clone(),
    )
        .into_response()
}

pub async fn yaml(State(state): State<Arc<AppState>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/yaml")],
        state.openapi.yaml.clone(),
    )
        .into_response()
}

/// The gateway's own routes and their schemas, with `$ref-*` shorthands
/// for what they share with the generated routes.
const GATEWAY_PATHS: &str = include_str!("gateway_paths.json");

fn document(routes: &RouteTable, pool: &DescriptorPool, public_url: &str) -> Value {
    let comments = Comments::of(pool);
    let mut fragment: Value = serde_json::from_str(GATEWAY_PATHS).expect("gateway_paths.json is JSON");
    expand(&mut fragment);
    let proto_refs = proto_references(&fragment, pool);
    let outputs = routes
        .routes()
        .flat_map(|r| {
            [
                Some(r.method.output()),
                r.event_stream.as_ref().map(|s| s.method.output()),
            ]
        })
        .flatten()
        .chain(proto_refs.iter().cloned());
    let mut schemas = Schemas::new(&comments, outputs);
    let mut paths = Map::new();
    for route in routes.routes() {
        let (path, mut operation) = operations::operation(route, &mut schemas, &comments);
        let method = route.http_method.as_str().to_ascii_lowercase();
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        if entry.get(&method).is_some() {
            // Two RPCs bound to one path and method: the first one routes.
            continue;
        }
        operation["operationId"] = json!(unique_id(&operation, route));
        entry[method] = operation;
    }
    for message in &proto_refs {
        schemas.message(message, Direction::Output);
    }
    if let Some(Value::Object(own)) = fragment.get_mut("paths").map(Value::take) {
        paths.extend(own);
    }
    let mut all_schemas: Map<String, Value> = schemas.defined.into_iter().collect();
    if let Some(Value::Object(own)) = fragment.get_mut("schemas").map(Value::take) {
        all_schemas.extend(own);
    }
    let (name, problem) = common::problem();
    all_schemas.insert(name, problem);
    all_schemas.insert("gateway.Scope".into(), json!({"type": "string", "enum": scopes::ALL}));
    let mut components = common::components(public_url);
    components["schemas"] = Value::Object(all_schemas);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Chatbot platform API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Conversations, messages, bots and their knowledge, integrations, analytics and webhooks. \
                Every error is an RFC 9457 problem document; every reply can be had as XML with `?format=xml`.",
        },
        "servers": [
            {"url": "/", "description": "The gateway serving this document"},
            {"url": public_url.trim_end_matches('/'), "description": "GATEWAY_PUBLIC_URL"},
        ],
        "tags": tags(routes, &comments),
        "paths": paths,
        "webhooks": common::webhooks(),
        "components": components,
    })
}

/// The RPC's own name, or qualified by its service when another service
/// has an RPC of that name (operation ids must be unique).
fn unique_id(operation: &Value, route: &crate::routes::Route) -> String {
    let name = operation["operationId"].as_str().unwrap_or_default();
    let shared = route
        .method
        .parent_pool()
        .services()
        .filter(|s| s.methods().any(|m| m.name() == name))
        .count();
    match shared {
        0 | 1 => name.to_owned(),
        _ => format!("{}_{name}", route.method.parent_service().name()),
    }
}

/// One tag per gRPC service, described by its comment, and the gateway's own.
fn tags(routes: &RouteTable, comments: &Comments) -> Value {
    let mut seen = Vec::new();
    let mut tags = Vec::new();
    for route in routes.routes() {
        let service = route.method.parent_service();
        if seen.contains(&service.full_name().to_owned()) {
            continue;
        }
        seen.push(service.full_name().to_owned());
        let mut tag = json!({"name": service.name()});
        if let Some(comment) = comments.at(service.parent_file().name(), service.path()) {
            tag["description"] = json!(comment);
        }
        tags.push(tag);
    }
    for (name, description) in [
        ("ApiKeys", "A workspace's API keys."),
        ("OAuthClients", "A workspace's OAuth 2.0 clients."),
        ("OAuth", "The OAuth 2.0 authorization server."),
        ("Platform", "Health and this description."),
        ("Admin", "The platform operator's API (`GATEWAY_ADMIN_TOKEN`)."),
    ] {
        tags.push(json!({"name": name, "description": description}));
    }
    Value::Array(tags)
}

/// Expands the fragment's shorthands: `{"$ref-headers": "api"}`, `{"$ref-content":
/// "<schema ref>"}` and a `"$ref-problems": "<kind>"` entry of a responses
/// object.
fn expand(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("$ref-headers").is_some() {
                *value = common::api_headers();
                return;
            }
            if let Some(Value::String(reference)) = map.get("$ref-content") {
                *value = common::json_and_xml(json!({"$ref": reference}));
                return;
            }
            if let Some(Value::String(kind)) = map.remove("$ref-problems")
                && let Value::Object(problems) = common::problems(&kind)
            {
                for (status, response) in problems {
                    map.entry(status).or_insert(response);
                }
            }
            map.values_mut().for_each(expand);
        }
        Value::Array(items) => items.iter_mut().for_each(expand),
        _ => {}
    }
}

/// The protobuf messages the fragment refers to by name.
fn proto_references(fragment: &Value, pool: &DescriptorPool) -> Vec<prost_reflect::MessageDescriptor> {
    let mut found = Vec::new();
    let mut walk = vec![fragment];
    while let Some(value) = walk.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref")
                    && let Some(name) = reference.strip_prefix("#/components/schemas/")
                    && let Some(message) = pool.get_message_by_name(name)
                {
                    found.push(message);
                }
                walk.extend(map.values());
            }
            Value::Array(items) => walk.extend(items),
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built() -> Value {
        let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let routes = RouteTable::build(&pool, |_| Some(0)).unwrap();
        document(&routes, &pool, "https://api.example.com/")
    }

    #[test]
    fn every_route_of_the_table_is_described_once_with_a_unique_operation_id() {
        let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        let routes = RouteTable::build(&pool, |_| Some(0)).unwrap();
        let document = document(&routes, &pool, "https://api.example.com");
        let mut ids = std::collections::HashSet::new();
        for (_, item) in document["paths"].as_object().unwrap() {
            for (_, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            }
        }
        for route in routes.routes() {
            let path =
                operations::operation(route, &mut Schemas::new(&Comments::of(&pool), []), &Comments::of(&pool)).0;
            let method = route.http_method.as_str().to_ascii_lowercase();
            assert!(
                document["paths"][&path][&method].is_object(),
                "{method} {path} is not described"
            );
        }
    }

    #[test]
    fn every_reference_resolves() {
        let document = built();
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"").skip(1).map(|r| r.split('"').next().unwrap()) {
            let pointer = reference.strip_prefix('#').expect("local references only");
            assert!(document.pointer(pointer).is_some(), "{reference} resolves to nothing");
        }
    }

    #[test]
    fn security_names_the_real_endpoints_and_each_route_its_scope() {
        let document = built();
        let flows = &document["components"]["securitySchemes"]["OAuth2"]["flows"];
        assert_eq!(
            flows["clientCredentials"]["tokenUrl"],
            "https://api.example.com/oauth/token"
        );
        let get = &document["paths"]["/api/v1/conversations/{conversation_id}"]["get"];
        assert_eq!(get["security"][2]["OAuth2"][0], "read:conversations");
        assert_eq!(get["parameters"][0]["in"], "path");
        assert!(get["responses"]["404"]["$ref"].is_string());
        let send = &document["paths"]["/api/v1/conversations/{conversation_id}/messages"]["post"];
        let body = &send["requestBody"]["content"]["application/json"]["schema"];
        assert!(
            body["properties"].get("conversation_id").is_none(),
            "the path carries it: {body}"
        );
        assert!(
            send["responses"]["200"]["content"]["text/event-stream"].is_object()
                || send["responses"]["201"]["content"]["text/event-stream"].is_object()
        );
    }
}
