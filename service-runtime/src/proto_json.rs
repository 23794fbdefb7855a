//! Free-form JSON objects (metadata, settings) between storage (`jsonb`)
//! and their protobuf form, `google.protobuf.Struct` (times:
//! [`crate::time`]).

use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

use crate::error::ServiceError;

/// An object from request field `field`, as JSON for storage (absent =
/// `{}`), refused when it serialises to more than `max_bytes`.
pub fn struct_to_json(field: &'static str, object: Option<Struct>, max_bytes: usize) -> Result<Json, ServiceError> {
    let object = Json::Object(object.map(struct_to_map).unwrap_or_default());
    if let Some(reason) = unstorable(&object) {
        return Err(ServiceError::invalid(field, reason));
    }
    let size = object.to_string().len();
    if size > max_bytes {
        return Err(ServiceError::invalid(
            field,
            format!("is {size} bytes; at most {max_bytes} are allowed"),
        ));
    }
    Ok(object)
}

/// Beyond this magnitude a number PostgreSQL stores exactly may not read
/// back as a double: the stored object could no longer be read at all.
const LARGEST_NUMBER: f64 = 1e300;

/// Why `value` cannot be stored as `jsonb` and read back, if it cannot.
fn unstorable(value: &Json) -> Option<&'static str> {
    match value {
        Json::String(text) if text.contains('\0') => Some("must not contain the character U+0000"),
        Json::Number(n) if n.as_f64().is_some_and(|n| n.abs() > LARGEST_NUMBER) => Some("holds a number beyond ±1e300"),
        Json::Array(items) => items.iter().find_map(unstorable),
        Json::Object(map) => map.iter().find_map(|(key, value)| match key.contains('\0') {
            true => Some("must not contain the character U+0000"),
            false => unstorable(value),
        }),
        _ => None,
    }
}

/// Stored metadata as a `Struct` (non-objects become an empty one).
pub fn json_to_struct(value: Json) -> Struct {
    match value {
        Json::Object(map) => Struct {
            fields: map.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
        },
        _ => Struct::default(),
    }
}

fn struct_to_map(s: Struct) -> Map<String, Json> {
    s.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect()
}

fn value_to_json(value: Value) -> Json {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::NumberValue(n)) => number(n),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::StructValue(s)) => Json::Object(struct_to_map(s)),
        Some(Kind::ListValue(l)) => Json::Array(l.values.into_iter().map(value_to_json).collect()),
    }
}

/// Whole numbers stay integers in storage, so `{"n": 3}` reads back as 3.
fn number(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        Json::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map(Json::Number).unwrap_or(Json::Null)
    }
}

fn json_to_value(value: Json) -> Value {
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(json_to_struct(Json::Object(map))),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_storage_cannot_give_back_is_refused() {
        for unstorable in [
            serde_json::json!({"a": 1.7976931348623157e308}),
            serde_json::json!({"a": {"b": ["x\u{0}y"]}}),
            serde_json::json!({"k\u{0}": 1}),
        ] {
            let refused = struct_to_json("metadata", Some(json_to_struct(unstorable.clone())), 1024);
            assert!(refused.is_err(), "{unstorable} is refused");
        }
        let fine = serde_json::json!({"a": 1e300, "b": -3.5e16});
        assert!(struct_to_json("metadata", Some(json_to_struct(fine)), 1024).is_ok());
    }

    #[test]
    fn an_object_round_trips_through_storage() {
        let json = serde_json::json!({"plan": "pro", "n": 3, "tags": ["a", true, null], "nested": {"x": 1.5}});
        let back = struct_to_json("metadata", Some(json_to_struct(json.clone())), 1024).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn an_oversized_object_is_rejected_naming_its_field() {
        let big = serde_json::json!({"blob": "x".repeat(100)});
        let error = struct_to_json("metadata", Some(json_to_struct(big)), 64).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("metadata: is ") && message.ends_with("at most 64 are allowed"),
            "{message}"
        );
    }
}
