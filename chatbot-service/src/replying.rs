//! The bot's reply to a stored user message: drafted outside any
//! transaction (an index lookup or a model call), then stored with its
//! events under the conversation's row lock. A unique `in_reply_to` keeps a
//! retried send from being answered twice.
//!
//! Each reply is drafted and stored by a task of its own, so a caller that
//! goes away (a passed deadline, a closed stream) still leaves the complete
//! reply behind.

use event_pipeline::Outbox;
use ids::ConversationId;
use sqlx::PgPool;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    drafting::{Draft, Drafter, orders::Customer},
    error::{Error, Result},
    events,
    model::{ConversationStatus, MAX_MESSAGE_CHARS, Role},
    sending,
    store::{
        bots, conversations,
        messages::{self, MessageRow, NewMessage},
    },
};

/// Pieces of a streamed reply buffered between the drafter and the caller.
const STREAM_BUFFER: usize = 64;

#[derive(Clone)]
pub struct Replying {
    pool: PgPool,
    outbox: Outbox,
    drafter: Drafter,
}

impl Replying {
    pub fn new(pool: PgPool, outbox: Outbox, drafter: Drafter) -> Self {
        Self { pool, outbox, drafter }
    }

    /// The reply to `question`, stored; the one stored before if it was
    /// answered already. `None` when no bot answers: no bot, or the
    /// conversation is with a human.
    pub async fn reply(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        question: &MessageRow,
    ) -> Result<Option<MessageRow>> {
        let (this, workspace_id, conversation_id, question) = (
            self.clone(),
            workspace_id.to_owned(),
            conversation_id.clone(),
            question.clone(),
        );
        tokio::spawn(async move { this.answer(&workspace_id, &conversation_id, &question, None).await })
            .await
            .map_err(|e| Error::Internal(format!("drafting a reply: {e}")))?
    }

    /// The same, streamed: the reply's text arrives on the receiver as it
    /// is drafted, and the task ends with the stored reply.
    pub fn stream(
        &self,
        workspace_id: String,
        conversation_id: ConversationId,
        question: MessageRow,
    ) -> (mpsc::Receiver<String>, JoinHandle<Result<Option<MessageRow>>>) {
        let (deltas, pieces) = mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        let task = tokio::spawn(async move {
            this.answer(&workspace_id, &conversation_id, &question, Some(&deltas))
                .await
        });
        (pieces, task)
    }

    async fn answer(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        question: &MessageRow,
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<Option<MessageRow>> {
        if question.role != Role::User.as_str() {
            return Ok(None);
        }
        if let Some(existing) = messages::reply_to(&self.pool, workspace_id, conversation_id, &question.id).await? {
            if let Some(sender) = deltas {
                let _ = sender.send(existing.content.clone()).await;
            }
            return Ok(Some(existing));
        }
        let conversation = conversations::fetch(&self.pool, workspace_id, conversation_id).await?;
        let bot_id = match (conversation.status()?, conversation.bot_id) {
            (ConversationStatus::Active, Some(bot_id)) => bot_id,
            _ => return Ok(None),
        };
        let Some(bot) = bots::find(&self.pool, workspace_id, &bot_id).await? else {
            return Ok(None);
        };
        let customer = Customer::from_metadata(&conversation.metadata);
        let draft = self
            .drafter
            .draft(
                workspace_id,
                conversation_id,
                &bot.try_into()?,
                (&question.content, customer.as_ref()),
                deltas,
            )
            .await?;
        self.store(workspace_id, conversation_id, question, draft).await
    }

    /// Stores a drafted reply with its events, unless another request
    /// answered first or the conversation ended meanwhile.
    async fn store(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        question: &MessageRow,
        draft: Draft,
    ) -> Result<Option<MessageRow>> {
        let mut tx = self.pool.begin().await?;
        let conversation = conversations::lock(&mut tx, workspace_id, conversation_id).await?;
        if let Some(existing) = messages::reply_to(&mut *tx, workspace_id, conversation_id, &question.id).await? {
            return Ok(Some(existing));
        }
        if !conversation.status()?.accepts_messages() {
            return Ok(None);
        }
        let mut metadata = draft.metadata;
        metadata["in_reply_to"] = serde_json::Value::String(question.id.to_string());
        let message = NewMessage {
            role: Role::Bot,
            // Replies obey the same bound as what clients may send.
            content: draft.content.chars().take(MAX_MESSAGE_CHARS).collect(),
            metadata,
            idempotency_key: None,
            in_reply_to: Some(question.id.clone()),
        };
        let row = sending::append_held(&mut tx, &self.outbox, workspace_id, &conversation, &message).await?;
        if let Some(reason) = &draft.failure {
            let event = events::message_failed(workspace_id, question, &row, reason);
            self.outbox.record(&mut tx, &event).await?;
        }
        if let Some(why) = draft.handoff {
            let after = conversations::hand_off(&mut tx, workspace_id, conversation_id, &why).await?;
            let changed = events::conversation_changed(workspace_id, &conversation, &after);
            self.outbox.record_all(&mut tx, &changed).await?;
        }
        tx.commit().await?;
        Ok(Some(row))
    }
}
