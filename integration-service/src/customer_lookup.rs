//! Who a customer is in the workspace's CRM: the Salesforce contacts and
//! open leads with their email, looked up with SOQL whose every value is an
//! escaped literal (never spliced: the reference article's lookup was
//! injectable), followed across `nextRecordsUrl` pages, and cached.

use ids::IntegrationId;
use serde_json::{Value, json};
use service_runtime::error::ServiceError;
use sqlx::PgPool;

use crate::{
    crm_cache::CrmCache,
    kinds::{
        Connection,
        salesforce::{SalesforceCredentials, SalesforceSettings, client::soql_string},
        turned_down,
    },
    salesforce_access::{Org, SalesforceAccess},
    store::integrations,
    vault::Vault,
};

/// Records one lookup returns, per object.
const MAX_RECORDS: usize = 200;
const MAX_EMAIL_CHARS: usize = 254;

/// What a lookup found, and whether the cache answered.
pub struct Found {
    pub contacts: Vec<Value>,
    pub leads: Vec<Value>,
    pub cached: bool,
}

#[derive(Clone)]
pub struct CustomerLookup {
    pool: PgPool,
    vault: Vault,
    access: SalesforceAccess,
    cache: Option<CrmCache>,
}

impl CustomerLookup {
    pub fn new(pool: PgPool, vault: Vault, access: SalesforceAccess, cache: Option<CrmCache>) -> Self {
        Self {
            pool,
            vault,
            access,
            cache,
        }
    }

    pub async fn by_email(&self, workspace_id: &str, id: &IntegrationId, email: &str) -> Result<Found, ServiceError> {
        let email = email.trim();
        if email.is_empty() || email.chars().count() > MAX_EMAIL_CHARS || !email.contains('@') {
            return Err(ServiceError::invalid("email", "must be an email address"));
        }
        let (settings, credentials) = self.org(workspace_id, id).await?;
        let question = format!("email:{}", email.to_lowercase());
        if let Some(cache) = &self.cache
            && let Some(found) = cache.get(id.as_str(), &question).await
        {
            return Ok(found_in(&found, true));
        }
        let literal = soql_string(email);
        let contacts = format!(
            "SELECT Id, FirstName, LastName, Email, Phone, Title, Account.Name FROM Contact \
             WHERE Email = {literal} ORDER BY LastModifiedDate DESC"
        );
        let leads = format!(
            "SELECT Id, FirstName, LastName, Email, Phone, Company, Status FROM Lead \
             WHERE Email = {literal} AND IsConverted = false ORDER BY LastModifiedDate DESC"
        );
        let org = Org {
            id: id.as_str(),
            settings: &settings,
            credentials: &credentials,
        };
        let found = json!({
            "contacts": self.query(&org, &contacts).await?,
            "leads": self.query(&org, &leads).await?,
        });
        if let Some(cache) = &self.cache {
            cache.put(id.as_str(), &question, &found).await;
        }
        Ok(found_in(&found, false))
    }

    async fn query(&self, org: &Org<'_>, soql: &str) -> Result<Vec<Value>, ServiceError> {
        let salesforce = self.access.salesforce();
        let records = self
            .access
            .call(org, |session| async move {
                salesforce
                    .query(org.id, org.settings, &session, soql, MAX_RECORDS)
                    .await
            })
            .await
            .map_err(turned_down)?;
        // Salesforce's `attributes` (type and URL) say nothing the caller needs.
        Ok(records
            .into_iter()
            .map(|mut record| {
                if let Some(fields) = record.as_object_mut() {
                    fields.remove("attributes");
                }
                record
            })
            .collect())
    }

    async fn org(
        &self,
        workspace_id: &str,
        id: &IntegrationId,
    ) -> Result<(SalesforceSettings, SalesforceCredentials), ServiceError> {
        let (row, sealed) = integrations::with_credentials(&self.pool, workspace_id, id).await?;
        match self.vault.connection(&row, &sealed, workspace_id)? {
            Connection::Salesforce { settings, credentials } => Ok((settings, credentials)),
            _ => Err(ServiceError::FailedPrecondition(format!(
                "a {} connection has no customers to look up: only Salesforce orgs do",
                row.kind
            ))),
        }
    }
}

fn found_in(found: &Value, cached: bool) -> Found {
    let list = |key: &str| found[key].as_array().cloned().unwrap_or_default();
    Found {
        contacts: list("contacts"),
        leads: list("leads"),
        cached,
    }
}
