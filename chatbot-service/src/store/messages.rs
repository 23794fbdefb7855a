//! The `messages` table, and the one statement that appends a message to
//! its conversation.

use chrono::{DateTime, SubsecRound, Utc};
use event_pipeline::{Envelope, Outbox};
use ids::{ConversationId, MessageId};
use proto::chatbot::v1::Message;
use serde::Serialize;
use serde_json::Value;
use service_runtime::telemetry::spans;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use tracing::Instrument;

use super::conversations::ConversationRow;
use crate::{
    error::{Error, Result},
    model::Role,
    proto_convert::{json_to_struct, timestamp},
};

/// A message as stored, and as events carry it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct MessageRow {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub sequence: i64,
    pub role: String,
    pub content: String,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, conversation_id, sequence, role, content, metadata, created_at";

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Message {
            id: row.id.into_string(),
            conversation_id: row.conversation_id.into_string(),
            role: row.role,
            content: row.content,
            metadata: Some(json_to_struct(row.metadata)),
            sequence: row.sequence,
            created_at: Some(timestamp(row.created_at)),
        }
    }
}

/// A validated message to append.
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    pub metadata: Value,
    pub idempotency_key: Option<String>,
    /// The user message a bot reply answers (uniquely indexed: one reply
    /// each).
    pub in_reply_to: Option<MessageId>,
}

/// The row `message` becomes as the next of `conversation` (as read).
/// Its id and time are fixed here, so an event built before the statement
/// carries them; PostgreSQL keeps microseconds, so the row returned is the
/// row stored.
pub fn next_row(conversation: &ConversationRow, message: &NewMessage) -> MessageRow {
    MessageRow {
        id: MessageId::generate(),
        conversation_id: conversation.id.clone(),
        sequence: conversation.message_count + 1,
        role: message.role.as_str().to_owned(),
        content: message.content.clone(),
        metadata: message.metadata.clone(),
        created_at: Utc::now().trunc_subsecs(6),
    }
}

/// Stores `row` (from [`next_row`]), counts it on its conversation and
/// records `event` in one statement, one round trip, only if the
/// conversation still has the count and `status` it was read with. False
/// when it changed meanwhile: nothing was stored.
pub async fn append<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    status: &str,
    row: &MessageRow,
    message: &NewMessage,
    event: Option<(&Outbox, &Envelope)>,
) -> Result<bool> {
    let mut statement = append_statement(workspace_id, status, row, message);
    if let Some((outbox, event)) = event {
        outbox.push_cte(&mut statement, "recorded", "stored", event);
    }
    statement.push(" SELECT 1 FROM stored");
    Ok(statement
        .build()
        .execute(db)
        .instrument(spans::sql("INSERT", "messages"))
        .await?
        .rows_affected()
        == 1)
}

fn append_statement<'a>(
    workspace_id: &'a str,
    status: &'a str,
    row: &'a MessageRow,
    message: &'a NewMessage,
) -> QueryBuilder<'a, Postgres> {
    let mut sql = QueryBuilder::new("WITH counted AS (UPDATE conversations SET message_count = message_count + 1, ");
    sql.push("last_activity = ").push_bind(row.created_at);
    sql.push(" WHERE workspace_id = ").push_bind(workspace_id);
    sql.push(" AND id = ").push_bind(&row.conversation_id);
    sql.push(" AND message_count = ").push_bind(row.sequence - 1);
    sql.push(" AND status = ").push_bind(status);
    sql.push(
        " RETURNING 1), stored AS (INSERT INTO messages (workspace_id, id, conversation_id, sequence, role, \
         content, metadata, idempotency_key, in_reply_to, created_at) SELECT ",
    );
    sql.separated(", ")
        .push_bind(workspace_id)
        .push_bind(&row.id)
        .push_bind(&row.conversation_id)
        .push_bind(row.sequence)
        .push_bind(row.role.as_str())
        .push_bind(row.content.as_str())
        .push_bind(&row.metadata)
        .push_bind(message.idempotency_key.as_deref())
        .push_bind(message.in_reply_to.as_ref())
        .push_bind(row.created_at);
    sql.push(" FROM counted RETURNING 1)");
    sql
}

/// The message of the conversation answering `question`, if any.
pub async fn reply_to<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    conversation_id: &ConversationId,
    question: &MessageId,
) -> Result<Option<MessageRow>> {
    find_by(db, workspace_id, conversation_id, "in_reply_to", question.as_str()).await
}

/// The message of the conversation first sent with idempotency `key`.
pub async fn with_idempotency_key<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    conversation_id: &ConversationId,
    key: &str,
) -> Result<Option<MessageRow>> {
    find_by(db, workspace_id, conversation_id, "idempotency_key", key).await
}

/// The message whose `column` (uniquely indexed) is `value`.
async fn find_by<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    conversation_id: &ConversationId,
    column: &'static str,
    value: &str,
) -> Result<Option<MessageRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages
         WHERE workspace_id = $1 AND conversation_id = $2 AND {column} = $3"
    ))
    .bind(workspace_id)
    .bind(conversation_id)
    .bind(value)
    .fetch_optional(db)
    .instrument(spans::sql("SELECT", "messages"))
    .await?)
}

/// Up to `limit` messages after sequence number `after`, in order.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    conversation_id: &ConversationId,
    after: i64,
    limit: i64,
) -> Result<Vec<MessageRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages
         WHERE workspace_id = $1 AND conversation_id = $2 AND sequence > $3
         ORDER BY sequence
         LIMIT $4"
    ))
    .bind(workspace_id)
    .bind(conversation_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .instrument(spans::sql("SELECT", "messages"))
    .await?)
}

pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    conversation_id: &ConversationId,
    id: &MessageId,
) -> Result<MessageRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages WHERE workspace_id = $1 AND conversation_id = $2 AND id = $3"
    ))
    .bind(workspace_id)
    .bind(conversation_id)
    .bind(id)
    .fetch_optional(db)
    .instrument(spans::sql("SELECT", "messages"))
    .await?
    .ok_or_else(|| Error::not_found(MessageId::KIND, id.as_str()))
}

/// The conversation's last `limit` messages as (role, content), oldest
/// first.
pub async fn recent<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    conversation_id: &ConversationId,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    let mut rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT role, content FROM messages
         WHERE workspace_id = $1 AND conversation_id = $2
         ORDER BY sequence DESC
         LIMIT $3",
    )
    .bind(workspace_id)
    .bind(conversation_id)
    .bind(limit)
    .fetch_all(db)
    .instrument(spans::sql("SELECT", "messages"))
    .await?;
    rows.reverse();
    Ok(rows)
}
