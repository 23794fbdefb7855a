//! Building the gRPC request message of a route from the HTTP request:
//! path variables, then the body (`*` or one field), then query parameters
//! for the remaining fields, all under proto3 JSON rules.
//!
//! Everything is first gathered into one JSON object and parsed once by
//! prost-reflect, so path and query values get exactly the proto3 JSON
//! conversions a body value would (numbers from strings, enums by name,
//! timestamps from RFC 3339).

use std::collections::HashMap;

use bytes::Bytes;
use http::HeaderMap;
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor};
use serde_json::{Map, Value};

use crate::routes::{INBOUND_HEADERS_FIELD, Route, path_template::Binding};

/// Headers that never reach a service: credentials stay at the gateway.
const WITHHELD_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// Query parameters the gateway itself consumes.
const RESERVED_QUERY: &[&str] = &["format"];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("unknown query parameter {0:?}")]
    UnknownParameter(String),
}

/// The request message for `route`.
pub fn build(
    route: &Route,
    bindings: Vec<Binding>,
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, RequestError> {
    let input = route.method.input();
    let mut document = body_document(&route.body, body)?;
    if let Some(query) = query {
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if RESERVED_QUERY.contains(&key.as_ref()) {
                continue;
            }
            if route.body == "*" || key.split('.').next() == Some(route.body.as_str()) {
                return Err(RequestError::UnknownParameter(key.into_owned()));
            }
            set_path(&input, &mut document, &key, &value, true)
                .ok_or_else(|| RequestError::UnknownParameter(key.into_owned()))?;
        }
    }
    for (field_path, value) in bindings {
        set_path(&input, &mut document, &field_path, &value, false).ok_or_else(|| RequestError::InvalidField {
            field: field_path.clone(),
            reason: "path variable names no field".into(),
        })?;
    }
    refuse_nul(&document)?;
    parse(&input, document)
}

/// No field of the API takes U+0000, and PostgreSQL text cannot hold it:
/// refused here, naming the field, rather than failing deep in a service.
fn refuse_nul(document: &Map<String, Value>) -> Result<(), RequestError> {
    match field_with_nul(document) {
        Some(field) => Err(RequestError::InvalidField {
            field: field.to_owned(),
            reason: NUL_REASON.into(),
        }),
        None => Ok(()),
    }
}

pub const NUL_REASON: &str = "must not contain the character U+0000";

/// The top-level field of `document` holding a U+0000 somewhere, if any.
pub fn field_with_nul(document: &Map<String, Value>) -> Option<&str> {
    fn holds_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(holds_nul),
            Value::Object(map) => map.iter().any(|(key, value)| key.contains('\0') || holds_nul(value)),
            _ => false,
        }
    }
    document
        .iter()
        .find(|(key, value)| key.contains('\0') || holds_nul(value))
        .map(|(key, _)| key.as_str())
}

/// The request message of an inbound webhook: path variables as usual, the
/// body's exact bytes in the route's body field (a signature is over those
/// bytes, so nothing is parsed) and the headers in `headers`.
pub fn build_inbound(
    route: &Route,
    bindings: Vec<Binding>,
    body: Bytes,
    headers: &HeaderMap,
) -> Result<DynamicMessage, RequestError> {
    let input = route.method.input();
    let mut document = Map::new();
    for (field_path, value) in bindings {
        set_path(&input, &mut document, &field_path, &value, false).ok_or_else(|| RequestError::InvalidField {
            field: field_path.clone(),
            reason: "path variable names no field".into(),
        })?;
    }
    let mut message = parse(&input, document)?;
    message.set_field_by_name(&route.body, prost_reflect::Value::Bytes(body));
    message.set_field_by_name(INBOUND_HEADERS_FIELD, prost_reflect::Value::Map(header_map(headers)));
    Ok(message)
}

/// Headers by lower-case name, repeated ones joined with `, ` as HTTP
/// allows; values that are not text, and credentials, are left out.
fn header_map(headers: &HeaderMap) -> HashMap<MapKey, prost_reflect::Value> {
    let mut joined: HashMap<&str, String> = HashMap::new();
    for (name, value) in headers {
        let (name, Ok(value)) = (name.as_str(), value.to_str()) else {
            continue;
        };
        if WITHHELD_HEADERS.contains(&name) {
            continue;
        }
        joined
            .entry(name)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    joined
        .into_iter()
        .map(|(k, v)| (MapKey::String(k.to_owned()), prost_reflect::Value::String(v)))
        .collect()
}

fn body_document(body_field: &str, body: &[u8]) -> Result<Map<String, Value>, RequestError> {
    if body_field.is_empty() || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| RequestError::MalformedJson(e.to_string()))?;
    match (body_field, value) {
        ("*", Value::Object(map)) => Ok(map),
        ("*", _) => Err(RequestError::InvalidField {
            field: "body".into(),
            reason: "must be a JSON object".into(),
        }),
        (field, value) => Ok(Map::from_iter([(field.to_owned(), value)])),
    }
}

/// Sets `dotted` (a field path) in `document` from a text value. Returns
/// `None` when the path names no field of `message`.
fn set_path(
    message: &MessageDescriptor,
    document: &mut Map<String, Value>,
    dotted: &str,
    text: &str,
    append_repeated: bool,
) -> Option<()> {
    let (head, rest) = match dotted.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (dotted, None),
    };
    let field = find_field(message, head)?;
    let key = field.name().to_owned();
    match rest {
        Some(rest) => {
            let Kind::Message(inner) = field.kind() else {
                return None;
            };
            if field.is_list() || field.is_map() {
                return None;
            }
            let slot = document.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            set_path(&inner, slot.as_object_mut()?, rest, text, append_repeated)
        }
        None if field.is_map() => None,
        None if field.is_list() => {
            let value = scalar(&field, text);
            match document.get_mut(&key) {
                Some(Value::Array(items)) if append_repeated => items.push(value),
                _ => {
                    document.insert(key, Value::Array(vec![value]));
                }
            }
            Some(())
        }
        None => {
            document.insert(key, scalar(&field, text));
            Some(())
        }
    }
}

fn find_field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message
        .get_field_by_name(name)
        .or_else(|| message.get_field_by_json_name(name))
}

/// Proto3 JSON accepts quoted numbers, enum names and RFC 3339 strings, so
/// text stays text; only booleans must become JSON booleans.
fn scalar(field: &FieldDescriptor, text: &str) -> Value {
    match (field.kind(), text) {
        (Kind::Bool, "true" | "1") => Value::Bool(true),
        (Kind::Bool, "false" | "0") => Value::Bool(false),
        _ => Value::String(text.to_owned()),
    }
}

fn parse(input: &MessageDescriptor, document: Map<String, Value>) -> Result<DynamicMessage, RequestError> {
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    // Parsed by reference: the document is kept, uncopied, for the error path.
    let document = Value::Object(document);
    match DynamicMessage::deserialize_with_options(input.clone(), &document, &options) {
        Ok(message) => Ok(message),
        Err(error) => Err(
            blame_field(input, &document, &options).unwrap_or_else(|| RequestError::InvalidField {
                field: "body".into(),
                reason: error.to_string(),
            }),
        ),
    }
}

/// Re-parses field by field to name the one at fault; only runs on the
/// error path, so well-formed requests are parsed once.
fn blame_field(input: &MessageDescriptor, document: &Value, options: &DeserializeOptions) -> Option<RequestError> {
    document.as_object()?.iter().find_map(|(key, value)| {
        let single = Value::Object(Map::from_iter([(key.clone(), value.clone())]));
        DynamicMessage::deserialize_with_options(input.clone(), single, options)
            .err()
            .map(|e| RequestError::InvalidField {
                field: key.clone(),
                reason: e.to_string(),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RouteTable;
    use prost_reflect::{DescriptorPool, ReflectMessage, Value as PValue};

    fn table() -> RouteTable {
        let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
        RouteTable::build(&pool, |_| Some(0)).unwrap()
    }

    fn route<'a>(t: &'a RouteTable, method: http::Method, path: &str) -> (&'a Route, Vec<Binding>) {
        match t.resolve(&method, path) {
            crate::routes::Resolution::Found(route, b) => (route, b),
            _ => panic!("no route for {method} {path}"),
        }
    }

    #[test]
    fn a_nul_character_anywhere_is_refused_with_its_field() {
        let t = table();
        let (route, bindings) = route(&t, http::Method::POST, "/api/v1/conversations/conv_1/messages");
        let body = br#"{"content": "a\u0000b", "role": "user"}"#;
        let refused = build(route, bindings, None, body).unwrap_err();
        assert_eq!(
            refused,
            RequestError::InvalidField {
                field: "content".into(),
                reason: NUL_REASON.into()
            }
        );
    }

    #[test]
    fn path_query_and_body_fill_one_message() {
        let t = table();
        let (r, b) = route(&t, http::Method::GET, "/api/v1/conversations/conv_1/messages");
        let msg = build(r, b, Some("limit=5&cursor=abc"), b"").unwrap();
        assert_eq!(
            msg.get_field_by_name("conversation_id").unwrap().as_str(),
            Some("conv_1")
        );
        assert_eq!(msg.get_field_by_name("limit").unwrap().as_i32(), Some(5));
        assert_eq!(msg.get_field_by_name("cursor").unwrap().as_str(), Some("abc"));
    }

    #[test]
    fn a_field_body_fills_only_that_field() {
        let t = table();
        let (r, b) = route(&t, http::Method::PUT, "/api/v1/bots/bot_1/config");
        let msg = build(r, b, None, br#"{"engine":"llm","handoff_threshold":0.5}"#).unwrap();
        let PValue::Message(config) = msg.get_field_by_name("config").unwrap().into_owned() else {
            panic!("config is a message")
        };
        assert_eq!(config.descriptor().name(), "BotConfig");
        assert_eq!(config.get_field_by_name("engine").unwrap().as_str(), Some("llm"));
    }

    #[test]
    fn bad_json_wrong_types_and_unknown_names_are_told_apart() {
        let t = table();
        let (r, b) = route(&t, http::Method::POST, "/api/v1/conversations");
        assert!(matches!(
            build(r, b.clone(), None, b"{\"user_id\":"),
            Err(RequestError::MalformedJson(_))
        ));
        match build(r, b.clone(), None, br#"{"user_id": 42, "channel": "web"}"#) {
            Err(RequestError::InvalidField { field, .. }) => assert_eq!(field, "user_id"),
            other => panic!("expected a field error, got {other:?}"),
        }
        match build(r, b.clone(), None, br#"{"colour": "red"}"#) {
            Err(RequestError::InvalidField { field, .. }) => assert_eq!(field, "colour"),
            other => panic!("expected a field error, got {other:?}"),
        }
        let (r, b) = route(&t, http::Method::GET, "/api/v1/conversations");
        assert_eq!(
            build(r, b, Some("colour=red"), b""),
            Err(RequestError::UnknownParameter("colour".into()))
        );
    }

    #[test]
    fn an_inbound_webhook_gets_the_exact_bytes_and_the_headers_but_no_credentials() {
        let t = table();
        let (r, b) = route(&t, http::Method::POST, "/hooks/shopify/int_1");
        let body = Bytes::from_static(b"{\"id\": 9007199254740993 }");
        let mut headers = HeaderMap::new();
        headers.insert("x-shopify-topic", "orders/create".parse().unwrap());
        headers.append("x-forwarded-for", "1.1.1.1".parse().unwrap());
        headers.append("x-forwarded-for", "2.2.2.2".parse().unwrap());
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        let msg = build_inbound(r, b, body.clone(), &headers).unwrap();
        assert_eq!(msg.get_field_by_name("integration_id").unwrap().as_str(), Some("int_1"));
        assert_eq!(msg.get_field_by_name("body").unwrap().as_bytes(), Some(&body));
        let headers = msg.get_field_by_name("headers").unwrap().into_owned();
        let headers = headers.as_map().unwrap();
        let get = |k: &str| {
            headers
                .get(&MapKey::String(k.into()))
                .and_then(|v| v.as_str().map(str::to_owned))
        };
        assert_eq!(get("x-shopify-topic").as_deref(), Some("orders/create"));
        assert_eq!(get("x-forwarded-for").as_deref(), Some("1.1.1.1, 2.2.2.2"));
        assert_eq!(get("authorization"), None);
    }

    #[test]
    fn a_path_variable_overrides_the_same_field_in_the_body() {
        let t = table();
        let (r, b) = route(&t, http::Method::PATCH, "/api/v1/conversations/conv_path");
        let msg = build(r, b, None, br#"{"conversation_id":"conv_body","status":"ended"}"#).unwrap();
        assert_eq!(
            msg.get_field_by_name("conversation_id").unwrap().as_str(),
            Some("conv_path")
        );
    }
}
