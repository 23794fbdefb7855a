//! Whether a bot is the caller's. chatbot-service owns bots; analytics only
//! sees their events, and would otherwise answer any workspace's question
//! about any bot id with zeros. Asked once per bot statistics request.

use std::time::Duration;

use proto::chatbot::v1::{GetBotRequest, bot_service_client::BotServiceClient};
use service_runtime::{
    calls::{CallKeys, Party},
    config::ServiceSettings,
    grpc_client::{self, CallChannel},
};
use tonic::{Code, Status};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Bots {
    channel: CallChannel,
    keys: CallKeys,
}

impl Bots {
    /// Connects on first use; `url` is chatbot-service's `http://host:port`.
    pub fn new(url: &str, settings: &ServiceSettings) -> anyhow::Result<Self> {
        let keys = &settings.call_keys;
        let channel = grpc_client::call_channel(url, TIMEOUT, keys, &settings.tls, Party::Chatbot)?;
        Ok(Self {
            channel,
            keys: keys.clone(),
        })
    }

    /// NOT_FOUND unless `bot_id` is a bot of `workspace_id`, as for an id
    /// that names nothing.
    pub async fn ensure(&self, workspace_id: &str, bot_id: &str) -> Result<(), Status> {
        let get = GetBotRequest {
            bot_id: bot_id.to_owned(),
        };
        let request = grpc_client::acting_for(&self.keys, workspace_id, "read:bots", get)?;
        match BotServiceClient::new(self.channel.clone()).get_bot(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Err(Status::not_found(format!("bot {bot_id} not found"))),
            Err(status) => Err(Status::unavailable(format!(
                "chatbot-service, which knows the workspace's bots, did not answer: {}",
                status.message()
            ))),
        }
    }
}
