//! Response headers every API answer carries: browsers must not sniff,
//! frame or cache it, and cross-origin use is allowed only for the origins
//! configured in `GATEWAY_CORS_ALLOWED_ORIGINS`.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, header};
use tower_http::{cors::CorsLayer, set_header::SetResponseHeaderLayer};

/// `(name, value)` pairs set when a handler did not set them itself.
pub const HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("cache-control", "no-store"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
];

pub fn layers() -> Vec<SetResponseHeaderLayer<HeaderValue>> {
    HEADERS
        .iter()
        .map(|(name, value)| {
            SetResponseHeaderLayer::if_not_present(HeaderName::from_static(name), HeaderValue::from_static(value))
        })
        .collect()
}

/// CORS for the configured origins; `None` when none are configured, so
/// browsers on other origins are refused by default.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("x-api-version"),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("x-api-version"),
                HeaderName::from_static("ratelimit-limit"),
                HeaderName::from_static("ratelimit-remaining"),
                HeaderName::from_static("ratelimit-reset"),
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}
