//! The `conversations` table.

use chrono::{DateTime, Utc};
use ids::{BotId, ConversationId};
use proto::chatbot::v1::Conversation;
use serde::Serialize;
use serde_json::Value;
use service_runtime::telemetry::spans;
use service_runtime::{pagination::NewestFirst, rows};
use sqlx::{PgConnection, PgExecutor};
use tracing::Instrument;

use crate::{
    error::{Error, Result},
    model::ConversationStatus,
    proto_convert::{json_to_struct, timestamp},
};

/// A conversation as stored, and as events carry it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ConversationRow {
    pub id: ConversationId,
    pub user_id: String,
    pub channel: String,
    pub status: String,
    pub metadata: Value,
    pub bot_id: Option<BotId>,
    pub message_count: i64,
    pub created_at: DateTime<Utc>,
    pub last_activity: DateTime<Utc>,
}

const COLUMNS: &str = "id, user_id, channel, status, metadata, bot_id, message_count, created_at, last_activity";

impl ConversationRow {
    pub fn status(&self) -> Result<ConversationStatus> {
        ConversationStatus::parse("status", &self.status)
    }
}

impl From<ConversationRow> for Conversation {
    fn from(row: ConversationRow) -> Self {
        Conversation {
            id: row.id.into_string(),
            user_id: row.user_id,
            channel: row.channel,
            status: row.status,
            metadata: Some(json_to_struct(row.metadata)),
            bot_id: row.bot_id.map(String::from).unwrap_or_default(),
            created_at: Some(timestamp(row.created_at)),
            last_activity: Some(timestamp(row.last_activity)),
            message_count: row.message_count,
        }
    }
}

/// A conversation to open.
pub struct NewConversation<'a> {
    pub user_id: &'a str,
    pub channel: &'a str,
    pub metadata: &'a Value,
    pub bot_id: Option<&'a BotId>,
}

pub async fn insert(conn: &mut PgConnection, workspace_id: &str, new: NewConversation<'_>) -> Result<ConversationRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO conversations (workspace_id, id, user_id, channel, status, metadata, bot_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(ConversationId::generate())
    .bind(new.user_id)
    .bind(new.channel)
    .bind(ConversationStatus::Active.as_str())
    .bind(new.metadata)
    .bind(new.bot_id)
    .fetch_one(conn)
    .instrument(spans::sql("INSERT", "conversations"))
    .await?)
}

/// A page of the workspace's conversations, newest first, optionally of
/// one status only.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    page: &NewestFirst,
    status: Option<ConversationStatus>,
) -> Result<Vec<ConversationRow>> {
    Ok(page
        .bind(
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM conversations
                 WHERE workspace_id = $1 AND ($5::text IS NULL OR status = $5) AND {}",
                NewestFirst::CLAUSE
            ))
            .bind(workspace_id),
        )
        .bind(status.map(ConversationStatus::as_str))
        .fetch_all(db)
        .instrument(spans::sql("SELECT", "conversations"))
        .await?)
}

pub async fn fetch<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &ConversationId) -> Result<ConversationRow> {
    rows::by_id(db, "conversations", COLUMNS, workspace_id, id.as_str())
        .await?
        .ok_or_else(|| Error::not_found(ConversationId::KIND, id.as_str()))
}

/// The customer a workspace's backend named in a conversation's
/// `metadata.customer`.
pub struct Customer<'a> {
    /// Compared in any case.
    pub email: Option<&'a str>,
    pub shopify_customer_id: Option<&'a str>,
}

/// The customer's most recently active conversation that is not ended.
pub async fn open_for_customer<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    customer: &Customer<'_>,
) -> Result<Option<ConversationRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM conversations
         WHERE workspace_id = $1 AND status <> 'ended'
           AND (lower(metadata -> 'customer' ->> 'email') = lower($2)
                OR (metadata -> 'customer' ->> 'shopify_customer_id') = $3)
         ORDER BY last_activity DESC LIMIT 1"
    ))
    .bind(workspace_id)
    .bind(customer.email)
    .bind(customer.shopify_customer_id)
    .fetch_optional(db)
    .instrument(spans::sql("SELECT", "conversations"))
    .await?)
}

/// Reads the conversation and holds its row lock until the transaction ends,
/// so concurrent updates and sends apply one after another.
pub async fn lock(conn: &mut PgConnection, workspace_id: &str, id: &ConversationId) -> Result<ConversationRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM conversations WHERE workspace_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(conn)
    .instrument(spans::sql("SELECT", "conversations"))
    .await?
    .ok_or_else(|| Error::not_found(ConversationId::KIND, id.as_str()))
}

/// NOT_FOUND unless the conversation is the workspace's.
pub async fn ensure<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &ConversationId) -> Result<()> {
    match super::exists(db, "conversations", workspace_id, id.as_str()).await? {
        true => Ok(()),
        false => Err(Error::not_found(ConversationId::KIND, id.as_str())),
    }
}

/// What an update changes; `None` keeps the stored value.
pub struct Changes<'a> {
    pub status: ConversationStatus,
    pub channel: Option<&'a str>,
    pub metadata: Option<&'a Value>,
}

/// Applies `changes` to a conversation the caller holds locked; the
/// activity time moves only when the status does.
pub async fn update(
    conn: &mut PgConnection,
    workspace_id: &str,
    id: &ConversationId,
    changes: Changes<'_>,
) -> Result<ConversationRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE conversations
         SET status = $3,
             channel = COALESCE($4, channel),
             metadata = COALESCE($5, metadata),
             last_activity = CASE WHEN status <> $3 THEN now() ELSE last_activity END
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .bind(changes.status.as_str())
    .bind(changes.channel)
    .bind(changes.metadata)
    .fetch_one(conn)
    .instrument(spans::sql("UPDATE", "conversations"))
    .await?)
}

/// Hands the conversation to a human: status `waiting`, and why under the
/// `handoff` metadata key.
pub async fn hand_off(
    conn: &mut PgConnection,
    workspace_id: &str,
    id: &ConversationId,
    why: &Value,
) -> Result<ConversationRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE conversations
         SET status = 'waiting', metadata = metadata || jsonb_build_object('handoff', $3::jsonb)
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .bind(why)
    .fetch_one(conn)
    .instrument(spans::sql("UPDATE", "conversations"))
    .await?)
}

/// Deletes the conversation (its messages go with it); NOT_FOUND when it
/// was not the workspace's.
pub async fn delete<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &ConversationId) -> Result<()> {
    match rows::delete_by_id(db, "conversations", workspace_id, id.as_str()).await? {
        true => Ok(()),
        false => Err(Error::not_found(ConversationId::KIND, id.as_str())),
    }
}
