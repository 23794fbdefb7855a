//! Calling a saved Salesforce org with a session that works: one session
//! kept per org on this replica (Salesforce's have no expiry), signed in
//! again once when Salesforce says it is spent, and the call retried once.

use std::{collections::HashMap, future::Future, sync::Arc};

use tokio::sync::Mutex;

use crate::kinds::salesforce::{
    Salesforce, SalesforceCredentials, SalesforceError, SalesforceSettings, client::Session,
};

/// One saved org, as a caller names it.
pub struct Org<'a> {
    pub id: &'a str,
    pub settings: &'a SalesforceSettings,
    pub credentials: &'a SalesforceCredentials,
}

#[derive(Clone)]
pub struct SalesforceAccess {
    salesforce: Salesforce,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

impl SalesforceAccess {
    pub fn new(salesforce: Salesforce) -> Self {
        Self {
            salesforce,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn salesforce(&self) -> &Salesforce {
        &self.salesforce
    }

    /// `call`'s answer with the org's session (`call` is given it).
    pub async fn call<T, F, Fut>(&self, org: &Org<'_>, call: F) -> Result<T, SalesforceError>
    where
        F: Fn(Session) -> Fut,
        Fut: Future<Output = Result<T, SalesforceError>>,
    {
        let mut renewed = false;
        loop {
            let session = self.session(org, renewed).await?;
            match call(session).await {
                Err(SalesforceError::Unauthorized(_)) if !renewed => renewed = true,
                outcome => return outcome,
            }
        }
    }

    /// The org's kept session, or a new one when there is none or `renew`.
    async fn session(&self, org: &Org<'_>, renew: bool) -> Result<Session, SalesforceError> {
        let mut sessions = self.sessions.lock().await;
        if !renew && let Some(session) = sessions.get(org.id) {
            return Ok(session.clone());
        }
        let session = self.salesforce.sign_in(org.id, org.settings, org.credentials).await?;
        sessions.insert(org.id.to_owned(), session.clone());
        Ok(session)
    }
}
