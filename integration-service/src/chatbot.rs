//! chatbot-service as this service calls it, over internal gRPC, acting
//! for one workspace: whether a bot exists, keeping the knowledge items a
//! connection owns in step, retraining a bot, reading a conversation, and
//! telling a customer in their conversation.

use std::time::Duration;

use proto::chatbot::v1::{
    Conversation, GetBotRequest, GetConversationRequest, NotifyCustomerRequest, SyncKnowledgeSourceRequest,
    SyncKnowledgeSourceResponse, TrainBotRequest, bot_service_client::BotServiceClient,
    conversation_service_client::ConversationServiceClient, knowledge_service_client::KnowledgeServiceClient,
    message_service_client::MessageServiceClient,
};
use service_runtime::{calls::Party, config::ServiceSettings, grpc_client::ServiceClient};
use tonic::{Code, Request};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ChatbotError {
    /// The bot was deleted (or never was).
    #[error("bot not found")]
    BotGone,
    #[error("chatbot-service refused: {0}")]
    Refused(String),
    #[error("chatbot-service could not be reached: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct Chatbot {
    client: ServiceClient,
}

impl Chatbot {
    /// Connects on first use; `url` is `http://host:port`.
    pub fn new(url: &str, settings: &ServiceSettings) -> anyhow::Result<Self> {
        Ok(Self {
            client: ServiceClient::new(url, TIMEOUT, settings, Party::Chatbot)?,
        })
    }

    /// `message` for chatbot-service on behalf of `workspace_id`.
    fn acting_for<T>(&self, workspace_id: &str, message: T) -> Result<Request<T>, ChatbotError> {
        self.client
            .acting_for(
                workspace_id,
                "read:bots write:bots write:messages read:conversations",
                message,
            )
            .map_err(|status| ChatbotError::Refused(status.message().to_owned()))
    }

    pub async fn bot_exists(&self, workspace_id: &str, bot_id: &str) -> Result<bool, ChatbotError> {
        let request = self.acting_for(
            workspace_id,
            GetBotRequest {
                bot_id: bot_id.to_owned(),
            },
        )?;
        match BotServiceClient::new(self.client.channel()).get_bot(request).await {
            Ok(_) => Ok(true),
            Err(status) => match failure(status) {
                ChatbotError::BotGone => Ok(false),
                other => Err(other),
            },
        }
    }

    pub async fn sync(
        &self,
        workspace_id: &str,
        change: SyncKnowledgeSourceRequest,
    ) -> Result<SyncKnowledgeSourceResponse, ChatbotError> {
        let request = self.acting_for(workspace_id, change)?;
        KnowledgeServiceClient::new(self.client.channel())
            .sync_knowledge_source(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(failure)
    }

    /// Queues a training of the bot that deploys what it trains.
    pub async fn retrain(&self, workspace_id: &str, bot_id: &str) -> Result<(), ChatbotError> {
        let train = TrainBotRequest {
            bot_id: bot_id.to_owned(),
            deploy_when_trained: true,
        };
        BotServiceClient::new(self.client.channel())
            .train_bot(self.acting_for(workspace_id, train)?)
            .await
            .map(|_| ())
            .map_err(failure)
    }
}

impl Chatbot {
    /// The conversation; `None` when it is gone.
    pub async fn conversation(&self, workspace_id: &str, id: &str) -> Result<Option<Conversation>, ChatbotError> {
        let request = GetConversationRequest {
            conversation_id: id.to_owned(),
        };
        match ConversationServiceClient::new(self.client.channel())
            .get_conversation(self.acting_for(workspace_id, request)?)
            .await
        {
            Ok(answer) => Ok(Some(answer.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(failure(status)),
        }
    }

    /// Posts a bot message to the customer's open conversation; whether
    /// they had one.
    pub async fn notify_customer(
        &self,
        workspace_id: &str,
        notice: NotifyCustomerRequest,
    ) -> Result<bool, ChatbotError> {
        MessageServiceClient::new(self.client.channel())
            .notify_customer(self.acting_for(workspace_id, notice)?)
            .await
            .map(|answer| answer.into_inner().delivered)
            .map_err(failure)
    }
}

/// A request made for the workspace, as this service.
fn failure(status: tonic::Status) -> ChatbotError {
    match status.code() {
        Code::NotFound => ChatbotError::BotGone,
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Internal | Code::ResourceExhausted => {
            ChatbotError::Unavailable(status.message().to_owned())
        }
        _ => ChatbotError::Refused(status.message().to_owned()),
    }
}
