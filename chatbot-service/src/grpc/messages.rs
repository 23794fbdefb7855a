//! MessageService: sends (the message appended, then the bot's reply,
//! plain or streamed) and reads of a conversation's messages.

use ids::{ConversationId, MessageId};
use proto::chatbot::v1::{
    GetMessageRequest, ListMessagesRequest, ListMessagesResponse, Message, NotifyCustomerRequest,
    NotifyCustomerResponse, ReplyDelta, SendMessageEvent, SendMessageRequest, SendMessageResponse,
    message_service_server::MessageService, send_message_event::Event,
};
use service_runtime::{
    pagination,
    principal::{Principal, idempotency_key},
};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    error::{Error, Result},
    model::{MAX_MESSAGE_CHARS, Role, bounded_text, required_text},
    proto_convert::metadata_to_json,
    replying::Replying,
    sending::{Appended, Sending},
    store::{
        conversations::{self, Customer},
        messages::{self, NewMessage},
    },
};

const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Stream events buffered for a slow client.
const STREAM_BUFFER: usize = 64;

pub struct Messages {
    pool: PgPool,
    sending: Sending,
    replying: Replying,
}

impl Messages {
    pub fn new(pool: PgPool, sending: Sending, replying: Replying) -> Self {
        Self {
            pool,
            sending,
            replying,
        }
    }
}

/// A send request, checked, with whom it is for.
struct Send {
    workspace_id: String,
    conversation_id: ConversationId,
    message: NewMessage,
}

impl Send {
    fn parse(request: Request<SendMessageRequest>) -> Result<Self, Status> {
        let principal = Principal::of(&request)?;
        let key = idempotency_key(request.metadata())
            .map(|k| bounded_text("idempotency_key", &k, MAX_IDEMPOTENCY_KEY_CHARS))
            .transpose()?;
        let req = request.into_inner();
        Ok(Self {
            workspace_id: principal.workspace_id,
            conversation_id: ConversationId::parse("conversation_id", &req.conversation_id).map_err(Error::from)?,
            message: NewMessage {
                role: Role::parse("role", &req.role)?,
                content: required_text("content", &req.content, MAX_MESSAGE_CHARS)?,
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
            .sending
            .append(&send.workspace_id, &send.conversation_id, send.message)
            .await?;
        let reply = if with_bot && row.role == Role::User.as_str() {
            self.replying
                .reply(&send.workspace_id, &send.conversation_id, &row)
                .await?
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
    /// statuses); then the reply's text as it is drafted, and the stored
    /// reply last.
    async fn stream_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<Self::StreamMessageStream>, Status> {
        let send = Send::parse(request)?;
        let Appended { row, with_bot, .. } = self
            .sending
            .append(&send.workspace_id, &send.conversation_id, send.message)
            .await?;
        let (events, stream) = mpsc::channel(STREAM_BUFFER);
        let replying = self.replying.clone();
        tokio::spawn(async move {
            let _ = events.send(Ok(event(Event::Message(row.clone().into())))).await;
            if !with_bot {
                return;
            }
            let (mut pieces, reply) = replying.stream(send.workspace_id, send.conversation_id, row);
            while let Some(text) = pieces.recv().await {
                let _ = events.send(Ok(event(Event::Delta(ReplyDelta { text })))).await;
            }
            let last = match reply.await {
                Ok(Ok(Some(reply))) => Ok(event(Event::Reply(reply.into()))),
                Ok(Ok(None)) => return,
                Ok(Err(error)) => Err(Status::from(error)),
                Err(error) => Err(Status::from(Error::Internal(format!("drafting a reply: {error}")))),
            };
            let _ = events.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let principal = Principal::of(&request)?;
        let workspace_id = principal.workspace_id.as_str();
        let req = request.into_inner();
        let conversation_id = ConversationId::parse("conversation_id", &req.conversation_id).map_err(Error::from)?;
        let limit = pagination::page_limit(req.limit)?;
        let after: i64 = match pagination::decode_cursor(&req.cursor)? {
            None => 0,
            Some(c) => c
                .parse()
                .map_err(|_| Error::invalid("cursor", "is not a cursor returned by this API"))?,
        };
        conversations::ensure(&self.pool, workspace_id, &conversation_id).await?;
        let rows = messages::list(&self.pool, workspace_id, &conversation_id, after, limit + 1).await?;
        let (rows, next_cursor) = pagination::finish_page(rows, limit, |r| r.sequence.to_string());
        Ok(Response::new(ListMessagesResponse {
            messages: rows.into_iter().map(Message::from).collect(),
            next_cursor,
        }))
    }

    async fn get_message(&self, request: Request<GetMessageRequest>) -> Result<Response<Message>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let conversation_id = ConversationId::parse("conversation_id", &req.conversation_id).map_err(Error::from)?;
        let message_id = MessageId::parse("message_id", &req.message_id).map_err(Error::from)?;
        let row = messages::get(&self.pool, &principal.workspace_id, &conversation_id, &message_id).await?;
        Ok(Response::new(row.into()))
    }

    async fn notify_customer(
        &self,
        request: Request<NotifyCustomerRequest>,
    ) -> Result<Response<NotifyCustomerResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let present = |text: &str| Some(text.trim()).filter(|t| !t.is_empty()).map(str::to_owned);
        let (email, customer_id) = (present(&req.customer_email), present(&req.shopify_customer_id));
        if email.is_none() && customer_id.is_none() {
            return Err(Error::invalid("customer_email", "name the customer by email or shopify_customer_id").into());
        }
        let message = NewMessage {
            role: Role::Bot,
            content: required_text("content", &req.content, MAX_MESSAGE_CHARS)?,
            metadata: metadata_to_json("metadata", req.metadata)?,
            idempotency_key: Some(required_text(
                "idempotency_key",
                &req.idempotency_key,
                MAX_IDEMPOTENCY_KEY_CHARS,
            )?),
            in_reply_to: None,
        };
        let customer = Customer {
            email: email.as_deref(),
            shopify_customer_id: customer_id.as_deref(),
        };
        let workspace_id = &principal.workspace_id;
        let Some(conversation) = conversations::open_for_customer(&self.pool, workspace_id, &customer).await? else {
            return Ok(Response::new(NotifyCustomerResponse::default()));
        };
        let appended = match self.sending.append(workspace_id, &conversation.id, message).await {
            Ok(appended) => appended,
            // Ended meanwhile: as if it had not been open.
            Err(Error::FailedPrecondition(_)) => return Ok(Response::new(NotifyCustomerResponse::default())),
            Err(error) => return Err(error.into()),
        };
        Ok(Response::new(NotifyCustomerResponse {
            delivered: true,
            conversation_id: conversation.id.into_string(),
            message: Some(appended.row.into()),
        }))
    }
}

fn event(event: Event) -> SendMessageEvent {
    SendMessageEvent { event: Some(event) }
}
