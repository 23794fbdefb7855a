//! One OpenAPI operation per route of the table: its parameters from the
//! path template and the request fields left for the query, its body, its
//! success and problem responses, and who may call it.

use prost_reflect::{FieldDescriptor, Kind};
use serde_json::{Value, json};

use super::{
    common,
    schemas::{Comments, Direction, Schemas},
};
use crate::routes::{INBOUND_HEADERS_FIELD, Route};

/// The OpenAPI path of `route` (`{var}` for each variable) and its
/// operation.
pub fn operation(route: &Route, schemas: &mut Schemas, comments: &Comments) -> (String, Value) {
    let method = &route.method;
    let path_fields = path_fields(route.template.as_str());
    let mut operation = json!({
        "operationId": method.name(),
        "tags": [method.parent_service().name()],
        "parameters": parameters(route, &path_fields, schemas),
        "responses": responses(route, schemas),
    });
    if let Some(comment) = comments.at(method.parent_file().name(), method.path()) {
        operation["summary"] = json!(comment.lines().next().unwrap_or_default());
        operation["description"] = json!(comment);
    }
    if let Some(body) = request_body(route, &path_fields, schemas) {
        operation["requestBody"] = body;
    }
    match route.inbound_webhook {
        true => operation["security"] = json!([]),
        false => {
            operation["security"] = common::security_for(&route.required_scope);
            operation["x-required-scope"] = json!(route.required_scope);
        }
    }
    (openapi_path(route.template.as_str()), operation)
}

/// `{field=pattern}` variables as `{field}`.
fn openapi_path(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let variable = &rest[open + 1..close];
        out.push('{');
        out.push_str(variable.split('=').next().unwrap_or(variable));
        out.push('}');
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// The request fields the template's variables fill.
fn path_fields(template: &str) -> Vec<String> {
    let path = openapi_path(template);
    path.split('{')
        .skip(1)
        .filter_map(|part| part.split('}').next())
        .map(str::to_owned)
        .collect()
}

fn parameters(route: &Route, path_fields: &[String], schemas: &mut Schemas) -> Value {
    let input = route.method.input();
    let mut parameters: Vec<Value> = path_fields
        .iter()
        .map(|name| {
            let schema = input
                .get_field_by_name(name)
                .map_or_else(|| json!({"type": "string"}), |f| schemas.field(&f, Direction::Input));
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    if route.body.is_empty() {
        let queried = input.fields().filter(|f| !path_fields.iter().any(|p| p == f.name()));
        for field in queried.filter(queryable) {
            let mut parameter = json!({
                "name": field.name(),
                "in": "query",
                "schema": schemas.field(&field, Direction::Input),
            });
            if field.is_list() {
                parameter["style"] = json!("form");
                parameter["explode"] = json!(true);
            }
            parameters.push(parameter);
        }
    }
    if !route.inbound_webhook {
        parameters.push(json!({"$ref": "#/components/parameters/Format"}));
        parameters.push(json!({"$ref": "#/components/parameters/ApiVersion"}));
        if route.http_method != http::Method::GET {
            parameters.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
        }
    }
    Value::Array(parameters)
}

/// A field a query parameter can carry: a scalar, or a list of them.
fn queryable(field: &FieldDescriptor) -> bool {
    if field.is_map() {
        return false;
    }
    match field.kind() {
        Kind::Message(message) => matches!(
            message.full_name(),
            "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask"
        ),
        _ => true,
    }
}

fn request_body(route: &Route, path_fields: &[String], schemas: &mut Schemas) -> Option<Value> {
    let input = route.method.input();
    let schema = match route.body.as_str() {
        "" => return None,
        // Another system's webhook: its exact bytes, for its signature.
        _ if route.inbound_webhook => {
            return Some(json!({
                "required": true,
                "description": "The sender's payload, passed on byte for byte and authenticated by its signature headers.",
                "content": {"application/json": {"schema": {}}}
            }));
        }
        "*" => schemas.object(&input, Direction::Input, |f| {
            !path_fields.iter().any(|p| p == f.name()) && f.name() != INBOUND_HEADERS_FIELD
        }),
        field => schemas.field(&input.get_field_by_name(field)?, Direction::Input),
    };
    Some(json!({"required": true, "content": {"application/json": {"schema": schema}}}))
}

fn responses(route: &Route, schemas: &mut Schemas) -> Value {
    let output = route.method.output();
    let schema = match route.response_body.as_str() {
        "" => schemas.message(&output, Direction::Output),
        field => output
            .get_field_by_name(field)
            .map_or_else(|| json!({}), |f| schemas.field(&f, Direction::Output)),
    };
    let mut content = common::json_and_xml(schema);
    if let Some(stream) = &route.event_stream {
        let event = schemas.message(&stream.method.output(), Direction::Output);
        content["text/event-stream"] = json!({
            "schema": {
                "type": "string",
                "description": "With `Accept: text/event-stream`: Server-Sent Events, one JSON message (`x-event-schema`) per `data:` line, each event named by what it carries; the stream ends with the stored reply."
            },
            "x-event-schema": event,
        });
    }
    let mut responses = common::problems(if route.inbound_webhook { "hooks" } else { "api" });
    responses[route.success_status.as_str()] = json!({
        "description": "Success.",
        "headers": common::api_headers(),
        "content": content,
    });
    responses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_with_patterns_become_plain_path_parameters() {
        assert_eq!(
            openapi_path("/api/v1/bots/{bot_id}/knowledge:batchCreate"),
            "/api/v1/bots/{bot_id}/knowledge:batchCreate"
        );
        assert_eq!(openapi_path("/v1/{name=shelves/*}/books"), "/v1/{name}/books");
        assert_eq!(path_fields("/a/{x}/b/{y.z=**}"), ["x", "y.z"]);
    }
}
