//! ConversationService: create, read, update (status transitions, metadata)
//! and delete conversations, each scoped to the caller's workspace.

use chrono::{DateTime, Utc};
use prost::Message as _;
use proto::chatbot::v1::{
    Conversation, CreateConversationRequest, DeleteConversationRequest, DeleteConversationResponse,
    GetConversationRequest, ListConversationsRequest, ListConversationsResponse, UpdateConversationRequest,
    conversation_service_server::ConversationService,
};
use serde_json::json;
use service_runtime::{outbox::Outbox, pagination::NewestFirst, principal::Principal};
use sqlx::{PgPool, Postgres, Transaction};
use tonic::{Request, Response, Status};

use crate::{
    error::{Error, Result},
    events,
    ids::{BotId, ConversationId},
    messages,
    model::{ConversationStatus, parse_channel, required_text},
    proto_convert::{json_to_struct, metadata_to_json, timestamp},
};

const MAX_USER_ID_CHARS: usize = 256;

pub struct Conversations {
    pool: PgPool,
    outbox: Outbox,
}

impl Conversations {
    pub fn new(pool: PgPool, outbox: Outbox) -> Self {
        Self { pool, outbox }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ConversationRow {
    id: String,
    user_id: String,
    channel: String,
    status: String,
    metadata: serde_json::Value,
    bot_id: Option<String>,
    message_count: i64,
    created_at: DateTime<Utc>,
    last_activity: DateTime<Utc>,
}

const COLUMNS: &str = "id, user_id, channel, status, metadata, bot_id, message_count, created_at, last_activity";

impl From<ConversationRow> for Conversation {
    fn from(row: ConversationRow) -> Self {
        Conversation {
            id: row.id,
            user_id: row.user_id,
            channel: row.channel,
            status: row.status,
            metadata: Some(json_to_struct(row.metadata)),
            bot_id: row.bot_id.unwrap_or_default(),
            created_at: Some(timestamp(row.created_at)),
            last_activity: Some(timestamp(row.last_activity)),
            message_count: row.message_count,
        }
    }
}

#[tonic::async_trait]
impl ConversationService for Conversations {
    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let status = match req.status.as_str() {
            "" => None,
            s => Some(ConversationStatus::parse("status", s)?.as_str()),
        };
        let rows: Vec<ConversationRow> = page
            .bind(
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM conversations
                     WHERE workspace_id = $1 AND ($5::text IS NULL OR status = $5) AND {}",
                    NewestFirst::CLAUSE
                ))
                .bind(&principal.workspace_id),
            )
            .bind(status)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, &r.id));
        Ok(Response::new(ListConversationsResponse {
            conversations: rows.into_iter().map(Conversation::from).collect(),
            next_cursor,
        }))
    }

    async fn create_conversation(
        &self,
        request: Request<CreateConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let user_id = required_text("user_id", &req.user_id, MAX_USER_ID_CHARS)?;
        let channel = parse_channel("channel", &req.channel)?;
        let metadata = metadata_to_json("metadata", req.metadata)?;
        let (bot_id, greeting) = match req.bot_id.as_str() {
            "" => (None, String::new()),
            id => {
                let (bot_id, greeting) = self.existing_bot(&principal.workspace_id, id).await?;
                (Some(bot_id), greeting)
            }
        };
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let row: ConversationRow = sqlx::query_as(&format!(
            "INSERT INTO conversations (workspace_id, id, user_id, channel, status, metadata, bot_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING {COLUMNS}"
        ))
        .bind(&principal.workspace_id)
        .bind(ConversationId::generate().as_str())
        .bind(user_id)
        .bind(channel)
        .bind(ConversationStatus::Active.as_str())
        .bind(metadata)
        .bind(bot_id.as_ref().map(BotId::as_str))
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::from)?;
        let started = events::conversation(events::CONVERSATION_STARTED, &principal.workspace_id, &row);
        self.outbox.record(&mut tx, &started).await.map_err(Error::from)?;
        let row = if greeting.is_empty() {
            row
        } else {
            messages::greet(&mut tx, &self.outbox, &principal.workspace_id, &row, &greeting).await?;
            let id = ConversationId::parse("conversation_id", &row.id)?;
            lock(&mut tx, &principal.workspace_id, &id).await?
        };
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(row.into()))
    }

    async fn get_conversation(
        &self,
        request: Request<GetConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = ConversationId::parse("conversation_id", &request.get_ref().conversation_id)?;
        let row = fetch(&self.pool, &principal.workspace_id, &id).await?;
        Ok(Response::new(row.into()))
    }

    async fn update_conversation(
        &self,
        request: Request<UpdateConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let id = ConversationId::parse("conversation_id", &req.conversation_id)?;
        let requested_status = req
            .status
            .as_deref()
            .map(|s| ConversationStatus::parse("status", s))
            .transpose()?;
        let channel = req
            .channel
            .as_deref()
            .map(|c| parse_channel("channel", c))
            .transpose()?;
        let metadata = req
            .metadata
            .map(|m| metadata_to_json("metadata", Some(m)))
            .transpose()?;

        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let current = lock(&mut tx, &principal.workspace_id, &id).await?;
        let current_status = ConversationStatus::parse("status", &current.status)?;
        let status = match requested_status {
            Some(next) => current_status.transition_to(next)?,
            None => current_status,
        };
        if current_status == ConversationStatus::Ended && (channel.is_some() || metadata.is_some()) {
            return Err(Error::FailedPrecondition("conversation is ended; it can no longer be changed".into()).into());
        }
        let row: ConversationRow = sqlx::query_as(&format!(
            "UPDATE conversations
             SET status = $3,
                 channel = COALESCE($4, channel),
                 metadata = COALESCE($5, metadata),
                 last_activity = CASE WHEN status <> $3 THEN now() ELSE last_activity END
             WHERE workspace_id = $1 AND id = $2
             RETURNING {COLUMNS}"
        ))
        .bind(&principal.workspace_id)
        .bind(id.as_str())
        .bind(status.as_str())
        .bind(channel)
        .bind(metadata)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::from)?;
        record_update(&self.outbox, &mut tx, &principal.workspace_id, &current, &row).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(row.into()))
    }

    async fn delete_conversation(
        &self,
        request: Request<DeleteConversationRequest>,
    ) -> Result<Response<DeleteConversationResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = ConversationId::parse("conversation_id", &request.get_ref().conversation_id)?;
        let deleted = sqlx::query("DELETE FROM conversations WHERE workspace_id = $1 AND id = $2")
            .bind(&principal.workspace_id)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(Error::from)?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::not_found(ConversationId::KIND, id.into_string()).into());
        }
        Ok(Response::new(DeleteConversationResponse {
            id: id.into_string(),
            deleted: true,
        }))
    }
}

impl Conversations {
    /// The bot, if it is the workspace's, and the greeting it opens with.
    async fn existing_bot(&self, workspace_id: &str, id: &str) -> Result<(BotId, String)> {
        let bot_id = BotId::parse("bot_id", id)
            .map_err(|_| Error::invalid("bot_id", format!("no bot {id} in this workspace")))?;
        let config: Option<Vec<u8>> = sqlx::query_scalar("SELECT config FROM bots WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(bot_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let config = config.ok_or_else(|| Error::invalid("bot_id", format!("no bot {id} in this workspace")))?;
        let greeting = proto::chatbot::v1::BotConfig::decode(config.as_slice())
            .map(|c| c.greeting.trim().to_owned())
            .unwrap_or_default();
        Ok((bot_id, greeting))
    }
}

/// `conversation.updated` listing what changed, and `conversation.ended`
/// when the change ended it; nothing when nothing changed.
pub(crate) async fn record_update(
    outbox: &Outbox,
    tx: &mut Transaction<'_, Postgres>,
    workspace_id: &str,
    before: &ConversationRow,
    after: &ConversationRow,
) -> Result<()> {
    let mut changes = Vec::new();
    if before.status != after.status {
        changes.push(events::change("status", json!(before.status), json!(after.status)));
    }
    if before.channel != after.channel {
        changes.push(events::change("channel", json!(before.channel), json!(after.channel)));
    }
    if before.metadata != after.metadata {
        changes.push(events::change(
            "metadata",
            before.metadata.clone(),
            after.metadata.clone(),
        ));
    }
    if changes.is_empty() {
        return Ok(());
    }
    let ended = after.status == ConversationStatus::Ended.as_str() && before.status != after.status;
    outbox
        .record(tx, &events::conversation_updated(workspace_id, after, changes))
        .await?;
    if ended {
        let event = events::conversation(events::CONVERSATION_ENDED, workspace_id, after);
        outbox.record(tx, &event).await?;
    }
    Ok(())
}

/// Hands the conversation to a human: status `waiting`, and why under the
/// `handoff` metadata key; recorded as `conversation.updated`.
pub(crate) async fn hand_off(
    outbox: &Outbox,
    tx: &mut Transaction<'_, Postgres>,
    workspace_id: &str,
    current: &ConversationRow,
    why: serde_json::Value,
) -> Result<()> {
    let row: ConversationRow = sqlx::query_as(&format!(
        "UPDATE conversations
         SET status = 'waiting', metadata = metadata || jsonb_build_object('handoff', $3::jsonb)
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(&current.id)
    .bind(why)
    .fetch_one(&mut **tx)
    .await?;
    record_update(outbox, tx, workspace_id, current, &row).await
}

pub(crate) async fn fetch(pool: &PgPool, workspace_id: &str, id: &ConversationId) -> Result<ConversationRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM conversations WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace_id)
    .bind(id.as_str())
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| Error::not_found(ConversationId::KIND, id.as_str()))
}

/// Reads the conversation and holds its row lock until the transaction ends,
/// so concurrent updates and sends apply one after another.
pub(crate) async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    workspace_id: &str,
    id: &ConversationId,
) -> Result<ConversationRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM conversations WHERE workspace_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(workspace_id)
    .bind(id.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| Error::not_found(ConversationId::KIND, id.as_str()))
}

impl ConversationRow {
    /// The conversation as events carry it.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "user_id": self.user_id,
            "channel": self.channel,
            "status": self.status,
            "metadata": self.metadata,
            "bot_id": self.bot_id,
            "message_count": self.message_count,
            "created_at": self.created_at,
            "last_activity": self.last_activity,
        })
    }

    pub(crate) fn status(&self) -> Result<ConversationStatus> {
        ConversationStatus::parse("status", &self.status)
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The status as stored.
    pub(crate) fn status_name(&self) -> &str {
        &self.status
    }

    pub(crate) fn message_count(&self) -> i64 {
        self.message_count
    }

    pub(crate) fn bot_id(&self) -> Option<&str> {
        self.bot_id.as_deref()
    }
}
