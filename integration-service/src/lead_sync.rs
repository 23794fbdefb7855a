//! Pushing queued leads (see `lead_queue`) to Salesforce: any replica
//! upserts each by the conversation's id, so a retried push never makes a
//! duplicate.
//!
//! A session is kept per org and renewed once when Salesforce says it is
//! spent (`INVALID_SESSION_ID`), then the push is retried once. A lead
//! Salesforce rejects (`REQUIRED_FIELD_MISSING`, `DUPLICATES_DETECTED`, …)
//! is failed with its reason and never retried; an org whose API requests
//! are used up (`REQUEST_LIMIT_EXCEEDED`) is paused for an hour.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use event_pipeline::Outbox;
use ids::IntegrationId;
use serde_json::Value;
use service_runtime::error::ServiceError;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    crm_cache::CrmCache,
    events,
    kinds::{
        Connection,
        salesforce::{SalesforceCredentials, SalesforceError, SalesforceSettings, client::Upserted},
    },
    salesforce_access::{Org, SalesforceAccess},
    store::{
        integrations,
        salesforce_leads::{self, LeadRow},
    },
    vault::Vault,
};

const POLL: Duration = Duration::from_secs(2);
const BATCH: i64 = 20;
const LEASE: Duration = Duration::from_secs(60);
/// Attempts before a lead that keeps failing for passing reasons is failed.
const MAX_ATTEMPTS: i32 = 10;
const LIMIT_PAUSE: Duration = Duration::from_secs(3600);

/// Pushes due leads, on every replica.
pub struct LeadPusher {
    pool: PgPool,
    outbox: Outbox,
    vault: Vault,
    access: SalesforceAccess,
    cache: Option<CrmCache>,
    wake: Arc<Notify>,
    /// The first wait after a passing failure, doubled on each attempt.
    retry: Duration,
}

impl LeadPusher {
    pub fn new(pool: PgPool, outbox: Outbox, vault: Vault, access: SalesforceAccess, cache: Option<CrmCache>) -> Self {
        Self {
            pool,
            outbox,
            vault,
            access,
            cache,
            wake: Arc::new(Notify::new()),
            retry: Duration::from_secs(5),
        }
    }

    /// Waits `retry` after a passing failure, doubled for each attempt.
    pub fn retrying_after(self, retry: Duration) -> Self {
        Self { retry, ..self }
    }

    /// What to notify when leads were queued.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn spawn(self, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.round().await {
                    tracing::warn!(%error, "pushing leads to Salesforce; will try again");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
    }

    /// Pushes the due leads, each org's in one call when it has several.
    async fn round(&self) -> Result<(), ServiceError> {
        let due = salesforce_leads::due(&self.pool, BATCH, LEASE).await?;
        let mut by_org: Vec<Vec<LeadRow>> = Vec::new();
        for lead in due {
            match by_org
                .iter_mut()
                .find(|group| group[0].integration_id == lead.integration_id)
            {
                Some(group) => group.push(lead),
                None => by_org.push(vec![lead]),
            }
        }
        for leads in by_org {
            if let Some(usage) = self.access.salesforce().usage(&leads[0].integration_id)
                && usage.nearly_spent()
            {
                let reason = format!(
                    "the org has used {} of its {} daily API requests; waiting for its window",
                    usage.used, usage.max
                );
                for lead in &leads {
                    self.record(lead, Err(SalesforceError::LimitExceeded(reason.clone())))
                        .await?;
                }
                self.access.salesforce().forget_usage(&leads[0].integration_id);
                continue;
            }
            let Some((settings, credentials)) = self.org(&leads[0]).await? else {
                let mut conn = self.pool.acquire().await?;
                for lead in &leads {
                    salesforce_leads::finish(&mut conn, lead, Err("the connection is gone")).await?;
                }
                continue;
            };
            let outcomes = self.push(&leads, &settings, &credentials).await;
            for (lead, outcome) in leads.iter().zip(outcomes) {
                self.record(lead, outcome).await?;
            }
        }
        Ok(())
    }

    /// The lead's org; `None` when it is gone or no longer connected.
    async fn org(&self, lead: &LeadRow) -> Result<Option<(SalesforceSettings, SalesforceCredentials)>, ServiceError> {
        let id = IntegrationId::parse("integration_id", &lead.integration_id)?;
        let (row, sealed) = match integrations::with_credentials(&self.pool, &lead.workspace_id, &id).await {
            Ok(found) if found.0.status != "disconnected" => found,
            Ok(_) | Err(ServiceError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        match self.vault.connection(&row, &sealed, &lead.workspace_id)? {
            Connection::Salesforce { settings, credentials } => Ok(Some((settings, credentials))),
            _ => Ok(None),
        }
    }

    /// Upserts one org's leads (one request for one lead, a collection
    /// for several) with its session; each lead's outcome, in order.
    async fn push(
        &self,
        leads: &[LeadRow],
        settings: &SalesforceSettings,
        credentials: &SalesforceCredentials,
    ) -> Vec<Result<Upserted, SalesforceError>> {
        let org = Org {
            id: &leads[0].integration_id,
            settings,
            credentials,
        };
        let salesforce = self.access.salesforce();
        let outcomes = match leads {
            [lead] => {
                let pushed = self.access.call(&org, |session| async move {
                    salesforce
                        .upsert_lead(&lead.integration_id, settings, &session, &lead.id, &lead.fields)
                        .await
                });
                pushed.await.map(|upserted| vec![Ok(upserted)])
            }
            _ => {
                let records: Vec<(&str, &Value)> = leads.iter().map(|l| (l.id.as_str(), &l.fields)).collect();
                let records = &records;
                let pushed = self.access.call(&org, |session| async move {
                    salesforce.upsert_leads(org.id, settings, &session, records).await
                });
                pushed.await
            }
        };
        match outcomes {
            Ok(outcomes) => outcomes,
            // The call itself failed: so did every lead in it.
            Err(error) => leads.iter().map(|_| Err(same(&error))).collect(),
        }
    }

    /// Stores how the push went, with its event.
    async fn record(&self, lead: &LeadRow, outcome: Result<Upserted, SalesforceError>) -> Result<(), ServiceError> {
        let mut tx = self.pool.begin().await?;
        let event = match outcome {
            Ok(upserted) => {
                // What the org holds changed: lookups read it afresh.
                if let Some(cache) = &self.cache {
                    cache.invalidate(&lead.integration_id).await;
                }
                let row = salesforce_leads::finish(&mut tx, lead, Ok(&upserted.id)).await?;
                Some(events::lead_synced(&row, upserted.created))
            }
            Err(SalesforceError::Rejected { code, message }) => {
                let reason = format!("{code}: {message}");
                let row = salesforce_leads::finish(&mut tx, lead, Err(&reason)).await?;
                Some(events::lead_failed(&row, None))
            }
            Err(SalesforceError::LimitExceeded(reason)) => {
                let until = Utc::now() + chrono::Duration::from_std(LIMIT_PAUSE).unwrap_or_default();
                salesforce_leads::retry_at(&mut *tx, lead, &reason, until).await?;
                salesforce_leads::pause(&mut *tx, &lead.integration_id, until).await?;
                let waiting = LeadRow {
                    last_error: reason,
                    ..lead.clone()
                };
                Some(events::lead_failed(&waiting, Some(until)))
            }
            Err(error) if lead.attempts >= MAX_ATTEMPTS => {
                let row = salesforce_leads::finish(&mut tx, lead, Err(&error.to_string())).await?;
                Some(events::lead_failed(&row, None))
            }
            Err(error) => {
                let wait = chrono::Duration::from_std(self.retry * 2u32.pow(lead.attempts.clamp(1, 12) as u32))
                    .unwrap_or_default();
                let at = Utc::now() + wait;
                let mut failed = lead.clone();
                failed.last_error = error.to_string();
                salesforce_leads::retry_at(&mut *tx, lead, &failed.last_error, at).await?;
                Some(events::lead_failed(&failed, Some(at)))
            }
        };
        if let Some(event) = event {
            self.outbox.record(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// A failure of a call that carried several leads, for each of them.
fn same(error: &SalesforceError) -> SalesforceError {
    match error {
        SalesforceError::Unauthorized(m) => SalesforceError::Unauthorized(m.clone()),
        SalesforceError::Rejected { code, message } => SalesforceError::Rejected {
            code: code.clone(),
            message: message.clone(),
        },
        SalesforceError::LimitExceeded(m) => SalesforceError::LimitExceeded(m.clone()),
        SalesforceError::Refused(m) => SalesforceError::Refused(m.clone()),
        SalesforceError::Unreachable(e) => SalesforceError::Refused(e.to_string()),
    }
}
