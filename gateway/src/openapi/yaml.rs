//! A JSON document as block-style YAML. Every string and key is written
//! double-quoted with JSON's escapes, which YAML's double-quoted scalars
//! share, so no value can be misread (`no`, `1.0`, `: `).

use std::fmt::Write;

use serde_json::Value;

pub fn render(value: &Value) -> String {
    let mut out = String::with_capacity(64 * 1024);
    block(&mut out, value, 0);
    out
}

/// `value` as lines at `indent`; a scalar or empty collection on one line.
fn block(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                pad(out, indent);
                out.push_str(&quoted(key));
                out.push(':');
                nested(out, item, indent + 2);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                pad(out, indent);
                out.push('-');
                nested(out, item, indent + 2);
            }
        }
        scalar => {
            pad(out, indent);
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

/// What follows a key or a dash: a scalar on the same line, a collection
/// on the lines below.
fn nested(out: &mut String, value: &Value, indent: usize) {
    if is_collection(value) {
        out.push('\n');
        block(out, value, indent);
    } else {
        let _ = writeln!(out, " {}", inline(value));
    }
}

fn is_collection(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::String(text) => quoted(text),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_collections_are_indented_and_every_string_is_quoted() {
        let document = json!({"a": {"b": [1, {"c": "no"}, []], "d": {}}, "e": "x: y"});
        assert_eq!(
            render(&document),
            "\"a\":\n  \"b\":\n    - 1\n    -\n      \"c\": \"no\"\n    - []\n  \"d\": {}\n\"e\": \"x: y\"\n"
        );
    }
}
