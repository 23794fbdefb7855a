//! A Shopify store, through its Admin GraphQL API.
//!
//! A workspace connects a store with an Admin API access token, or with an
//! expiring offline token: the app's client id and secret and a refresh
//! token, which rotates on every refresh (the old one stops working). A
//! connection is tried with one query that reads the shop and the scopes
//! the app was granted. Calls go through the vendor policy (retries,
//! `Retry-After`, a breaker per connection); GraphQL's own throttling
//! (`THROTTLED` in a 200 answer) waits as long as the cost bucket needs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use outbound_http::{
    body::read_bounded,
    policy::{CallError, CallPolicy},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use service_runtime::error::ServiceError;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The Admin API version asked for when a connection names none.
pub const DEFAULT_API_VERSION: &str = "2025-07";
/// A token this close to lapsing is refreshed before use.
const REFRESH_AHEAD: Duration = Duration::from_secs(60);
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// GraphQL `THROTTLED` answers waited out before giving up.
const THROTTLED_RETRIES: u32 = 3;
const CONNECTION_QUERY: &str = "query Connection { shop { name } currentAppInstallation { accessScopes { handle } } }";

#[derive(Debug, Clone, PartialEq)]
pub struct ShopifySettings {
    /// `acme.myshopify.com`
    pub shop: String,
    pub api_version: String,
}

impl ShopifySettings {
    pub fn parse(settings: &Map<String, Value>) -> Result<Self> {
        if let Some(unknown) = settings.keys().find(|k| !matches!(k.as_str(), "shop" | "api_version")) {
            return Err(ServiceError::invalid(
                "settings",
                format!("{unknown:?} is not a setting of a Shopify connection (shop, api_version)"),
            ));
        }
        let shop = settings.get("shop").and_then(Value::as_str).unwrap_or_default().trim();
        let label = shop.strip_suffix(".myshopify.com").unwrap_or_default();
        let valid = !label.is_empty()
            && label.len() <= 60
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-');
        if !valid {
            return Err(ServiceError::invalid(
                "settings.shop",
                "must be the store's myshopify.com domain, such as acme.myshopify.com",
            ));
        }
        let api_version = match settings.get("api_version").and_then(Value::as_str) {
            None => DEFAULT_API_VERSION.to_owned(),
            Some(v) if v.len() == 7 && v.as_bytes()[4] == b'-' && v.bytes().filter(u8::is_ascii_digit).count() == 6 => {
                v.to_owned()
            }
            Some(_) => return Err(ServiceError::invalid("settings.api_version", "must look like 2025-07")),
        };
        Ok(Self {
            shop: shop.to_owned(),
            api_version,
        })
    }

    pub fn to_json(&self) -> Value {
        json!({ "shop": self.shop, "api_version": self.api_version })
    }
}

/// What lets the platform act on the store; sealed at rest.
#[derive(Clone, Serialize, Deserialize)]
pub struct ShopifyCredentials {
    pub access_token: String,
    /// Set for an expiring offline token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Refresh>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Refresh {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// When `access_token` lapses.
    pub expires_at: DateTime<Utc>,
}

impl ShopifyCredentials {
    /// Reads the request's credentials: `access_token` alone, or
    /// `client_id`, `client_secret` and `refresh_token` (an access token is
    /// then fetched at once, so its expiry is known).
    pub fn from_request(mut given: std::collections::HashMap<String, String>) -> Result<Self> {
        let mut take = |key: &str| given.remove(key).filter(|v| !v.is_empty());
        let (access_token, client_id, client_secret, refresh_token) = (
            take("access_token"),
            take("client_id"),
            take("client_secret"),
            take("refresh_token"),
        );
        if let Some(other) = given.keys().next() {
            return Err(ServiceError::invalid(
                "credentials",
                format!(
                    "{other:?} is not a credential of a Shopify connection \
                     (access_token, or client_id, client_secret and refresh_token)"
                ),
            ));
        }
        match (access_token, client_id, client_secret, refresh_token) {
            (access, Some(client_id), Some(client_secret), Some(refresh_token)) => Ok(Self {
                access_token: access.unwrap_or_default(),
                refresh: Some(Refresh {
                    client_id,
                    client_secret,
                    refresh_token,
                    // Unknown until the first refresh, which comes at once.
                    expires_at: DateTime::<Utc>::MIN_UTC,
                }),
            }),
            (Some(access_token), None, None, None) => Ok(Self {
                access_token,
                refresh: None,
            }),
            (_, None, _, Some(_)) | (_, _, None, Some(_)) => Err(ServiceError::invalid(
                "credentials",
                "a refresh_token needs the app's client_id and client_secret",
            )),
            _ => Err(ServiceError::invalid("credentials.access_token", "is required")),
        }
    }

    /// Whether the access token must be refreshed before it is used.
    pub fn lapsing(&self) -> bool {
        let horizon = Utc::now() + chrono::Duration::from_std(REFRESH_AHEAD).unwrap_or_default();
        self.refresh.as_ref().is_some_and(|r| r.expires_at <= horizon)
    }
}

/// Why a call to Shopify did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ShopifyError {
    /// The access token is not (or no longer) accepted.
    #[error("Shopify refused the access token: {0}")]
    Unauthorized(String),
    #[error("Shopify refused: {0}")]
    Refused(String),
    #[error("Shopify could not be reached: {0}")]
    Unreachable(CallError),
}

/// A client of Shopify's Admin API.
#[derive(Clone)]
pub struct Shopify {
    http: reqwest::Client,
    policy: CallPolicy,
    /// `https://{shop}`: where a store's API is, `{shop}` its domain.
    url: String,
}

impl Shopify {
    pub fn new(http: reqwest::Client, policy: CallPolicy, url: String) -> Self {
        Self { http, policy, url }
    }

    fn base(&self, settings: &ShopifySettings) -> String {
        self.url.replace("{shop}", &settings.shop)
    }

    /// The scopes the token grants, from one query; `connection` names the
    /// connection whose breaker the call goes through.
    pub async fn granted_scopes(
        &self,
        connection: &str,
        settings: &ShopifySettings,
        access_token: &str,
    ) -> Result<Vec<String>, ShopifyError> {
        let data = self
            .graphql(connection, settings, access_token, CONNECTION_QUERY)
            .await?;
        let scopes = data["currentAppInstallation"]["accessScopes"]
            .as_array()
            .map(|scopes| {
                scopes
                    .iter()
                    .filter_map(|s| s["handle"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(scopes)
    }

    /// One GraphQL query, waiting out `THROTTLED` answers as the cost
    /// bucket says.
    async fn graphql(
        &self,
        connection: &str,
        settings: &ShopifySettings,
        access_token: &str,
        query: &str,
    ) -> Result<Value, ShopifyError> {
        let url = format!(
            "{}/admin/api/{}/graphql.json",
            self.base(settings),
            settings.api_version
        );
        let body = json!({ "query": query });
        for _ in 0..=THROTTLED_RETRIES {
            let request = || {
                self.http
                    .post(&url)
                    .header("X-Shopify-Access-Token", access_token)
                    .json(&body)
            };
            let (status, parsed) = self.call(connection, request).await?;
            if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
                return Err(ShopifyError::Unauthorized(error_text(&parsed, status)));
            }
            if !status.is_success() {
                return Err(ShopifyError::Refused(error_text(&parsed, status)));
            }
            match throttled_for(&parsed) {
                Some(wait) => tokio::time::sleep(wait).await,
                None if parsed["errors"].is_array() => return Err(ShopifyError::Refused(error_text(&parsed, status))),
                None => return Ok(parsed["data"].clone()),
            }
        }
        Err(ShopifyError::Refused("the query stayed throttled".into()))
    }

    /// One call through the vendor policy; the answer's status and its
    /// JSON body (`null` when it is not JSON).
    async fn call(
        &self,
        connection: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Value), ShopifyError> {
        let answer = self
            .policy
            .send(connection, request)
            .await
            .map_err(ShopifyError::Unreachable)?;
        let status = answer.status();
        let body = read_bounded(answer, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ShopifyError::Refused(e.to_string()))?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Exchanges the refresh token for a new access token (and a new
    /// refresh token: the old one stops working).
    pub async fn refresh(
        &self,
        connection: &str,
        settings: &ShopifySettings,
        refresh: &Refresh,
    ) -> Result<ShopifyCredentials, ShopifyError> {
        let url = format!("{}/admin/oauth/access_token", self.base(settings));
        let body = json!({
            "client_id": refresh.client_id,
            "client_secret": refresh.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh.refresh_token,
        });
        let (status, parsed) = self.call(connection, || self.http.post(&url).json(&body)).await?;
        if status.is_client_error() {
            return Err(ShopifyError::Unauthorized(error_text(&parsed, status)));
        }
        if !status.is_success() {
            return Err(ShopifyError::Refused(error_text(&parsed, status)));
        }
        let token = |key: &str| parsed[key].as_str().filter(|t| !t.is_empty()).map(str::to_owned);
        let (Some(access_token), Some(refresh_token)) = (token("access_token"), token("refresh_token")) else {
            return Err(ShopifyError::Refused("the refresh answer has no tokens".into()));
        };
        let lifetime = parsed["expires_in"].as_i64().unwrap_or(0).max(0);
        Ok(ShopifyCredentials {
            access_token,
            refresh: Some(Refresh {
                client_id: refresh.client_id.clone(),
                client_secret: refresh.client_secret.clone(),
                refresh_token,
                expires_at: Utc::now() + chrono::Duration::seconds(lifetime),
            }),
        })
    }
}

/// How long a `THROTTLED` answer asks to wait: until the bucket holds the
/// query's cost again.
fn throttled_for(answer: &Value) -> Option<Duration> {
    let throttled = answer["errors"]
        .as_array()?
        .iter()
        .any(|e| e["extensions"]["code"] == "THROTTLED");
    if !throttled {
        return None;
    }
    let cost = &answer["extensions"]["cost"];
    let needed = cost["requestedQueryCost"].as_f64().unwrap_or(1.0);
    let available = cost["throttleStatus"]["currentlyAvailable"].as_f64().unwrap_or(0.0);
    let rate = cost["throttleStatus"]["restoreRate"]
        .as_f64()
        .filter(|r| *r > 0.0)
        .unwrap_or(50.0);
    Some(Duration::from_secs_f64(((needed - available) / rate).clamp(0.05, 10.0)))
}

/// Shopify's explanation: `errors` as a string, a list of messages, or an
/// OAuth `error_description`, after the HTTP status when it is a failure
/// (a 502's body rarely says it was a 502).
fn error_text(answer: &Value, status: reqwest::StatusCode) -> String {
    let text = match &answer["errors"] {
        Value::String(text) => Some(text.clone()),
        Value::Array(errors) => Some(
            errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => answer["error_description"]
            .as_str()
            .or_else(|| answer["error"].as_str())
            .map(str::to_owned),
    };
    let text: String = text.unwrap_or_default().chars().take(300).collect();
    match (status.is_success(), text.is_empty()) {
        (_, true) => format!("HTTP {status}"),
        (true, false) => text,
        (false, false) => format!("HTTP {status}: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(value: Value) -> Result<ShopifySettings> {
        ShopifySettings::parse(value.as_object().unwrap())
    }

    #[test]
    fn a_store_is_named_by_its_myshopify_domain() {
        let parsed = settings(json!({"shop": "acme-store.myshopify.com"})).unwrap();
        assert_eq!(parsed.api_version, DEFAULT_API_VERSION);
        for wrong in [
            "acme.com",
            "evil.example/acme.myshopify.com",
            ".myshopify.com",
            "ACME.myshopify.com",
        ] {
            assert!(settings(json!({"shop": wrong})).is_err(), "{wrong}");
        }
        assert!(settings(json!({"shop": "a.myshopify.com", "api_version": "latest"})).is_err());
    }

    #[test]
    fn credentials_are_a_token_or_a_refresh_grant() {
        let given = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let admin = ShopifyCredentials::from_request(given(&[("access_token", "shpat_1")])).unwrap();
        assert!(admin.refresh.is_none() && !admin.lapsing());
        let expiring = ShopifyCredentials::from_request(given(&[
            ("client_id", "c"),
            ("client_secret", "s"),
            ("refresh_token", "r"),
        ]))
        .unwrap();
        assert!(expiring.lapsing(), "unknown expiry: refreshed at once");
        assert!(ShopifyCredentials::from_request(given(&[("refresh_token", "r")])).is_err());
        assert!(ShopifyCredentials::from_request(given(&[])).is_err());
        assert!(ShopifyCredentials::from_request(given(&[("access_token", "t"), ("password", "p")])).is_err());
    }

    #[test]
    fn a_throttled_query_waits_for_its_cost_to_come_back() {
        let answer = json!({
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {"cost": {"requestedQueryCost": 102, "throttleStatus":
                {"maximumAvailable": 2000.0, "currentlyAvailable": 2, "restoreRate": 100.0}}}
        });
        assert_eq!(throttled_for(&answer), Some(Duration::from_secs(1)));
        assert_eq!(throttled_for(&json!({"data": {}})), None);
    }

    #[test]
    fn shopifys_errors_are_read_in_each_of_its_shapes() {
        let status = reqwest::StatusCode::UNAUTHORIZED;
        assert_eq!(
            error_text(&json!({"errors": "[API] Invalid API key or access token"}), status),
            "HTTP 401 Unauthorized: [API] Invalid API key or access token"
        );
        assert_eq!(
            error_text(
                &json!({"errors": [{"message": "a"}, {"message": "b"}]}),
                reqwest::StatusCode::OK
            ),
            "a; b"
        );
        assert_eq!(
            error_text(
                &json!({"error": "invalid_grant", "error_description": "expired"}),
                reqwest::StatusCode::BAD_REQUEST
            ),
            "HTTP 400 Bad Request: expired"
        );
        assert_eq!(error_text(&Value::Null, status), "HTTP 401 Unauthorized");
    }
}
