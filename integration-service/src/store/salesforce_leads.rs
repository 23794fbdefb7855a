//! The `salesforce_leads` table: ended conversations bound for each
//! connected Salesforce org of their workspace, and how pushing them went.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use service_runtime::{error::ServiceError, pagination::NewestFirst};
use sqlx::{PgConnection, PgExecutor, types::Json};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct LeadRow {
    pub integration_id: String,
    /// The conversation's id: the lead's external id.
    #[sqlx(rename = "conversation_id")]
    pub id: String,
    pub workspace_id: String,
    pub fields: Value,
    pub status: String,
    pub lead_id: String,
    pub attempts: i32,
    pub last_error: String,
    pub created_at: DateTime<Utc>,
    pub synced_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "integration_id, conversation_id, workspace_id, fields, status, lead_id, attempts, last_error, \
    created_at, synced_at";

/// Queues the conversation's lead for every connected org of the
/// workspace (once: a redelivered event changes nothing); how many.
pub async fn queue(conn: &mut PgConnection, workspace_id: &str, conversation_id: &str, fields: &Value) -> Result<u64> {
    // Orgs that qualify leads by keywords take an ended conversation only
    // when it qualified earlier; its lead then gets the final summary.
    Ok(sqlx::query(
        "INSERT INTO salesforce_leads (integration_id, conversation_id, workspace_id, fields, status)
         SELECT i.id, $2, $1, $3, 'pending' FROM integrations i
         WHERE i.workspace_id = $1 AND i.kind = 'salesforce' AND i.status = 'connected'
           AND (coalesce(jsonb_array_length(i.settings -> 'qualify_keywords'), 0) = 0
                OR EXISTS (SELECT 1 FROM salesforce_leads l WHERE l.integration_id = i.id AND l.conversation_id = $2))
         ON CONFLICT (integration_id, conversation_id) DO UPDATE
             SET fields = EXCLUDED.fields, status = 'pending', attempts = 0, next_attempt_at = now()
             WHERE salesforce_leads.fields IS DISTINCT FROM EXCLUDED.fields",
    )
    .bind(workspace_id)
    .bind(conversation_id)
    .bind(fields)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Queues a lead, once, for each of `orgs` (a conversation qualified there).
pub async fn queue_qualified(
    conn: &mut PgConnection,
    workspace_id: &str,
    conversation_id: &str,
    fields: &Value,
    orgs: &[String],
) -> Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO salesforce_leads (integration_id, conversation_id, workspace_id, fields, status)
         SELECT i.id, $2, $1, $3, 'pending' FROM integrations i
         WHERE i.workspace_id = $1 AND i.id = ANY($4) AND i.kind = 'salesforce' AND i.status = 'connected'
         ON CONFLICT DO NOTHING",
    )
    .bind(workspace_id)
    .bind(conversation_id)
    .bind(fields)
    .bind(orgs)
    .execute(conn)
    .await?
    .rows_affected())
}

/// The connected orgs of these workspaces that qualify leads by keywords:
/// (workspace, org, keywords).
pub async fn keyword_orgs<'e>(
    db: impl PgExecutor<'e>,
    workspace_ids: &[String],
) -> Result<Vec<(String, String, Vec<String>)>> {
    let rows: Vec<(String, String, Json<Vec<String>>)> = sqlx::query_as(
        "SELECT workspace_id, id, settings -> 'qualify_keywords' FROM integrations
         WHERE workspace_id = ANY($1) AND kind = 'salesforce' AND status = 'connected'
           AND coalesce(jsonb_array_length(settings -> 'qualify_keywords'), 0) > 0",
    )
    .bind(workspace_ids)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(w, org, Json(keywords))| (w, org, keywords))
        .collect())
}

/// Leads due now, leased to the caller for `lease`.
pub async fn due<'e>(db: impl PgExecutor<'e>, limit: i64, lease: Duration) -> Result<Vec<LeadRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE salesforce_leads SET next_attempt_at = now() + $2::interval, attempts = attempts + 1
         WHERE (integration_id, conversation_id) IN (
             SELECT integration_id, conversation_id FROM salesforce_leads
             WHERE status = 'pending' AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(limit)
    .bind(lease)
    .fetch_all(db)
    .await?)
}

/// Records how a push ended: `synced` with the lead's id, or `failed` with
/// Salesforce's reason; the row as it is now.
pub async fn finish(conn: &mut PgConnection, lead: &LeadRow, outcome: Result<&str, &str>) -> Result<LeadRow> {
    let (status, lead_id, error) = match outcome {
        Ok(lead_id) => ("synced", lead_id, ""),
        Err(reason) => ("failed", "", reason),
    };
    // Fields that changed while this push was under way (the conversation
    // ended meanwhile) are still to be sent: the lead stays due.
    Ok(sqlx::query_as(&format!(
        "UPDATE salesforce_leads SET
             status = CASE WHEN fields = $6 THEN $3 ELSE 'pending' END,
             next_attempt_at = CASE WHEN fields = $6 THEN next_attempt_at ELSE now() END,
             attempts = CASE WHEN fields = $6 THEN attempts ELSE 0 END,
             lead_id = CASE WHEN $4 = '' THEN lead_id ELSE $4 END, last_error = $5,
             synced_at = CASE WHEN $3 = 'synced' THEN now() ELSE synced_at END
         WHERE integration_id = $1 AND conversation_id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(&lead.integration_id)
    .bind(&lead.id)
    .bind(status)
    .bind(lead_id)
    .bind(error)
    .bind(&lead.fields)
    .fetch_one(conn)
    .await?)
}

/// Tries the lead again at `at`, keeping why this attempt failed.
pub async fn retry_at<'e>(db: impl PgExecutor<'e>, lead: &LeadRow, reason: &str, at: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE salesforce_leads SET next_attempt_at = $3, last_error = $4
         WHERE integration_id = $1 AND conversation_id = $2",
    )
    .bind(&lead.integration_id)
    .bind(&lead.id)
    .bind(at)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(())
}

/// Holds every pending lead of the org until `until` (its API requests
/// are used up).
pub async fn pause<'e>(db: impl PgExecutor<'e>, integration_id: &str, until: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE salesforce_leads SET next_attempt_at = greatest(next_attempt_at, $2)
         WHERE integration_id = $1 AND status = 'pending'",
    )
    .bind(integration_id)
    .bind(until)
    .execute(db)
    .await?;
    Ok(())
}

/// A connection's leads, newest first.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    integration_id: &str,
    page: &NewestFirst,
) -> Result<Vec<LeadRow>> {
    let select = format!("SELECT * FROM (SELECT {COLUMNS}, conversation_id AS id FROM salesforce_leads) r");
    super::connection_page(db, &select, workspace_id, integration_id, page).await
}
