//! Using a saved connection again with its stored credentials: the check a
//! workspace asks for, and (next) every sync. Its outcome is recorded on
//! the integration: `connected`, or `error` with the other side's reason.
//!
//! An expiring token is refreshed once however many callers need it at
//! the same moment, on whichever replicas: a refresher locks the row,
//! reads the stored token again, and refreshes only if it is still the
//! one it found stale; everyone else uses the token the first refreshed.
//! A rotating refresh token is therefore never spent twice.

use std::sync::Arc;

use ids::IntegrationId;
use service_runtime::error::ServiceError;
use sqlx::PgPool;

use crate::{
    kinds::{
        Connection, Reach, database, refused,
        shopify::{Caller, ShopifyCredentials, ShopifyError, ShopifySettings},
    },
    store::integrations::{self, Checked, IntegrationRow},
    vault::Vault,
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

pub struct Checker {
    pool: PgPool,
    vault: Vault,
    reach: Arc<Reach>,
}

impl Checker {
    pub fn new(pool: PgPool, vault: Vault, reach: Arc<Reach>) -> Self {
        Self { pool, vault, reach }
    }

    /// Uses the connection once and records how it went.
    pub async fn check(&self, workspace_id: &str, id: &IntegrationId) -> Result<IntegrationRow> {
        let (row, sealed) = integrations::with_credentials(&self.pool, workspace_id, id).await?;
        let connection = self.vault.connection(&row, &sealed, workspace_id)?;
        let outcome = match connection {
            Connection::Database { settings, password } => {
                database::try_connect(&settings, &password, &self.reach.targets, self.reach.timeout)
                    .await
                    .map(|()| vec!["read".to_owned()])
            }
            Connection::Shopify { settings, credentials } => {
                self.shopify_scopes(workspace_id, id, &settings, credentials).await
            }
        };
        let (status, last_error, scopes) = match outcome {
            Ok(scopes) => ("connected", String::new(), scopes),
            Err(ServiceError::Unprocessable(reason)) => ("error", reason, row.scopes),
            Err(other) => return Err(other),
        };
        let checked = Checked {
            status,
            last_error: &last_error,
            scopes: &scopes,
        };
        integrations::record_check(&self.pool, workspace_id, id, checked).await
    }

    async fn shopify_scopes(
        &self,
        workspace_id: &str,
        id: &IntegrationId,
        settings: &ShopifySettings,
        mut credentials: ShopifyCredentials,
    ) -> Result<Vec<String>> {
        if credentials.lapsing() {
            credentials = self
                .refresh_once(workspace_id, id, settings, &credentials.access_token)
                .await?;
        }
        let shopify = &self.reach.shopify;
        let caller = |access_token| Caller {
            connection: id.as_str(),
            settings,
            access_token,
        };
        match shopify.granted_scopes(&caller(&credentials.access_token)).await {
            // Revoked early, or lapsed sooner than it said.
            Err(ShopifyError::Unauthorized(_)) if credentials.refresh.is_some() => {
                let fresh = self
                    .refresh_once(workspace_id, id, settings, &credentials.access_token)
                    .await?;
                shopify
                    .granted_scopes(&caller(&fresh.access_token))
                    .await
                    .map_err(refused)
            }
            outcome => outcome.map_err(refused),
        }
    }

    /// The stored credentials with a token other than `stale`: refreshed
    /// here if the stored token is still `stale`, or as another caller
    /// refreshed them meanwhile.
    async fn refresh_once(
        &self,
        workspace_id: &str,
        id: &IntegrationId,
        settings: &ShopifySettings,
        stale: &str,
    ) -> Result<ShopifyCredentials> {
        let mut tx = self.pool.begin().await?;
        let sealed = integrations::lock_credentials(&mut tx, workspace_id, id).await?;
        let current: ShopifyCredentials = serde_json::from_slice(&self.vault.open(&sealed, workspace_id, id)?)
            .map_err(|_| ServiceError::Internal(format!("integration {id}'s credentials do not read")))?;
        if current.access_token != stale {
            return Ok(current);
        }
        let refreshed = self
            .reach
            .shopify
            .refresh(id.as_str(), settings, &current)
            .await
            .map_err(refused)?;
        let credentials = serde_json::to_vec(&refreshed).expect("credentials serialise");
        let sealed = self.vault.seal_json(&credentials, workspace_id, id);
        integrations::replace_credentials(&mut tx, workspace_id, id, &sealed).await?;
        tx.commit().await?;
        tracing::info!(integration = %id, "refreshed an expiring Shopify token");
        Ok(refreshed)
    }
}
