//! A Salesforce org, through its REST API.
//!
//! A workspace connects an org with a connected app: by the OAuth 2.0 JWT
//! bearer flow (the app's consumer key, the user to act as, and the
//! private key whose certificate the app holds) or by the client
//! credentials flow (the app's client id and secret, against the org's My
//! Domain). Ended conversations become leads, upserted by an external id
//! field holding the conversation's id, so a retried sync never makes a
//! duplicate.

pub mod client;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use service_runtime::error::ServiceError;

pub use client::{Salesforce, SalesforceError};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

pub const DEFAULT_LOGIN_URL: &str = "https://login.salesforce.com";
pub const DEFAULT_API_VERSION: &str = "v61.0";
pub const DEFAULT_LEAD_FIELD: &str = "Chatbot_Conversation_Id__c";
const SETTINGS: &str = "login_url, api_version, lead_external_id_field, qualify_keywords";
const MAX_KEYWORDS: usize = 20;
const MAX_KEYWORD_CHARS: usize = 60;

#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceSettings {
    /// Where tokens are asked for: `https://login.salesforce.com`,
    /// `https://test.salesforce.com`, or the org's My Domain.
    pub login_url: String,
    /// `v61.0`
    pub api_version: String,
    /// The Lead field (an external id) holding the conversation's id.
    pub lead_external_id_field: String,
    /// When set, only conversations in which the visitor writes one of
    /// these (any case) become leads, as soon as they do; otherwise every
    /// ended conversation that names a way to reach the customer does.
    pub qualify_keywords: Vec<String>,
}

impl SalesforceSettings {
    pub fn parse(settings: &Map<String, Value>) -> Result<Self> {
        if let Some(unknown) = settings.keys().find(|k| !SETTINGS.split(", ").any(|s| s == k.as_str())) {
            return Err(ServiceError::invalid(
                "settings",
                format!("{unknown:?} is not a setting of a Salesforce connection ({SETTINGS})"),
            ));
        }
        let text = |key: &str, default: &str| {
            settings
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .unwrap_or(default)
                .to_owned()
        };
        let login_url = text("login_url", DEFAULT_LOGIN_URL).trim_end_matches('/').to_owned();
        if !secure_url(&login_url) {
            return Err(ServiceError::invalid(
                "settings.login_url",
                "must be an https URL such as https://login.salesforce.com",
            ));
        }
        let api_version = text("api_version", DEFAULT_API_VERSION);
        let version_ok = api_version
            .strip_prefix('v')
            .and_then(|v| v.strip_suffix(".0"))
            .is_some_and(|n| (2..=3).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()));
        if !version_ok {
            return Err(ServiceError::invalid("settings.api_version", "must look like v61.0"));
        }
        let field = text("lead_external_id_field", DEFAULT_LEAD_FIELD);
        let field_ok = field.len() <= 80
            && field.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !field_ok {
            return Err(ServiceError::invalid(
                "settings.lead_external_id_field",
                "must be a field's API name, such as Chatbot_Conversation_Id__c",
            ));
        }
        Ok(Self {
            login_url,
            api_version,
            lead_external_id_field: field,
            qualify_keywords: keywords(settings.get("qualify_keywords"))?,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut json = json!({
            "login_url": self.login_url,
            "api_version": self.api_version,
            "lead_external_id_field": self.lead_external_id_field,
        });
        if !self.qualify_keywords.is_empty() {
            json["qualify_keywords"] = json!(self.qualify_keywords);
        }
        json
    }
}

/// `qualify_keywords`: words or phrases, kept in lower case, each once.
fn keywords(value: Option<&Value>) -> Result<Vec<String>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let wrong = || {
        ServiceError::invalid(
            "settings.qualify_keywords",
            format!("must be a list of at most {MAX_KEYWORDS} words or phrases of 1 to {MAX_KEYWORD_CHARS} characters"),
        )
    };
    let list = value.as_array().filter(|l| l.len() <= MAX_KEYWORDS).ok_or_else(wrong)?;
    let mut keywords: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        let word = item.as_str().map(|w| w.trim().to_lowercase()).ok_or_else(wrong)?;
        if word.is_empty() || word.chars().count() > MAX_KEYWORD_CHARS {
            return Err(wrong());
        }
        if !keywords.contains(&word) {
            keywords.push(word);
        }
    }
    Ok(keywords)
}

/// The first of `keywords` the visitor's `text` contains (any case): the
/// one that qualifies the conversation.
pub fn qualifying_keyword<'k>(keywords: &'k [String], text: &str) -> Option<&'k str> {
    let text = text.to_lowercase();
    keywords.iter().map(String::as_str).find(|k| text.contains(k))
}

/// https, or http to this machine (a local development org proxy).
fn secure_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return false;
    };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    !host.is_empty() && (url.starts_with("https://") || host == "127.0.0.1" || host == "localhost")
}

/// How the connection signs in.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case")]
pub enum SalesforceCredentials {
    JwtBearer {
        consumer_key: String,
        username: String,
        /// PEM, PKCS#8 or PKCS#1.
        private_key: String,
    },
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
}

impl SalesforceCredentials {
    pub fn from_request(mut given: HashMap<String, String>) -> Result<Self> {
        let flow_jwt = given.contains_key("private_key");
        let flow_secret = given.contains_key("client_secret");
        let mut take = |key: &'static str| -> Result<String> {
            match given.remove(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                Some(value) => Ok(value),
                None => Err(ServiceError::invalid(
                    match key {
                        "consumer_key" => "credentials.consumer_key",
                        "username" => "credentials.username",
                        "client_id" => "credentials.client_id",
                        _ => "credentials",
                    },
                    "is required",
                )),
            }
        };
        let credentials = if flow_jwt {
            let private_key = take("private_key")?;
            if jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).is_err() {
                return Err(ServiceError::invalid(
                    "credentials.private_key",
                    "must be an RSA private key in PEM",
                ));
            }
            Self::JwtBearer {
                consumer_key: take("consumer_key")?,
                username: take("username")?,
                private_key,
            }
        } else if flow_secret {
            Self::ClientCredentials {
                client_secret: take("client_secret")?,
                client_id: take("client_id")?,
            }
        } else {
            return Err(ServiceError::invalid(
                "credentials",
                "give consumer_key, username and private_key (JWT bearer flow) or client_id and client_secret \
                 (client credentials flow)",
            ));
        };
        if let Some(other) = given.keys().next() {
            return Err(ServiceError::invalid(
                "credentials",
                format!("{other:?} is not a credential of this flow"),
            ));
        }
        Ok(credentials)
    }

    /// These credentials with the ones `given` replacing theirs.
    pub fn replaced(self, given: HashMap<String, String>) -> Result<Self> {
        let mut merged: HashMap<String, String> = match self {
            Self::JwtBearer {
                consumer_key,
                username,
                private_key,
            } => HashMap::from([
                ("consumer_key".into(), consumer_key),
                ("username".into(), username),
                ("private_key".into(), private_key),
            ]),
            Self::ClientCredentials {
                client_id,
                client_secret,
            } => HashMap::from([("client_id".into(), client_id), ("client_secret".into(), client_secret)]),
        };
        let switches_flow = given.contains_key("private_key") != merged.contains_key("private_key")
            && (given.contains_key("private_key") || given.contains_key("client_secret"));
        if switches_flow {
            merged.clear();
        }
        merged.extend(given);
        Self::from_request(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(value: Value) -> Result<SalesforceSettings> {
        SalesforceSettings::parse(value.as_object().unwrap())
    }

    #[test]
    fn keywords_qualify_a_message_in_any_case() {
        let parsed = settings(json!({"qualify_keywords": ["Quote", "bulk order", "quote"]})).unwrap();
        assert_eq!(parsed.qualify_keywords, ["quote", "bulk order"]);
        let keywords = &parsed.qualify_keywords;
        assert_eq!(
            qualifying_keyword(keywords, "Could I get a QUOTE for 200 mugs?"),
            Some("quote")
        );
        assert_eq!(qualifying_keyword(keywords, "a Bulk Order, please"), Some("bulk order"));
        assert_eq!(qualifying_keyword(keywords, "what are your opening hours?"), None);
        assert!(settings(json!({"qualify_keywords": [""]})).is_err());
        assert!(settings(json!({"qualify_keywords": "quote"})).is_err());
        assert!(
            !settings(json!({}))
                .unwrap()
                .to_json()
                .to_string()
                .contains("qualify_keywords")
        );
    }

    #[test]
    fn settings_default_to_the_production_login_and_a_current_version() {
        let parsed = settings(json!({})).unwrap();
        assert_eq!(parsed.login_url, DEFAULT_LOGIN_URL);
        assert_eq!(parsed.api_version, DEFAULT_API_VERSION);
        for wrong in [
            json!({"login_url": "http://login.salesforce.com"}),
            json!({"api_version": "61"}),
            json!({"lead_external_id_field": "Id; DROP"}),
            json!({"instance": "x"}),
        ] {
            assert!(settings(wrong.clone()).is_err(), "{wrong}");
        }
        assert!(settings(json!({"login_url": "http://127.0.0.1:8443"})).is_ok());
    }

    #[test]
    fn credentials_name_one_flow_completely() {
        let given = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(SalesforceCredentials::from_request(given(&[("client_id", "a"), ("client_secret", "b")])).is_ok());
        assert!(SalesforceCredentials::from_request(given(&[("client_secret", "b")])).is_err());
        let bad_key = given(&[("consumer_key", "a"), ("username", "u"), ("private_key", "not a key")]);
        assert!(SalesforceCredentials::from_request(bad_key).is_err());
        assert!(SalesforceCredentials::from_request(given(&[])).is_err());
    }
}
