//! Conversions between stored values and their protobuf forms:
//! `jsonb` <-> `google.protobuf.Struct` (times: `service_runtime::time`).

use prost_types::{ListValue, Struct, Value, value::Kind};

use serde_json::{Map, Number, Value as Json};
pub use service_runtime::time::timestamp;

use crate::error::{Error, Result};

/// Largest metadata object accepted, serialised.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Metadata from a request, as a JSON object for storage (absent = `{}`).
pub fn metadata_to_json(field: &'static str, metadata: Option<Struct>) -> Result<Json> {
    let object = Json::Object(metadata.map(struct_to_map).unwrap_or_default());
    let size = object.to_string().len();
    if size > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            field,
            format!("is {size} bytes; at most {MAX_METADATA_BYTES} are allowed"),
        ));
    }
    Ok(object)
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
    fn metadata_round_trips_through_storage() {
        let json = serde_json::json!({"plan": "pro", "n": 3, "tags": ["a", true, null], "nested": {"x": 1.5}});
        let back = metadata_to_json("metadata", Some(json_to_struct(json.clone()))).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn oversized_metadata_is_rejected() {
        let big = serde_json::json!({"blob": "x".repeat(MAX_METADATA_BYTES)});
        assert!(metadata_to_json("metadata", Some(json_to_struct(big))).is_err());
    }
}
