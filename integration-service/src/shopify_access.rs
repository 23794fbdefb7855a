//! Calling a saved Shopify connection with a token that works, whoever
//! calls (a check, a sync) and on whichever replica.
//!
//! An expiring token is refreshed once however many callers need it at
//! the same moment: a refresher locks the row, reads the stored token
//! again, and refreshes only if it is still the one it found stale;
//! everyone else uses the token the first refreshed. A rotating refresh
//! token is therefore never spent twice.

use std::{future::Future, sync::Arc};

use ids::IntegrationId;
use service_runtime::error::ServiceError;
use sqlx::PgPool;

use crate::{
    kinds::{
        Reach, refused,
        shopify::{Caller, Shopify, ShopifyCredentials, ShopifyError, ShopifySettings},
    },
    store::integrations,
    vault::Vault,
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Why a call through a saved connection failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Shopify(#[from] ShopifyError),
    /// A fault of ours (the database, the credentials' sealing).
    #[error(transparent)]
    Ours(#[from] ServiceError),
}

impl From<AccessError> for ServiceError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::Shopify(error) => refused(error),
            AccessError::Ours(error) => error,
        }
    }
}

/// One saved Shopify connection, as a caller names it.
pub struct Store<'a> {
    pub workspace_id: &'a str,
    pub id: &'a IntegrationId,
    pub settings: &'a ShopifySettings,
}

impl Store<'_> {
    /// Who calls Shopify, with `access_token`.
    pub fn caller<'a>(&'a self, access_token: &'a str) -> Caller<'a> {
        Caller {
            connection: self.id.as_str(),
            settings: self.settings,
            access_token,
        }
    }
}

#[derive(Clone)]
pub struct ShopifyAccess {
    pool: PgPool,
    vault: Vault,
    reach: Arc<Reach>,
}

impl ShopifyAccess {
    pub fn new(pool: PgPool, vault: Vault, reach: Arc<Reach>) -> Self {
        Self { pool, vault, reach }
    }

    pub fn shopify(&self) -> &Shopify {
        &self.reach.shopify
    }

    /// `call`'s answer, made with a live access token (`call` is given
    /// it): refreshed first when it is about to lapse, and once more when
    /// Shopify refuses it early. `credentials` are kept current.
    pub async fn call<T, F, Fut>(
        &self,
        store: &Store<'_>,
        credentials: &mut ShopifyCredentials,
        call: F,
    ) -> Result<T, AccessError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, ShopifyError>>,
    {
        if credentials.lapsing() {
            *credentials = self.refresh_once(store, &credentials.access_token).await?;
        }
        match call(credentials.access_token.clone()).await {
            // Revoked early, or lapsed sooner than it said.
            Err(ShopifyError::Unauthorized(_)) if credentials.refresh.is_some() => {
                *credentials = self.refresh_once(store, &credentials.access_token).await?;
                Ok(call(credentials.access_token.clone()).await?)
            }
            outcome => Ok(outcome?),
        }
    }

    /// The stored credentials with a token other than `stale`: refreshed
    /// here if the stored token is still `stale`, or as another caller
    /// refreshed them meanwhile.
    async fn refresh_once(&self, store: &Store<'_>, stale: &str) -> Result<ShopifyCredentials, AccessError> {
        let (workspace_id, id) = (store.workspace_id, store.id);
        let mut tx = self.pool.begin().await.map_err(ServiceError::from)?;
        let sealed = integrations::lock_credentials(&mut tx, workspace_id, id).await?;
        let current: ShopifyCredentials = serde_json::from_slice(&self.vault.open(&sealed, workspace_id, id)?)
            .map_err(|_| ServiceError::Internal(format!("integration {id}'s credentials do not read")))?;
        if current.access_token != stale {
            return Ok(current);
        }
        let refreshed = self
            .reach
            .shopify
            .refresh(id.as_str(), store.settings, &current)
            .await?;
        let credentials = serde_json::to_vec(&refreshed).expect("credentials serialise");
        let sealed = self.vault.seal_json(&credentials, workspace_id, id);
        integrations::replace_credentials(&mut tx, workspace_id, id, &sealed).await?;
        tx.commit().await.map_err(ServiceError::from)?;
        tracing::info!(integration = %id, "refreshed an expiring Shopify token");
        Ok(refreshed)
    }
}
