//! The `application/x-www-form-urlencoded` requests of the OAuth
//! endpoints (RFC 6749 section 3.2): read under their own small limit,
//! each parameter at most once.

use std::collections::HashMap;

use axum::extract::Request;
use http::header;

use super::errors::OAuthError;
use crate::request_limits;

/// Largest token request body accepted.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Form parameters, each at most once (RFC 6749 section 3.2).
pub struct Form(HashMap<String, String>);

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut params = HashMap::new();
        for (key, value) in form_urlencoded::parse(body) {
            if params.insert(key.clone().into_owned(), value.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!("parameter {key} is repeated")));
            }
        }
        Ok(Self(params))
    }

    /// Both sets of parameters; a name in both is refused.
    pub fn merge(mut self, other: Form) -> Result<Self, OAuthError> {
        for (key, value) in other.0 {
            if self.0.insert(key.clone(), value).is_some() {
                return Err(OAuthError::invalid_request(format!("parameter {key} is repeated")));
            }
        }
        Ok(self)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn require(&self, key: &str) -> Result<&str, OAuthError> {
        self.get(key)
            .ok_or_else(|| OAuthError::invalid_request(format!("{key} is required")))
    }
}

/// Reads an `application/x-www-form-urlencoded` body.
pub async fn read_form(request: Request) -> Result<(http::request::Parts, Form), OAuthError> {
    let (parts, body) = request.into_parts();
    let form_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = request_limits::read_within(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| OAuthError::invalid_request("the request body is too large or unreadable"))?;
    Ok((parts, Form::parse(&bytes)?))
}
