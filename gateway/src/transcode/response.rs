//! Rendering an upstream reply: JSON with proto field names (proto3 JSON
//! otherwise), or the same document as XML when the client asks for it.

use bytes::Bytes;
use http::HeaderMap;
use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::Value;

use super::xml;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// `?format=xml` wins; otherwise an Accept header preferring XML.
    pub fn negotiate(headers: &HeaderMap, query: Option<&str>) -> Self {
        if let Some(query) = query
            && let Some((_, v)) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "format")
        {
            return if v.eq_ignore_ascii_case("xml") {
                Self::Xml
            } else {
                Self::Json
            };
        }
        let accept = headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let xml_at = accept.find("application/xml").or_else(|| accept.find("text/xml"));
        let json_at = accept.find("application/json");
        match (xml_at, json_at) {
            (Some(x), Some(j)) if j < x => Self::Json,
            (Some(_), _) => Self::Xml,
            _ => Self::Json,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Xml => "application/xml",
        }
    }
}

fn options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
}

/// The reply body in `format`; `response_body` selects one field when set.
pub fn render(message: &DynamicMessage, response_body: &str, format: Format) -> Result<Bytes, String> {
    if format == Format::Json && response_body.is_empty() {
        // The hot path: straight to bytes, no intermediate tree.
        let mut out = Vec::with_capacity(256);
        let mut serializer = serde_json::Serializer::new(&mut out);
        message
            .serialize_with_options(&mut serializer, &options())
            .map_err(|e| e.to_string())?;
        return Ok(out.into());
    }
    let mut value = message
        .serialize_with_options(serde_json::value::Serializer, &options())
        .map_err(|e| e.to_string())?;
    if !response_body.is_empty() {
        value = value.get_mut(response_body).map(Value::take).unwrap_or(Value::Null);
    }
    Ok(render_value(&value, format))
}

/// A JSON document in `format`.
pub fn render_value(value: &Value, format: Format) -> Bytes {
    match format {
        Format::Json => serde_json::to_vec(value).unwrap_or_default().into(),
        Format::Xml => xml::document("response", value).into(),
    }
}

/// A JSON value answered in the negotiated format: the routes the gateway
/// serves itself answer the way transcoded ones do.
pub fn reply(status: http::StatusCode, body: Value, format: Format) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(http::header::CONTENT_TYPE, format.content_type())],
        render_value(&body, format),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, accept.parse().unwrap());
        h
    }

    #[test]
    fn xml_is_chosen_by_accept_or_by_query() {
        assert_eq!(Format::negotiate(&headers("application/xml"), None), Format::Xml);
        assert_eq!(Format::negotiate(&headers("*/*"), Some("format=xml")), Format::Xml);
        assert_eq!(
            Format::negotiate(&headers("application/json, application/xml"), None),
            Format::Json
        );
        assert_eq!(Format::negotiate(&HeaderMap::new(), None), Format::Json);
    }
}
