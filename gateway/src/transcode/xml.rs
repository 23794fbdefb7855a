//! The JSON document model written as XML: objects become elements, arrays
//! a run of `<item>` children, so `?format=xml` carries exactly what the
//! JSON carries. Keys that are not XML names (free-form metadata keys) are
//! written as `<entry key="…">`.

use std::fmt::Write;

use serde_json::Value;

pub fn document(root: &str, value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    element(&mut out, root, value);
    out
}

/// Writes `<name>value</name>`; `name` must already be a valid XML name.
pub fn element(out: &mut String, name: &str, value: &Value) {
    if is_xml_name(name) {
        let _ = write!(out, "<{name}>");
        content(out, value);
        let _ = write!(out, "</{name}>");
    } else {
        out.push_str("<entry key=\"");
        escape(out, name);
        out.push_str("\">");
        content(out, value);
        out.push_str("</entry>");
    }
}

fn content(out: &mut String, value: &Value) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => escape(out, s),
        Value::Array(items) => items.iter().for_each(|item| element(out, "item", item)),
        Value::Object(map) => map.iter().for_each(|(k, v)| element(out, k, v)),
    }
}

fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
}

fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.to_ascii_lowercase().starts_with("xml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_arrays_and_text_become_escaped_elements() {
        let doc = document("response", &json!({"a": "x<y & z", "list": [1, true], "none": null}));
        assert!(doc.ends_with(
            "<response><a>x&lt;y &amp; z</a><list><item>1</item><item>true</item></list><none></none></response>"
        ));
    }

    #[test]
    fn keys_that_are_not_xml_names_are_kept_as_entries() {
        let doc = document("m", &json!({"order id": "1", "2fa": true}));
        assert!(doc.contains("<entry key=\"order id\">1</entry>"));
        assert!(doc.contains("<entry key=\"2fa\">true</entry>"));
    }
}
