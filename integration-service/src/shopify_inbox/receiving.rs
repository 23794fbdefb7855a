//! Receiving a delivery: it must carry Shopify's headers, be signed over
//! its exact bytes by the connection's app secret (or the one a recent
//! rotation replaced), and come from the connected store. It is then
//! stored once per webhook id, and answered: Shopify waits five seconds at
//! most, so nothing else happens before the answer.

use std::{collections::HashMap, sync::Arc};

use ids::IntegrationId;
use service_runtime::error::ServiceError;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::{
    kinds::{Connection, shopify::webhooks::Delivery},
    store::{
        integrations,
        shopify_deliveries::{self, NewDelivery},
    },
    vault::Vault,
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Receiver {
    pool: PgPool,
    vault: Vault,
    /// Wakes this replica's processor.
    wake: Arc<Notify>,
}

/// How a verified delivery was taken.
pub enum Received {
    Stored,
    /// Its webhook id was received before; it is not processed again.
    Duplicate,
}

impl Receiver {
    pub fn new(pool: PgPool, vault: Vault, wake: Arc<Notify>) -> Self {
        Self { pool, vault, wake }
    }

    pub async fn receive(
        &self,
        integration_id: &str,
        body: &[u8],
        headers: &HashMap<String, String>,
    ) -> Result<Received> {
        let id = IntegrationId::parse("integration_id", integration_id)?;
        let delivery =
            Delivery::from_headers(headers).map_err(|refusal| ServiceError::invalid("headers", refusal.to_string()))?;
        let addressed = integrations::addressed_by_webhook(&self.pool, &id).await?;
        let workspace_id = addressed.workspace_id.as_str();
        let not_verifiable =
            || ServiceError::Unauthenticated("this connection has no client secret to verify webhooks with".into());
        let sealed = addressed.sealed.as_deref().ok_or_else(not_verifiable)?;
        let Connection::Shopify { settings, credentials } =
            self.vault.connection(&addressed.row, sealed, workspace_id)?
        else {
            return Err(ServiceError::not_found(IntegrationId::KIND, id.as_str()));
        };
        let secrets = credentials.webhook_secrets();
        if secrets.is_empty() {
            return Err(not_verifiable());
        }
        if !delivery.signed_by_one_of(&secrets, body) {
            return Err(ServiceError::Unauthenticated(
                "X-Shopify-Hmac-Sha256 is not the signature of this body under the app's client secret".into(),
            ));
        }
        if !delivery.shop.eq_ignore_ascii_case(&settings.shop) {
            return Err(ServiceError::Unauthenticated(format!(
                "the delivery is from {}, not from the connected store",
                delivery.shop
            )));
        }
        let new = NewDelivery {
            integration_id: id.as_str(),
            webhook_id: &delivery.webhook_id,
            workspace_id,
            topic: &delivery.topic,
            triggered_at: delivery.triggered_at,
            body,
        };
        if !shopify_deliveries::insert(&self.pool, new).await? {
            return Ok(Received::Duplicate);
        }
        self.wake.notify_one();
        Ok(Received::Stored)
    }
}
