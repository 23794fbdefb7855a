//! MessageService: append messages to a conversation in a stable order, with
//! idempotent retries, and read them back.

use std::sync::LazyLock;

use chrono::{DateTime, SubsecRound, Utc};
use proto::chatbot::v1::{
    GetMessageRequest, ListMessagesRequest, ListMessagesResponse, Message, ReplyDelta, SendMessageEvent,
    SendMessageRequest, SendMessageResponse, message_service_server::MessageService, send_message_event::Event,
};
use serde_json::json;
use service_runtime::{
    outbox::Outbox,
    pagination,
    principal::{Principal, idempotency_key},
};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    conversations::{self, ConversationRow},
    error::{Error, Result},
    events,
    ids::{ConversationId, MessageId},
    model::{ConversationStatus, Role, bounded_text, required_text},
    proto_convert::{json_to_struct, metadata_to_json, timestamp},
    replies::{Draft, Replier},
};

const MAX_CONTENT_CHARS: usize = 32 * 1024;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

#[derive(Clone)]
pub struct Messages {
    pool: PgPool,
    outbox: Outbox,
    replier: Replier,
}

impl Messages {
    pub fn new(pool: PgPool, outbox: Outbox, replier: Replier) -> Self {
        Self { pool, outbox, replier }
    }
}

#[derive(Clone, sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: String,
    conversation_id: String,
    sequence: i64,
    role: String,
    content: String,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, conversation_id, sequence, role, content, metadata, created_at";

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Message {
            id: row.id,
            conversation_id: row.conversation_id,
            role: row.role,
            content: row.content,
            metadata: Some(json_to_struct(row.metadata)),
            sequence: row.sequence,
            created_at: Some(timestamp(row.created_at)),
        }
    }
}

impl MessageRow {
    pub(crate) fn role(&self) -> &str {
        &self.role
    }

    fn to_message(&self) -> Message {
        self.clone().into()
    }

    /// The message as events carry it.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "conversation_id": self.conversation_id,
            "role": self.role,
            "content": self.content,
            "metadata": self.metadata,
            "sequence": self.sequence,
            "created_at": self.created_at,
        })
    }
}

/// A validated send request.
struct NewMessage {
    role: Role,
    content: String,
    metadata: serde_json::Value,
    idempotency_key: Option<String>,
    in_reply_to: Option<String>,
}

/// A message as `append` left it.
struct Appended {
    row: MessageRow,
    /// An earlier request with the same idempotency key stored it.
    replayed: bool,
    /// The conversation has a bot, which may answer.
    with_bot: bool,
}

/// A send request, validated, with whom it is for.
struct Send {
    workspace_id: String,
    conversation_id: ConversationId,
    message: NewMessage,
}

impl Send {
    fn parse(request: Request<SendMessageRequest>) -> Result<Self, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let key = idempotency_key(request.metadata())
            .map(|k| bounded_text("idempotency_key", &k, MAX_IDEMPOTENCY_KEY_CHARS))
            .transpose()?;
        let req = request.into_inner();
        Ok(Self {
            workspace_id: principal.workspace_id,
            conversation_id: ConversationId::parse("conversation_id", &req.conversation_id)?,
            message: NewMessage {
                role: Role::parse("role", &req.role)?,
                content: required_text("content", &req.content, MAX_CONTENT_CHARS)?,
                metadata: metadata_to_json("metadata", req.metadata)?,
                idempotency_key: key,
                in_reply_to: None,
            },
        })
    }
}

#[tonic::async_trait]
impl MessageService for Messages {
    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let send = Send::parse(request)?;
        let Appended {
            row,
            replayed,
            with_bot,
        } = self
            .append(&send.workspace_id, &send.conversation_id, send.message)
            .await?;
        let reply = if with_bot && row.role == Role::User.as_str() {
            // A task of its own: if the caller's deadline passes while a
            // model is slow, this handler is dropped, but the reply is
            // still stored.
            let this = self.clone();
            let question = row.clone();
            tokio::spawn(async move {
                this.reply(&send.workspace_id, &send.conversation_id, &question, None)
                    .await
            })
            .await
            .map_err(|e| Error::Internal(format!("drafting a reply: {e}")))??
        } else {
            None
        };
        Ok(Response::new(SendMessageResponse {
            message: Some(row.into()),
            replayed,
            reply: reply.map(Message::from),
        }))
    }

    type StreamMessageStream = ReceiverStream<Result<SendMessageEvent, Status>>;

    /// The message is stored before the stream starts (errors are plain
    /// statuses); the reply is drafted and stored by a task of its own, so
    /// a caller that goes away still leaves the complete reply behind.
    async fn stream_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<Self::StreamMessageStream>, Status> {
        let send = Send::parse(request)?;
        let Appended { row, with_bot, .. } = self
            .append(&send.workspace_id, &send.conversation_id, send.message)
            .await?;
        let (events, stream) = mpsc::channel(64);
        let this = self.clone();
        tokio::spawn(async move {
            let _ = events.send(Ok(event(Event::Message(row.to_message())))).await;
            if !with_bot {
                return;
            }
            let (deltas, mut pieces) = mpsc::channel::<String>(64);
            let forward = {
                let events = events.clone();
                tokio::spawn(async move {
                    while let Some(text) = pieces.recv().await {
                        let _ = events.send(Ok(event(Event::Delta(ReplyDelta { text })))).await;
                    }
                })
            };
            let reply = this
                .reply(&send.workspace_id, &send.conversation_id, &row, Some(&deltas))
                .await;
            drop(deltas);
            let _ = forward.await;
            let last = match reply {
                Ok(Some(reply)) => Ok(event(Event::Reply(reply.into()))),
                Ok(None) => return,
                Err(error) => Err(Status::from(error)),
            };
            let _ = events.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let conversation_id = ConversationId::parse("conversation_id", &req.conversation_id)?;
        let limit = pagination::page_limit(req.limit)?;
        let after: i64 = match pagination::decode_cursor(&req.cursor)? {
            None => 0,
            Some(c) => c
                .parse()
                .map_err(|_| Error::invalid("cursor", "is not a cursor returned by this API"))?,
        };
        self.ensure_conversation(&principal.workspace_id, &conversation_id)
            .await?;
        let rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM messages
             WHERE workspace_id = $1 AND conversation_id = $2 AND sequence > $3
             ORDER BY sequence
             LIMIT $4"
        ))
        .bind(&principal.workspace_id)
        .bind(conversation_id.as_str())
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(Error::from)?;
        let (rows, next_cursor) = pagination::finish_page(rows, limit, |r| r.sequence.to_string());
        Ok(Response::new(ListMessagesResponse {
            messages: rows.into_iter().map(Message::from).collect(),
            next_cursor,
        }))
    }

    async fn get_message(&self, request: Request<GetMessageRequest>) -> Result<Response<Message>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let conversation_id = ConversationId::parse("conversation_id", &req.conversation_id)?;
        let message_id = MessageId::parse("message_id", &req.message_id)?;
        let row: MessageRow = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM messages WHERE workspace_id = $1 AND conversation_id = $2 AND id = $3"
        ))
        .bind(&principal.workspace_id)
        .bind(conversation_id.as_str())
        .bind(message_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::not_found(MessageId::KIND, message_id.as_str()))?;
        Ok(Response::new(row.into()))
    }
}

fn event(event: Event) -> SendMessageEvent {
    SendMessageEvent { event: Some(event) }
}

impl Messages {
    /// The bot's reply to a stored `user` message, drafted and stored; the
    /// one already stored if this message was answered before. `None` when
    /// no bot answers: no bot, or the conversation is with a human.
    async fn reply(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        question: &MessageRow,
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<Option<MessageRow>> {
        if question.role != Role::User.as_str() {
            return Ok(None);
        }
        if let Some(existing) =
            find_by(&self.pool, workspace_id, conversation_id, Lookup::ReplyTo, &question.id).await?
        {
            if let Some(sender) = deltas {
                let _ = sender.send(existing.content.clone()).await;
            }
            return Ok(Some(existing));
        }
        let conversation = conversations::fetch(&self.pool, workspace_id, conversation_id).await?;
        let bot_id = match (conversation.status()?, conversation.bot_id()) {
            (ConversationStatus::Active, Some(bot_id)) => bot_id.to_owned(),
            _ => return Ok(None),
        };
        let Some(bot) = self.replier.bot(workspace_id, &bot_id).await? else {
            return Ok(None);
        };
        let draft = self
            .replier
            .draft(workspace_id, conversation_id.as_str(), &bot, &question.content, deltas)
            .await?;
        self.store_reply(workspace_id, conversation_id, question, draft).await
    }

    /// Stores a drafted reply with its events, unless another request
    /// answered first or the conversation ended meanwhile.
    async fn store_reply(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        question: &MessageRow,
        draft: Draft,
    ) -> Result<Option<MessageRow>> {
        let mut tx = self.pool.begin().await?;
        let conversation = conversations::lock(&mut tx, workspace_id, conversation_id).await?;
        if let Some(existing) = find_by(&mut *tx, workspace_id, conversation_id, Lookup::ReplyTo, &question.id).await? {
            return Ok(Some(existing));
        }
        if !conversation.status()?.accepts_messages() {
            return Ok(None);
        }
        let mut metadata = draft.metadata;
        metadata["in_reply_to"] = serde_json::Value::String(question.id.clone());
        let message = NewMessage {
            role: Role::Bot,
            // Replies obey the same bound as what clients may send.
            content: draft.content.chars().take(MAX_CONTENT_CHARS).collect(),
            metadata,
            idempotency_key: None,
            in_reply_to: Some(question.id.clone()),
        };
        let row = insert_locked(&mut tx, &self.outbox, workspace_id, &conversation, &message).await?;
        if let Some(reason) = &draft.failure {
            let event = events::message_failed(workspace_id, question, &row, reason);
            self.outbox.record(&mut tx, &event).await?;
        }
        if let Some(why) = draft.handoff {
            conversations::hand_off(&self.outbox, &mut tx, workspace_id, &conversation, why).await?;
        }
        tx.commit().await?;
        Ok(Some(row))
    }

    /// Appends in one statement, without a lock, when the conversation is
    /// as it was just read; a conversation changed meanwhile (a concurrent
    /// send, a hand-off) takes the locked path. Sends are every request's
    /// hot path, and this is two round trips instead of five.
    async fn append(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        message: NewMessage,
    ) -> Result<Appended> {
        let conversation = conversations::fetch(&self.pool, workspace_id, conversation_id).await?;
        let with_bot = conversation.bot_id().is_some();
        if let Some(key) = &message.idempotency_key
            && let Some(first) = find_by(&self.pool, workspace_id, conversation_id, Lookup::IdempotencyKey, key).await?
        {
            return replay(first, &message, with_bot);
        }
        ensure_accepts(&conversation)?;
        match insert(&self.pool, &self.outbox, workspace_id, &conversation, &message).await {
            Ok(Some(row)) => Ok(Appended {
                row,
                replayed: false,
                with_bot,
            }),
            // Another send changed the conversation first, or a retry with
            // the same key stored its message first: the locked path sorts
            // out which.
            Ok(None) => self.append_locked(workspace_id, conversation_id, message).await,
            Err(Error::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                self.append_locked(workspace_id, conversation_id, message).await
            }
            Err(error) => Err(error),
        }
    }

    /// Appends under the conversation's row lock, which serialises senders:
    /// sequence numbers have no gaps and a retried key finds its first message.
    async fn append_locked(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        message: NewMessage,
    ) -> Result<Appended> {
        let mut tx = self.pool.begin().await?;
        let conversation = conversations::lock(&mut tx, workspace_id, conversation_id).await?;
        let with_bot = conversation.bot_id().is_some();
        if let Some(key) = &message.idempotency_key
            && let Some(first) = find_by(&mut *tx, workspace_id, conversation_id, Lookup::IdempotencyKey, key).await?
        {
            return replay(first, &message, with_bot);
        }
        ensure_accepts(&conversation)?;
        let row = insert_locked(&mut tx, &self.outbox, workspace_id, &conversation, &message).await?;
        tx.commit().await?;
        Ok(Appended {
            row,
            replayed: false,
            with_bot,
        })
    }

    async fn ensure_conversation(&self, workspace_id: &str, id: &ConversationId) -> Result<()> {
        let found: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM conversations WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        found
            .map(|_| ())
            .ok_or_else(|| Error::not_found(ConversationId::KIND, id.as_str()))
    }
}

/// A send that repeats an earlier one's idempotency key gets the message
/// that one stored, if it sent the same thing.
fn replay(first: MessageRow, message: &NewMessage, with_bot: bool) -> Result<Appended> {
    if first.role != message.role.as_str() || first.content != message.content {
        return Err(Error::AlreadyExists(
            "Idempotency-Key was already used for a different message in this conversation".into(),
        ));
    }
    Ok(Appended {
        row: first,
        replayed: true,
        with_bot,
    })
}

fn ensure_accepts(conversation: &ConversationRow) -> Result<()> {
    if conversation.status()?.accepts_messages() {
        Ok(())
    } else {
        Err(Error::FailedPrecondition(
            "conversation is ended; it accepts no more messages".into(),
        ))
    }
}

/// The bot's greeting, the first message of a conversation it opens.
pub(crate) async fn greet(
    tx: &mut Transaction<'_, Postgres>,
    outbox: &Outbox,
    workspace_id: &str,
    conversation: &ConversationRow,
    greeting: &str,
) -> Result<()> {
    let message = NewMessage {
        role: Role::Bot,
        content: greeting.to_owned(),
        metadata: json!({ "greeting": true }),
        idempotency_key: None,
        in_reply_to: None,
    };
    insert_locked(tx, outbox, workspace_id, conversation, &message).await?;
    Ok(())
}

/// [`insert`] for a caller whose transaction holds the conversation's row
/// (locked, or inserted by it), which therefore cannot have changed.
async fn insert_locked(
    tx: &mut Transaction<'_, Postgres>,
    outbox: &Outbox,
    workspace_id: &str,
    conversation: &ConversationRow,
    message: &NewMessage,
) -> Result<MessageRow> {
    insert(&mut **tx, outbox, workspace_id, conversation, message)
        .await?
        .ok_or_else(|| Error::Internal("the conversation changed under its row lock".into()))
}

/// The statement that stores a message, counts it on its conversation and
/// records its event, if any, in one round trip; only if the conversation
/// still has the count and status it was read with.
fn insert_sql(announced: bool) -> String {
    let announce = if announced {
        format!(", recorded AS ({})", Outbox::insert(Some("stored"), 12))
    } else {
        String::new()
    };
    format!(
        "WITH counted AS (
             UPDATE conversations SET message_count = message_count + 1, last_activity = $10
             WHERE workspace_id = $1 AND id = $3 AND message_count = $4 - 1 AND status = $11
             RETURNING 1
         ), stored AS (
             INSERT INTO messages (workspace_id, id, conversation_id, sequence, role, content, metadata,
                                   idempotency_key, in_reply_to, created_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM counted
             RETURNING 1
         ){announce}
         SELECT 1 FROM stored"
    )
}

static INSERT_ANNOUNCED: LazyLock<String> = LazyLock::new(|| insert_sql(true));
static INSERT_QUIET: LazyLock<String> = LazyLock::new(|| insert_sql(false));

/// Stores `message` as the next of `conversation` (as read, or as locked by
/// the caller's transaction) with the event announcing it. `None` if the
/// conversation is no longer as read: nothing was stored.
async fn insert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    outbox: &Outbox,
    workspace_id: &str,
    conversation: &ConversationRow,
    message: &NewMessage,
) -> Result<Option<MessageRow>> {
    let row = MessageRow {
        id: MessageId::generate().as_str().to_owned(),
        conversation_id: conversation.id().to_owned(),
        sequence: conversation.message_count() + 1,
        role: message.role.as_str().to_owned(),
        content: message.content.clone(),
        metadata: message.metadata.clone(),
        // Stamped here so the event, built before the statement, carries
        // it; PostgreSQL keeps microseconds, so the row returned is the row
        // stored.
        created_at: Utc::now().trunc_subsecs(6),
    };
    let event = events::message(workspace_id, &row);
    let sql = if event.is_some() {
        &*INSERT_ANNOUNCED
    } else {
        &*INSERT_QUIET
    };
    let query = sqlx::query(sql)
        .bind(workspace_id)
        .bind(&row.id)
        .bind(&row.conversation_id)
        .bind(row.sequence)
        .bind(&row.role)
        .bind(&row.content)
        .bind(&row.metadata)
        .bind(&message.idempotency_key)
        .bind(&message.in_reply_to)
        .bind(row.created_at)
        .bind(conversation.status_name());
    let query = match &event {
        Some(event) => outbox.bind(query, event),
        None => query,
    };
    let stored = query.execute(executor).await?.rows_affected() == 1;
    Ok(stored.then_some(row))
}

/// The message of the conversation whose `column` (`in_reply_to` or
/// `idempotency_key`, both uniquely indexed) is `value`.
async fn find_by<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    workspace_id: &str,
    conversation_id: &ConversationId,
    column: Lookup,
    value: &str,
) -> Result<Option<MessageRow>> {
    let column = match column {
        Lookup::ReplyTo => "in_reply_to",
        Lookup::IdempotencyKey => "idempotency_key",
    };
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM messages
         WHERE workspace_id = $1 AND conversation_id = $2 AND {column} = $3"
    ))
    .bind(workspace_id)
    .bind(conversation_id.as_str())
    .bind(value)
    .fetch_optional(executor)
    .await?)
}

#[derive(Clone, Copy)]
enum Lookup {
    ReplyTo,
    IdempotencyKey,
}
