//! ConversationService: create, read, update (status transitions, metadata)
//! and delete conversations, each scoped to the caller's workspace.

use event_pipeline::Outbox;
use ids::{BotId, ConversationId};
use proto::chatbot::v1::{
    Conversation, CreateConversationRequest, DeleteConversationRequest, DeleteConversationResponse,
    GetConversationRequest, ListConversationsRequest, ListConversationsResponse, UpdateConversationRequest,
    conversation_service_server::ConversationService,
};
use service_runtime::{pagination::NewestFirst, principal::Principal};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    error::{Error, Result},
    events,
    model::{ConversationStatus, parse_channel, required_text},
    proto_convert::metadata_to_json,
    sending,
    store::{
        bots,
        conversations::{self, Changes, NewConversation},
    },
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

#[tonic::async_trait]
impl ConversationService for Conversations {
    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let status = match req.status.as_str() {
            "" => None,
            s => Some(ConversationStatus::parse("status", s)?),
        };
        let rows = conversations::list(&self.pool, &principal.workspace_id, &page, status).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        Ok(Response::new(ListConversationsResponse {
            conversations: rows.into_iter().map(Conversation::from).collect(),
            next_cursor,
        }))
    }

    async fn create_conversation(
        &self,
        request: Request<CreateConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        let principal = Principal::of(&request)?;
        let workspace_id = principal.workspace_id.as_str();
        let req = request.into_inner();
        let user_id = required_text("user_id", &req.user_id, MAX_USER_ID_CHARS)?;
        let channel = parse_channel("channel", &req.channel)?;
        let metadata = metadata_to_json("metadata", req.metadata)?;
        let (bot_id, greeting) = match req.bot_id.as_str() {
            "" => (None, String::new()),
            id => self.bot_and_greeting(workspace_id, id).await?,
        };
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let new = NewConversation {
            user_id: &user_id,
            channel: &channel,
            metadata: &metadata,
            bot_id: bot_id.as_ref(),
        };
        let row = conversations::insert(&mut tx, workspace_id, new).await?;
        let started = events::conversation_started(workspace_id, &row);
        self.outbox.record(&mut tx, &started).await.map_err(Error::from)?;
        let row = if greeting.is_empty() {
            row
        } else {
            sending::greet(&mut tx, &self.outbox, workspace_id, &row, &greeting).await?;
            conversations::lock(&mut tx, workspace_id, &row.id).await?
        };
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(row.into()))
    }

    async fn get_conversation(
        &self,
        request: Request<GetConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        let principal = Principal::of(&request)?;
        let id = ConversationId::parse("conversation_id", &request.get_ref().conversation_id).map_err(Error::from)?;
        let row = conversations::fetch(&self.pool, &principal.workspace_id, &id).await?;
        Ok(Response::new(row.into()))
    }

    async fn update_conversation(
        &self,
        request: Request<UpdateConversationRequest>,
    ) -> Result<Response<Conversation>, Status> {
        let principal = Principal::of(&request)?;
        let workspace_id = principal.workspace_id.as_str();
        let req = request.into_inner();
        let id = ConversationId::parse("conversation_id", &req.conversation_id).map_err(Error::from)?;
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
        let current = conversations::lock(&mut tx, workspace_id, &id).await?;
        let current_status = current.status()?;
        let status = match requested_status {
            Some(next) => current_status.transition_to(next)?,
            None => current_status,
        };
        if current_status == ConversationStatus::Ended && (channel.is_some() || metadata.is_some()) {
            return Err(Error::FailedPrecondition("conversation is ended; it can no longer be changed".into()).into());
        }
        let changes = Changes {
            status,
            channel: channel.as_deref(),
            metadata: metadata.as_ref(),
        };
        let row = conversations::update(&mut tx, workspace_id, &id, changes).await?;
        let changed = events::conversation_changed(workspace_id, &current, &row);
        self.outbox.record_all(&mut tx, &changed).await.map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(row.into()))
    }

    async fn delete_conversation(
        &self,
        request: Request<DeleteConversationRequest>,
    ) -> Result<Response<DeleteConversationResponse>, Status> {
        let principal = Principal::of(&request)?;
        let id = ConversationId::parse("conversation_id", &request.get_ref().conversation_id).map_err(Error::from)?;
        conversations::delete(&self.pool, &principal.workspace_id, &id).await?;
        Ok(Response::new(DeleteConversationResponse {
            id: id.into_string(),
            deleted: true,
        }))
    }
}

impl Conversations {
    /// The bot, if it is the workspace's, and the greeting it opens with.
    async fn bot_and_greeting(&self, workspace_id: &str, id: &str) -> Result<(Option<BotId>, String)> {
        let unknown = || Error::invalid("bot_id", format!("no bot {id} in this workspace"));
        let bot_id = BotId::parse("bot_id", id).map_err(|_| unknown())?;
        let bot = bots::find(&self.pool, workspace_id, &bot_id)
            .await?
            .ok_or_else(unknown)?;
        let greeting = bot.config()?.greeting.trim().to_owned();
        Ok((Some(bot_id), greeting))
    }
}
