//! Whether a bot is the caller's. chatbot-service owns bots; analytics only
//! sees their events, and would otherwise answer any workspace's question
//! about any bot id with zeros. Asked once per bot statistics request.

use std::time::Duration;

use proto::chatbot::v1::{GetBotRequest, bot_service_client::BotServiceClient};
use service_runtime::principal;
use tonic::{Code, Request, Status, transport::Channel};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Bots {
    channel: Channel,
}

impl Bots {
    /// Connects on first use; `url` is chatbot-service's `http://host:port`.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let channel = service_runtime::grpc_client::lazy_channel(url, TIMEOUT)?;
        Ok(Self { channel })
    }

    /// NOT_FOUND unless `bot_id` is a bot of `workspace_id`, as for an id
    /// that names nothing.
    pub async fn ensure(&self, workspace_id: &str, bot_id: &str) -> Result<(), Status> {
        let mut request = Request::new(GetBotRequest {
            bot_id: bot_id.to_owned(),
        });
        let metadata = request.metadata_mut();
        let workspace = workspace_id
            .parse()
            .map_err(|_| Status::invalid_argument("the workspace id is not valid metadata"))?;
        metadata.insert(principal::WORKSPACE_ID, workspace);
        metadata.insert(principal::PRINCIPAL_ID, "analytics-service".parse().expect("ascii"));
        metadata.insert(principal::SCOPES, "read:bots".parse().expect("ascii"));
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
