//! A Shopify store, through its Admin GraphQL API.
//!
//! A workspace connects a store with an Admin API access token, or with an
//! expiring offline token: the app's client id and secret and a refresh
//! token, which rotates on every refresh (the old one stops working). The
//! app's client secret also signs the store's webhooks, so a connection
//! that has it registers for them.

pub mod catalog_pages;
pub mod client;
pub mod payloads;
pub mod webhooks;

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use ids::BotId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use service_runtime::error::ServiceError;

pub use client::{Caller, Page, Shopify, ShopifyError};

use super::knowledge_links;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The Admin API version asked for when a connection names none.
pub const DEFAULT_API_VERSION: &str = "2025-07";
/// A token this close to lapsing is refreshed before use.
const REFRESH_AHEAD: Duration = Duration::from_secs(60);
/// How long a replaced client secret still verifies webhooks: deliveries
/// signed before a rotation keep arriving (Shopify retries for 48 hours,
/// most within the first).
const PREVIOUS_SECRET_GRACE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq)]
pub struct ShopifySettings {
    /// `acme.myshopify.com`
    pub shop: String,
    pub api_version: String,
    /// Bots that learn the store's products: each active product is one of
    /// their knowledge items, kept up to date.
    pub bot_ids: Vec<BotId>,
    /// When set, the linked bots are retrained and deployed once their
    /// products have been quiet this long after a change.
    pub retrain_after: Option<Duration>,
}

const SETTINGS: &str = "shop, api_version, bot_ids, retrain_after_seconds";

impl ShopifySettings {
    pub fn parse(settings: &Map<String, Value>) -> Result<Self> {
        if let Some(unknown) = settings.keys().find(|k| !SETTINGS.split(", ").any(|s| s == k.as_str())) {
            return Err(ServiceError::invalid(
                "settings",
                format!("{unknown:?} is not a setting of a Shopify connection ({SETTINGS})"),
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
            bot_ids: knowledge_links::bot_ids(settings.get("bot_ids"))?,
            retrain_after: knowledge_links::retrain_after(settings.get("retrain_after_seconds"))?,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut json = json!({ "shop": self.shop, "api_version": self.api_version, "bot_ids": self.bot_ids });
        if let Some(after) = self.retrain_after {
            json["retrain_after_seconds"] = json!(after.as_secs());
        }
        json
    }

    /// These settings with the linked bots and retraining of `changes`;
    /// the store and API version stay what they are.
    pub fn changed(&self, changes: &Map<String, Value>) -> Result<Self> {
        if let Some(fixed) = changes.keys().find(|k| matches!(k.as_str(), "shop" | "api_version")) {
            return Err(ServiceError::invalid(
                "settings",
                format!("{fixed} cannot change; connect the store again instead"),
            ));
        }
        let mut merged = self.to_json().as_object().cloned().unwrap_or_default();
        merged.extend(changes.clone());
        Self::parse(&merged)
    }
}

/// What lets the platform act on the store; sealed at rest.
#[derive(Clone, Serialize, Deserialize)]
pub struct ShopifyCredentials {
    pub access_token: String,
    /// The app's client secret: signs the store's webhooks, and refreshes
    /// an expiring token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The client secret a rotation replaced, accepted on webhooks a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
    /// Set for an expiring offline token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Refresh>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: String,
    pub until: DateTime<Utc>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Refresh {
    pub client_id: String,
    pub refresh_token: String,
    /// When `access_token` lapses.
    pub expires_at: DateTime<Utc>,
}

impl ShopifyCredentials {
    /// Reads the request's credentials: `access_token` (with the app's
    /// `client_secret` to verify webhooks), or `client_id`, `client_secret`
    /// and `refresh_token` (an access token is then fetched at once, so its
    /// expiry is known).
    pub fn from_request(mut given: HashMap<String, String>) -> Result<Self> {
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
                     (access_token and client_secret, or client_id, client_secret and refresh_token)"
                ),
            ));
        }
        let refresh = match (client_id, &client_secret, refresh_token) {
            (Some(client_id), Some(_), Some(refresh_token)) => Some(Refresh {
                client_id,
                refresh_token,
                // Unknown until the first refresh, which comes at once.
                expires_at: DateTime::<Utc>::MIN_UTC,
            }),
            (_, _, Some(_)) => {
                return Err(ServiceError::invalid(
                    "credentials",
                    "a refresh_token needs the app's client_id and client_secret",
                ));
            }
            (Some(_), _, None) => {
                return Err(ServiceError::invalid(
                    "credentials.client_id",
                    "is only used with a refresh_token",
                ));
            }
            (None, _, None) => None,
        };
        if refresh.is_none() && access_token.is_none() {
            return Err(ServiceError::invalid("credentials.access_token", "is required"));
        }
        Ok(Self {
            access_token: access_token.unwrap_or_default(),
            client_secret,
            previous_secret: None,
            refresh,
        })
    }

    /// These credentials with those `given` replacing theirs. A replaced
    /// client secret is kept a while to verify webhooks signed before.
    pub fn replaced(&self, given: HashMap<String, String>) -> Result<Self> {
        let mut merged: HashMap<String, String> = [
            ("access_token", Some(&self.access_token)),
            ("client_secret", self.client_secret.as_ref()),
            ("client_id", self.refresh.as_ref().map(|r| &r.client_id)),
            ("refresh_token", self.refresh.as_ref().map(|r| &r.refresh_token)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k.to_owned(), v.clone())))
        .collect();
        let new_token = given.contains_key("access_token") || given.contains_key("refresh_token");
        merged.extend(given);
        let mut replaced = Self::from_request(merged)?;
        if let (Some(old), Some(refresh)) = (&self.refresh, &mut replaced.refresh)
            && !new_token
        {
            refresh.expires_at = old.expires_at;
        }
        replaced.previous_secret = match (&self.client_secret, &replaced.client_secret) {
            (Some(old), Some(new)) if old != new => Some(PreviousSecret {
                secret: old.clone(),
                until: Utc::now() + chrono::Duration::from_std(PREVIOUS_SECRET_GRACE).unwrap_or_default(),
            }),
            _ => self.previous_secret.clone(),
        };
        Ok(replaced)
    }

    /// Whether the access token must be refreshed before it is used.
    pub fn lapsing(&self) -> bool {
        let horizon = Utc::now() + chrono::Duration::from_std(REFRESH_AHEAD).unwrap_or_default();
        self.refresh.as_ref().is_some_and(|r| r.expires_at <= horizon)
    }

    /// The secrets a webhook may be signed with now: the client secret,
    /// and the one a recent rotation replaced.
    pub fn webhook_secrets(&self) -> Vec<&str> {
        let previous = self
            .previous_secret
            .as_ref()
            .filter(|p| p.until > Utc::now())
            .map(|p| p.secret.as_str());
        self.client_secret.as_deref().into_iter().chain(previous).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(value: Value) -> Result<ShopifySettings> {
        ShopifySettings::parse(value.as_object().unwrap())
    }

    fn given(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
    fn linked_bots_and_retraining_are_settings_that_may_change_but_the_store_may_not() {
        let linked = settings(
            json!({"shop": "a.myshopify.com", "bot_ids": ["bot_1", "bot_1", "bot_2"],
            "retrain_after_seconds": 30.0}),
        )
        .unwrap();
        assert_eq!(linked.bot_ids.len(), 2, "each bot once");
        assert_eq!(linked.retrain_after, Some(Duration::from_secs(30)));
        assert!(settings(json!({"shop": "a.myshopify.com", "bot_ids": ["conv_1"]})).is_err());
        assert!(settings(json!({"shop": "a.myshopify.com", "retrain_after_seconds": -1})).is_err());
        let changes = json!({"bot_ids": [], "retrain_after_seconds": 0});
        let unlinked = linked.changed(changes.as_object().unwrap()).unwrap();
        assert_eq!((unlinked.bot_ids.len(), unlinked.retrain_after), (0, None));
        assert_eq!(unlinked.shop, "a.myshopify.com");
        assert!(
            linked
                .changed(json!({"shop": "b.myshopify.com"}).as_object().unwrap())
                .is_err()
        );
    }

    #[test]
    fn credentials_are_a_token_or_a_refresh_grant() {
        let admin = ShopifyCredentials::from_request(given(&[("access_token", "shpat_1")])).unwrap();
        assert!(admin.refresh.is_none() && !admin.lapsing());
        assert!(admin.webhook_secrets().is_empty(), "no secret: no webhooks");
        let expiring = ShopifyCredentials::from_request(given(&[
            ("client_id", "c"),
            ("client_secret", "s"),
            ("refresh_token", "r"),
        ]))
        .unwrap();
        assert!(expiring.lapsing(), "unknown expiry: refreshed at once");
        assert_eq!(expiring.webhook_secrets(), ["s"]);
        assert!(ShopifyCredentials::from_request(given(&[("refresh_token", "r")])).is_err());
        assert!(ShopifyCredentials::from_request(given(&[("access_token", "t"), ("client_id", "c")])).is_err());
        assert!(ShopifyCredentials::from_request(given(&[])).is_err());
        assert!(ShopifyCredentials::from_request(given(&[("access_token", "t"), ("password", "p")])).is_err());
    }

    #[test]
    fn a_rotated_secret_verifies_webhooks_beside_the_new_one_for_a_while() {
        let first =
            ShopifyCredentials::from_request(given(&[("access_token", "t"), ("client_secret", "old")])).unwrap();
        let rotated = first.replaced(given(&[("client_secret", "new")])).unwrap();
        assert_eq!(rotated.access_token, "t", "what was not given is kept");
        assert_eq!(rotated.webhook_secrets(), ["new", "old"]);
        let mut lapsed = rotated.clone();
        lapsed.previous_secret.as_mut().unwrap().until = Utc::now() - chrono::Duration::seconds(1);
        assert_eq!(lapsed.webhook_secrets(), ["new"]);
        let token_only = rotated.replaced(given(&[("access_token", "t2")])).unwrap();
        assert_eq!(token_only.webhook_secrets(), ["new", "old"], "the grace is kept");
    }
}
