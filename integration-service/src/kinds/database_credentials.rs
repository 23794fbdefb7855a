//! What a database connection keeps sealed: the password it signs in
//! with, and the secret that signs the inventory webhooks the workspace
//! sends the platform about it.

use std::collections::HashMap;

use sealing::webhook_signature;
use serde::{Deserialize, Serialize};
use service_runtime::error::ServiceError;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Fewest key bytes an inventory webhook secret may have.
const MIN_SECRET_BYTES: usize = 24;

#[derive(Clone, Serialize, Deserialize)]
pub struct DatabaseCredentials {
    pub password: String,
    /// A Standard Webhooks secret (`whsec_` and base64): when set, the
    /// workspace may send stock changes to `/hooks/inventory/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_webhook_secret: Option<String>,
}

impl DatabaseCredentials {
    pub fn from_request(mut given: HashMap<String, String>) -> Result<Self> {
        let password = given.remove("password").unwrap_or_default();
        let secret = given.remove("inventory_webhook_secret").filter(|s| !s.is_empty());
        if let Some(other) = given.keys().next() {
            return Err(ServiceError::invalid(
                "credentials",
                format!("{other:?} is not a credential of a database connection (password, inventory_webhook_secret)"),
            ));
        }
        if password.is_empty() {
            return Err(ServiceError::invalid("credentials.password", "is required"));
        }
        if let Some(secret) = &secret
            && webhook_signature::key_bytes(secret).is_none_or(|key| key.len() < MIN_SECRET_BYTES)
        {
            return Err(ServiceError::invalid(
                "credentials.inventory_webhook_secret",
                format!("must be whsec_ and the base64 of at least {MIN_SECRET_BYTES} random bytes"),
            ));
        }
        Ok(Self {
            password,
            inventory_webhook_secret: secret,
        })
    }

    /// These credentials with the ones `given` replacing theirs.
    pub fn replaced(&self, given: HashMap<String, String>) -> Result<Self> {
        let mut merged = HashMap::from([("password".to_owned(), self.password.clone())]);
        if let Some(secret) = &self.inventory_webhook_secret {
            merged.insert("inventory_webhook_secret".to_owned(), secret.clone());
        }
        merged.extend(given);
        Self::from_request(merged)
    }

    /// The key inventory webhooks are signed with, when there is one.
    pub fn inventory_key(&self) -> Option<Vec<u8>> {
        self.inventory_webhook_secret
            .as_deref()
            .and_then(webhook_signature::key_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_webhook_secret_is_optional_but_must_be_a_strong_whsec_secret() {
        let plain = DatabaseCredentials::from_request(given(&[("password", "p")])).unwrap();
        assert!(plain.inventory_key().is_none());
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let signed = plain.replaced(given(&[("inventory_webhook_secret", secret)])).unwrap();
        assert_eq!(
            (signed.password.as_str(), signed.inventory_key().map(|k| k.len())),
            ("p", Some(24))
        );
        let kept = signed.replaced(given(&[("password", "new")])).unwrap();
        assert_eq!(kept.inventory_webhook_secret.as_deref(), Some(secret));
        for weak in ["hunter2", "whsec_c2hvcnQ="] {
            let field = match DatabaseCredentials::from_request(given(&[
                ("password", "p"),
                ("inventory_webhook_secret", weak),
            ])) {
                Err(ServiceError::InvalidArgument { field, .. }) => field,
                _ => panic!("{weak} was taken"),
            };
            assert_eq!(field, "credentials.inventory_webhook_secret");
        }
    }
}
