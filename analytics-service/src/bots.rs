//! Whether a bot is the caller's. chatbot-service owns bots; analytics only
//! sees their events, and would otherwise answer any workspace's question
//! about any bot id with zeros. Asked once per bot statistics request.

use std::time::Duration;

use proto::chatbot::v1::{GetBotRequest, bot_service_client::BotServiceClient};
use service_runtime::{calls::Party, config::ServiceSettings, grpc_client::ServiceClient};
use tonic::{Code, Status};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Bots {
    client: ServiceClient,
}

impl Bots {
    /// Connects on first use; `url` is chatbot-service's `http://host:port`.
    pub fn new(url: &str, settings: &ServiceSettings) -> anyhow::Result<Self> {
        Ok(Self {
            client: ServiceClient::new(url, TIMEOUT, settings, Party::Chatbot)?,
        })
    }

    /// NOT_FOUND unless `bot_id` is a bot of `workspace_id`, as for an id
    /// that names nothing.
    pub async fn ensure(&self, workspace_id: &str, bot_id: &str) -> Result<(), Status> {
        let get = GetBotRequest {
            bot_id: bot_id.to_owned(),
        };
        let request = self.client.acting_for(workspace_id, "read:bots", get)?;
        match BotServiceClient::new(self.client.channel()).get_bot(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Err(Status::not_found(format!("bot {bot_id} not found"))),
            Err(status) => Err(Status::unavailable(format!(
                "chatbot-service, which knows the workspace's bots, did not answer: {}",
                status.message()
            ))),
        }
    }
}
