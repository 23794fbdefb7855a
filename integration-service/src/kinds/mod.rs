//! The kinds of system a workspace can connect, and what connecting one
//! means: the settings and credentials it takes, and the attempt made
//! before it is saved.

pub mod database;

use std::{collections::HashMap, time::Duration};

use outbound_http::TargetGuard;
use prost_types::Struct;
use serde_json::Value;
use service_runtime::{error::ServiceError, proto_json::struct_to_json};

use database::{DatabaseSettings, Engine};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Largest settings object accepted, serialised.
const MAX_SETTINGS_BYTES: usize = 16 * 1024;
/// Longest credential value accepted.
const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;
const KINDS: &str = "postgres or mysql";

/// A connection request, checked: ready to be tried.
pub struct Connection {
    pub kind: &'static str,
    settings: DatabaseSettings,
    password: String,
}

impl std::fmt::Debug for Connection {
    /// The settings, never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl Connection {
    /// Checks `kind`, `settings` and `credentials`, naming the field at fault.
    pub fn parse(kind: &str, settings: Option<Struct>, credentials: HashMap<String, String>) -> Result<Self> {
        let (kind, engine) = match kind {
            "postgres" => ("postgres", Engine::Postgres),
            "mysql" => ("mysql", Engine::Mysql),
            "" => return Err(ServiceError::invalid("kind", format!("is required: {KINDS}"))),
            _ => return Err(ServiceError::invalid("kind", format!("must be {KINDS}"))),
        };
        let settings = match struct_to_json("settings", settings, MAX_SETTINGS_BYTES)? {
            Value::Object(map) => DatabaseSettings::parse(engine, &map)?,
            _ => unreachable!("a Struct is an object"),
        };
        Ok(Self {
            kind,
            settings,
            password: password(credentials)?,
        })
    }

    /// The settings as stored and shown: never a credential.
    pub fn settings(&self) -> Value {
        self.settings.to_json()
    }

    /// The credentials, as sealed at rest.
    pub fn credentials(&self) -> Value {
        serde_json::json!({ "password": self.password })
    }

    /// Tries the connection; the scopes it grants when the other side takes
    /// it. A database connection only ever reads.
    pub async fn try_connect(&self, targets: &TargetGuard, timeout: Duration) -> Result<Vec<String>> {
        database::try_connect(&self.settings, &self.password, targets, timeout).await?;
        Ok(vec!["read".to_owned()])
    }
}

/// The one credential a database connection takes.
fn password(mut credentials: HashMap<String, String>) -> Result<String> {
    let password = credentials.remove("password").unwrap_or_default();
    if let Some(other) = credentials.keys().next() {
        return Err(ServiceError::invalid(
            "credentials",
            format!("{other:?} is not a credential of a database connection (password)"),
        ));
    }
    if password.is_empty() {
        return Err(ServiceError::invalid("credentials.password", "is required"));
    }
    if password.len() > MAX_CREDENTIAL_BYTES {
        return Err(ServiceError::invalid(
            "credentials.password",
            format!("must be at most {MAX_CREDENTIAL_BYTES} bytes"),
        ));
    }
    Ok(password)
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
        assert_eq!(field(request("shopify", &[("password", "p")])), "kind");
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
    }
}
