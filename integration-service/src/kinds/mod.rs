//! The kinds of system a workspace can connect, and what connecting one
//! means: the settings and credentials it takes, and the attempt made
//! before it is saved.

pub mod database;
pub mod database_credentials;
pub mod database_settings;
pub mod db_sessions;
pub mod inventory_webhook;
pub mod knowledge_links;
pub mod order_mapping;
pub mod product_mapping;
pub mod salesforce;
pub mod shopify;

use std::{collections::HashMap, time::Duration};

use outbound_http::TargetGuard;
use prost_types::Struct;
use serde_json::Value;
use service_runtime::{error::ServiceError, proto_json::struct_to_json};

use database::{DatabaseSettings, Engine};
use database_credentials::DatabaseCredentials;
use salesforce::{Salesforce, SalesforceCredentials, SalesforceError, SalesforceSettings};
use shopify::{Caller, Shopify, ShopifyCredentials, ShopifyError, ShopifySettings};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Largest settings object accepted, serialised.
const MAX_SETTINGS_BYTES: usize = 16 * 1024;
/// Longest credential value accepted.
const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;
const KINDS: &str = "shopify, salesforce, postgres or mysql";

/// What reaching another system takes.
pub struct Reach {
    /// Which addresses may be connected to.
    pub targets: TargetGuard,
    /// How long connecting to a database may take.
    pub timeout: Duration,
    pub shopify: Shopify,
    pub salesforce: Salesforce,
    /// Workspaces' own databases, a small pool of sessions each.
    pub databases: db_sessions::Pools,
    /// Where webhooks reach the platform: the gateway's public URL.
    pub public_url: String,
}

impl Reach {
    /// Where `kind`'s webhooks for connection `id` are sent.
    pub fn webhook_url(&self, kind: &str, id: &str) -> String {
        format!("{}/hooks/{kind}/{id}", self.public_url.trim_end_matches('/'))
    }
}

/// A webhook subscription registered on the other side.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub topic: String,
    /// The other side's id for it, to remove it with.
    pub id: String,
}

/// A connection, checked: ready to be tried.
pub enum Connection {
    Database {
        // Boxed: its mappings make it several times the other kinds' size.
        settings: Box<DatabaseSettings>,
        credentials: DatabaseCredentials,
    },
    Shopify {
        settings: ShopifySettings,
        credentials: ShopifyCredentials,
    },
    Salesforce {
        settings: SalesforceSettings,
        credentials: SalesforceCredentials,
    },
}

impl std::fmt::Debug for Connection {
    /// The kind and settings, never a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("kind", &self.kind())
            .field("settings", &self.settings())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Checks a request's `kind`, `settings` and `credentials`, naming the
    /// field at fault.
    pub fn parse(kind: &str, settings: Option<Struct>, credentials: HashMap<String, String>) -> Result<Self> {
        check_sizes(&credentials)?;
        let settings = match struct_to_json("settings", settings, MAX_SETTINGS_BYTES)? {
            Value::Object(map) => map,
            _ => unreachable!("a Struct is an object"),
        };
        match kind {
            "shopify" => Ok(Self::Shopify {
                settings: ShopifySettings::parse(&settings)?,
                credentials: ShopifyCredentials::from_request(credentials)?,
            }),
            "salesforce" => Ok(Self::Salesforce {
                settings: SalesforceSettings::parse(&settings)?,
                credentials: SalesforceCredentials::from_request(credentials)?,
            }),
            "" => Err(ServiceError::invalid("kind", format!("is required: {KINDS}"))),
            _ => match Engine::of_kind(kind) {
                Some(engine) => Ok(Self::Database {
                    settings: Box::new(DatabaseSettings::parse(engine, &settings)?),
                    credentials: DatabaseCredentials::from_request(credentials)?,
                }),
                None => Err(ServiceError::invalid("kind", format!("must be {KINDS}"))),
            },
        }
    }

    /// A saved connection, from its stored settings and opened credentials.
    pub fn stored(kind: &str, settings: &Value, credentials: &[u8]) -> Result<Self> {
        let broken = |what: &str| ServiceError::Internal(format!("a stored {kind} connection's {what} do not read"));
        let settings = settings.as_object().ok_or_else(|| broken("settings"))?;
        match kind {
            "shopify" => Ok(Self::Shopify {
                settings: ShopifySettings::parse(settings).map_err(|_| broken("settings"))?,
                credentials: serde_json::from_slice(credentials).map_err(|_| broken("credentials"))?,
            }),
            "salesforce" => Ok(Self::Salesforce {
                settings: SalesforceSettings::parse(settings).map_err(|_| broken("settings"))?,
                credentials: serde_json::from_slice(credentials).map_err(|_| broken("credentials"))?,
            }),
            _ => {
                let engine = Engine::of_kind(kind).ok_or_else(|| broken("kind"))?;
                Ok(Self::Database {
                    settings: Box::new(DatabaseSettings::parse(engine, settings).map_err(|_| broken("settings"))?),
                    credentials: serde_json::from_slice(credentials).map_err(|_| broken("credentials"))?,
                })
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Database { settings, .. } => settings.engine.kind(),
            Self::Shopify { .. } => "shopify",
            Self::Salesforce { .. } => "salesforce",
        }
    }

    /// The settings as stored and shown: never a credential.
    pub fn settings(&self) -> Value {
        match self {
            Self::Database { settings, .. } => settings.to_json(),
            Self::Shopify { settings, .. } => settings.to_json(),
            Self::Salesforce { settings, .. } => settings.to_json(),
        }
    }

    /// The credentials, as JSON to seal.
    pub fn credentials(&self) -> Vec<u8> {
        let value = match self {
            Self::Database { credentials, .. } => serde_json::to_value(credentials).expect("credentials serialise"),
            Self::Shopify { credentials, .. } => serde_json::to_value(credentials).expect("credentials serialise"),
            Self::Salesforce { credentials, .. } => serde_json::to_value(credentials).expect("credentials serialise"),
        };
        value.to_string().into_bytes()
    }

    /// Bots that learn what the connection brings in.
    pub fn linked_bots(&self) -> &[ids::BotId] {
        match self {
            Self::Shopify { settings, .. } => &settings.bot_ids,
            Self::Database { settings, .. } => &settings.bot_ids,
            Self::Salesforce { .. } => &[],
        }
    }

    /// The same connection with the settings `changes` names changed.
    pub fn with_settings(self, changes: Option<Struct>) -> Result<Self> {
        let changes = match struct_to_json("settings", changes, MAX_SETTINGS_BYTES)? {
            Value::Object(map) if !map.is_empty() => map,
            _ => return Ok(self),
        };
        match self {
            Self::Shopify { settings, credentials } => Ok(Self::Shopify {
                settings: settings.changed(&changes)?,
                credentials,
            }),
            Self::Salesforce { settings, credentials } => {
                let mut merged = settings.to_json().as_object().cloned().unwrap_or_default();
                merged.extend(changes);
                Ok(Self::Salesforce {
                    settings: SalesforceSettings::parse(&merged)?,
                    credentials,
                })
            }
            Self::Database { settings, credentials } => {
                // What is read may change; where it is read from may not.
                let readable = [
                    "products",
                    "orders",
                    "low_stock_threshold",
                    "poll_seconds",
                    "bot_ids",
                    "retrain_after_seconds",
                ];
                if let Some(other) = changes.keys().find(|k| !readable.contains(&k.as_str())) {
                    return Err(ServiceError::invalid(
                        "settings",
                        format!("{other:?} of a database connection cannot change; connect it again instead"),
                    ));
                }
                let mut merged = settings.to_json().as_object().cloned().unwrap_or_default();
                merged.extend(changes);
                Ok(Self::Database {
                    settings: Box::new(DatabaseSettings::parse(settings.engine, &merged)?),
                    credentials,
                })
            }
        }
    }

    /// The same connection with the credentials `given` replacing its own.
    pub fn replaced(self, given: HashMap<String, String>) -> Result<Self> {
        check_sizes(&given)?;
        match self {
            Self::Database { settings, credentials } => Ok(Self::Database {
                credentials: credentials.replaced(given)?,
                settings,
            }),
            Self::Shopify { settings, credentials } => Ok(Self::Shopify {
                credentials: credentials.replaced(given)?,
                settings,
            }),
            Self::Salesforce { settings, credentials } => Ok(Self::Salesforce {
                credentials: credentials.replaced(given)?,
                settings,
            }),
        }
    }

    /// Tries the connection as it would be saved: the scopes it grants
    /// when the other side takes it. An expiring Shopify token is
    /// refreshed first, so its expiry is known (the credentials change).
    /// `id` names the connection's breaker.
    pub async fn try_new(&mut self, id: &str, reach: &Reach) -> Result<Vec<String>> {
        match self {
            Self::Database { settings, credentials } => {
                database::try_connect(settings, &credentials.password, &reach.targets, reach.timeout).await?;
                Ok(vec!["read".to_owned()])
            }
            Self::Shopify { settings, credentials } => {
                if credentials.lapsing() {
                    *credentials = reach
                        .shopify
                        .refresh(id, settings, credentials)
                        .await
                        .map_err(refused)?;
                }
                let caller = Caller {
                    connection: id,
                    settings,
                    access_token: &credentials.access_token,
                };
                reach.shopify.granted_scopes(&caller).await.map_err(refused)
            }
            Self::Salesforce { settings, credentials } => {
                let session = reach
                    .salesforce
                    .sign_in(id, settings, credentials)
                    .await
                    .map_err(turned_down)?;
                reach
                    .salesforce
                    .check_lead_field(id, settings, &session)
                    .await
                    .map_err(turned_down)?;
                Ok(session.scopes)
            }
        }
    }

    /// Registers the webhooks the connection can verify, all or none: a
    /// refusal undoes the ones registered before it.
    pub async fn subscribe(&self, id: &str, reach: &Reach) -> Result<Vec<Subscription>> {
        if let Self::Database { credentials, .. } = self {
            // The workspace sends these itself; nothing is registered.
            let inventory = credentials.inventory_webhook_secret.is_some().then(|| Subscription {
                topic: "inventory".to_owned(),
                id: String::new(),
            });
            return Ok(inventory.into_iter().collect());
        }
        let Self::Shopify { settings, credentials } = self else {
            return Ok(Vec::new());
        };
        if credentials.client_secret.is_none() {
            return Ok(Vec::new());
        }
        let caller = Caller {
            connection: id,
            settings,
            access_token: &credentials.access_token,
        };
        let callback = reach.webhook_url("shopify", id);
        let mut subscribed = Vec::new();
        for topic in shopify::webhooks::TOPICS {
            match reach.shopify.subscribe(&caller, topic, &callback).await {
                Ok(remote) => subscribed.push(Subscription {
                    topic: (*topic).to_owned(),
                    id: remote,
                }),
                Err(error) => {
                    let _ = self.unsubscribe(id, reach, &subscribed).await;
                    return Err(ServiceError::Unprocessable(format!(
                        "registering the {topic} webhook: {error}"
                    )));
                }
            }
        }
        Ok(subscribed)
    }

    /// Removes what [`Self::subscribe`] registered. A store that no longer
    /// accepts the token (the app was uninstalled) has removed them itself.
    pub async fn unsubscribe(&self, id: &str, reach: &Reach, subscriptions: &[Subscription]) -> Result<()> {
        let Self::Shopify { settings, credentials } = self else {
            return Ok(());
        };
        let caller = Caller {
            connection: id,
            settings,
            access_token: &credentials.access_token,
        };
        for subscription in subscriptions {
            match reach.shopify.unsubscribe(&caller, &subscription.id).await {
                Ok(()) | Err(ShopifyError::Unauthorized(_)) => {}
                Err(error) => {
                    return Err(ServiceError::Unavailable(format!(
                        "removing the {} webhook from the store: {error}; nothing was disconnected, try again",
                        subscription.topic
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A vendor's refusal, in its own words, for the workspace to act on.
pub fn refused(error: ShopifyError) -> ServiceError {
    ServiceError::Unprocessable(error.to_string())
}

/// Salesforce's refusal, in its own words, for the workspace to act on.
pub fn turned_down(error: SalesforceError) -> ServiceError {
    ServiceError::Unprocessable(error.to_string())
}

fn check_sizes(credentials: &HashMap<String, String>) -> Result<()> {
    match credentials.iter().find(|(_, v)| v.len() > MAX_CREDENTIAL_BYTES) {
        Some((key, _)) => Err(ServiceError::invalid(
            "credentials",
            format!("{key:?} must be at most {MAX_CREDENTIAL_BYTES} bytes"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use service_runtime::proto_json::json_to_struct;

    use super::*;

    fn request(kind: &str, credentials: &[(&str, &str)]) -> Result<Connection> {
        let settings = json_to_struct(serde_json::json!({"host": "db.example.com", "database": "shop", "user": "bot"}));
        let credentials = credentials
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Connection::parse(kind, Some(settings), credentials)
    }

    fn field(result: Result<Connection>) -> String {
        match result {
            Err(ServiceError::InvalidArgument { field, .. }) => field.into_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_kind_picks_the_engine_and_its_default_port() {
        let connection = request("postgres", &[("password", "p")]).unwrap();
        assert_eq!(connection.settings()["port"], 5432);
        assert_eq!(field(request("oracle", &[("password", "p")])), "kind");
        assert_eq!(field(request("", &[("password", "p")])), "kind");
    }

    #[test]
    fn credentials_are_exactly_a_password_and_never_shown_with_the_settings() {
        assert_eq!(field(request("mysql", &[])), "credentials.password");
        assert_eq!(
            field(request("mysql", &[("password", "p"), ("token", "t")])),
            "credentials"
        );
        let connection = request("mysql", &[("password", "s3cret")]).unwrap();
        assert!(!connection.settings().to_string().contains("s3cret"));
        assert!(!format!("{connection:?}").contains("s3cret"));
        let stored = Connection::stored("mysql", &connection.settings(), &connection.credentials()).unwrap();
        assert_eq!(stored.settings(), connection.settings());
    }
}
