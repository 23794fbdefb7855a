//! Appending messages to a conversation in a stable order, with idempotent
//! retries. Sends are every request's hot path: the common case is one
//! statement (store the message, count it on the conversation, record its
//! event) without a lock; a conversation that changed since it was read
//! takes its row lock instead, which serialises senders so sequence
//! numbers have no gaps and a retried key finds its first message.

use event_pipeline::Outbox;
use ids::ConversationId;
use serde_json::json;
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::{
    error::{Error, Result},
    events,
    model::Role,
    store::{
        conversations::{self, ConversationRow},
        messages::{self, MessageRow, NewMessage},
    },
};

/// A message as [`Sending::append`] left it.
pub struct Appended {
    pub row: MessageRow,
    /// An earlier request with the same idempotency key stored it.
    pub replayed: bool,
    /// The conversation has a bot, which may answer.
    pub with_bot: bool,
}

#[derive(Clone)]
pub struct Sending {
    pool: PgPool,
    outbox: Outbox,
}

impl Sending {
    pub fn new(pool: PgPool, outbox: Outbox) -> Self {
        Self { pool, outbox }
    }

    /// Appends in one statement when the conversation is as it was just
    /// read, or under its row lock when it was not (a concurrent send, a
    /// hand-off): two round trips instead of five in the common case.
    pub async fn append(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        message: NewMessage,
    ) -> Result<Appended> {
        let conversation = conversations::fetch(&self.pool, workspace_id, conversation_id).await?;
        let with_bot = conversation.bot_id.is_some();
        if let Some(key) = &message.idempotency_key
            && let Some(first) = messages::with_idempotency_key(&self.pool, workspace_id, conversation_id, key).await?
        {
            return replay(first, &message, with_bot);
        }
        ensure_accepts(&conversation)?;
        match try_append(&self.pool, &self.outbox, workspace_id, &conversation, &message).await {
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

    async fn append_locked(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        message: NewMessage,
    ) -> Result<Appended> {
        let mut tx = self.pool.begin().await?;
        let conversation = conversations::lock(&mut tx, workspace_id, conversation_id).await?;
        let with_bot = conversation.bot_id.is_some();
        if let Some(key) = &message.idempotency_key
            && let Some(first) = messages::with_idempotency_key(&mut *tx, workspace_id, conversation_id, key).await?
        {
            return replay(first, &message, with_bot);
        }
        ensure_accepts(&conversation)?;
        let row = append_held(&mut tx, &self.outbox, workspace_id, &conversation, &message).await?;
        tx.commit().await?;
        Ok(Appended {
            row,
            replayed: false,
            with_bot,
        })
    }
}

/// Appends `message` to `conversation`, which the caller's transaction
/// holds (locked, or inserted by it) and which therefore cannot have
/// changed since it was read.
pub async fn append_held(
    conn: &mut PgConnection,
    outbox: &Outbox,
    workspace_id: &str,
    conversation: &ConversationRow,
    message: &NewMessage,
) -> Result<MessageRow> {
    try_append(conn, outbox, workspace_id, conversation, message)
        .await?
        .ok_or_else(|| Error::Internal("the conversation changed under its row lock".into()))
}

/// The bot's greeting, the first message of a conversation it opens.
pub async fn greet(
    conn: &mut PgConnection,
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
    append_held(conn, outbox, workspace_id, conversation, &message).await?;
    Ok(())
}

/// Stores `message` as the next of `conversation` (as read) with the event
/// announcing it; `None` if the conversation is no longer as read.
async fn try_append<'e>(
    db: impl PgExecutor<'e>,
    outbox: &Outbox,
    workspace_id: &str,
    conversation: &ConversationRow,
    message: &NewMessage,
) -> Result<Option<MessageRow>> {
    let row = messages::next_row(conversation, message);
    let event = events::message(workspace_id, &row);
    let event = event.as_ref().map(|event| (outbox, event));
    let stored = messages::append(db, workspace_id, &conversation.status, &row, message, event).await?;
    Ok(stored.then_some(row))
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
