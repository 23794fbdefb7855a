//! A connection's credentials at rest: sealed for its workspace and its
//! integration alone, and opened back into the connection they belong to.

use ids::IntegrationId;
use sealing::Keyring;
use service_runtime::error::ServiceError;

use crate::{kinds::Connection, store::integrations::IntegrationRow};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Vault {
    keys: Keyring,
}

impl Vault {
    pub fn new(keys: Keyring) -> Self {
        Self { keys }
    }

    pub fn seal(&self, connection: &Connection, workspace_id: &str, id: &IntegrationId) -> Vec<u8> {
        self.seal_json(&connection.credentials(), workspace_id, id)
    }

    /// Seals credentials already serialised as JSON.
    pub fn seal_json(&self, credentials: &[u8], workspace_id: &str, id: &IntegrationId) -> Vec<u8> {
        self.keys.seal(credentials, &[workspace_id, id.as_str()])
    }

    /// The credentials' JSON.
    pub fn open(&self, sealed: &[u8], workspace_id: &str, id: &IntegrationId) -> Result<Vec<u8>> {
        self.keys
            .open(sealed, &[workspace_id, id.as_str()])
            .map_err(|error| ServiceError::Internal(format!("opening integration {id}'s credentials: {error}")))
    }

    /// The saved connection `row` describes, its credentials opened.
    pub fn connection(&self, row: &IntegrationRow, sealed: &[u8], workspace_id: &str) -> Result<Connection> {
        let credentials = self.open(sealed, workspace_id, &row.id)?;
        Connection::stored(&row.kind, &row.settings, &credentials)
    }
}
