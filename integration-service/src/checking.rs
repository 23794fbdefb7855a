//! Using a saved connection again with its stored credentials, as a
//! workspace asks: the outcome is recorded on the integration,
//! `connected`, or `error` with the other side's reason.

use std::sync::Arc;

use ids::IntegrationId;
use service_runtime::error::ServiceError;
use sqlx::PgPool;

use crate::{
    kinds::{
        Connection, Reach, database,
        shopify::{ShopifyCredentials, ShopifySettings},
    },
    shopify_access::{ShopifyAccess, Store},
    store::integrations::{self, Checked, IntegrationRow},
    vault::Vault,
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

pub struct Checker {
    pool: PgPool,
    vault: Vault,
    reach: Arc<Reach>,
    access: ShopifyAccess,
}

impl Checker {
    pub fn new(pool: PgPool, vault: Vault, reach: Arc<Reach>, access: ShopifyAccess) -> Self {
        Self {
            pool,
            vault,
            reach,
            access,
        }
    }

    /// Uses the connection once and records how it went.
    pub async fn check(&self, workspace_id: &str, id: &IntegrationId) -> Result<IntegrationRow> {
        let (row, sealed) = integrations::with_credentials(&self.pool, workspace_id, id).await?;
        let connection = self.vault.connection(&row, &sealed, workspace_id)?;
        let outcome = match connection {
            Connection::Database { settings, credentials } => database::try_connect(
                &settings,
                &credentials.password,
                &self.reach.targets,
                self.reach.timeout,
            )
            .await
            .map(|()| vec!["read".to_owned()]),
            Connection::Shopify { settings, credentials } => {
                self.shopify_scopes(workspace_id, id, &settings, credentials).await
            }
            mut salesforce @ Connection::Salesforce { .. } => salesforce.try_new(id.as_str(), &self.reach).await,
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
        let store = Store {
            workspace_id,
            id,
            settings,
        };
        let (shopify, store) = (self.access.shopify(), &store);
        let scopes = self
            .access
            .call(store, &mut credentials, |token| async move {
                shopify.granted_scopes(&store.caller(&token)).await
            })
            .await?;
        Ok(scopes)
    }
}
