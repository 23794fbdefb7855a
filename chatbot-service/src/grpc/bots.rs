//! BotService: bots, their typed configuration, training and deployment.

use event_pipeline::Outbox;
use ids::{BotId, TrainingJobId};
use proto::chatbot::v1::{
    Bot, BotConfig, ConfigureBotRequest, CreateBotRequest, DeployBotRequest, GetBotRequest, GetTrainingJobRequest,
    ListBotsRequest, ListBotsResponse, ListTrainingJobsRequest, ListTrainingJobsResponse, TrainBotRequest, TrainingJob,
    bot_service_server::BotService,
};
use service_runtime::{pagination::NewestFirst, principal::Principal};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    bot_config,
    error::{Error, Result},
    events,
    model::{bounded_text, required_text},
    retrieval::{Indexes, VersionKey},
    secrets::{Refusal, Secrets},
    store::{bots, training_jobs},
    training::Trainer,
};

pub struct Bots {
    pool: PgPool,
    outbox: Outbox,
    trainer: Trainer,
    indexes: Indexes,
    secrets: Secrets,
}

impl Bots {
    pub fn new(pool: PgPool, outbox: Outbox, trainer: Trainer, indexes: Indexes, secrets: Secrets) -> Self {
        Self {
            pool,
            outbox,
            trainer,
            indexes,
            secrets,
        }
    }

    /// A config as given, validated, with defaults; its API key reference
    /// must name a secret the workspace may send to its model server.
    async fn checked_config(&self, workspace_id: &str, config: BotConfig) -> Result<BotConfig> {
        let config = bot_config::normalise(config)?;
        if let Some(llm) = &config.llm
            && !llm.api_key_ref.is_empty()
        {
            match self
                .secrets
                .resolve(workspace_id, &llm.api_key_ref, &llm.base_url)
                .await
            {
                Ok(_) => {}
                Err(Refusal::Unavailable(reason)) => return Err(Error::Unavailable(reason)),
                Err(refusal) => return Err(Error::invalid("config.llm.api_key_ref", refusal.to_string())),
            }
        }
        Ok(config)
    }
}

fn bot_id(value: &str) -> Result<BotId> {
    Ok(BotId::parse("bot_id", value)?)
}

#[tonic::async_trait]
impl BotService for Bots {
    async fn list_bots(&self, request: Request<ListBotsRequest>) -> Result<Response<ListBotsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows = bots::list(&self.pool, &principal.workspace_id, &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        let bots = rows.into_iter().map(Bot::try_from).collect::<Result<_>>()?;
        Ok(Response::new(ListBotsResponse { bots, next_cursor }))
    }

    async fn create_bot(&self, request: Request<CreateBotRequest>) -> Result<Response<Bot>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let name = required_text("name", &req.name, 100)?;
        let description = bounded_text("description", &req.description, 1000)?;
        let config = match req.config {
            Some(config) => self.checked_config(&principal.workspace_id, config).await?,
            None => bot_config::default_config(),
        };
        let row = bots::insert(&self.pool, &principal.workspace_id, &name, &description, &config).await?;
        Ok(Response::new(row.try_into()?))
    }

    async fn get_bot(&self, request: Request<GetBotRequest>) -> Result<Response<Bot>, Status> {
        let principal = Principal::of(&request)?;
        let id = bot_id(&request.get_ref().bot_id)?;
        let row = bots::get(&self.pool, &principal.workspace_id, &id).await?;
        Ok(Response::new(row.try_into()?))
    }

    async fn configure_bot(&self, request: Request<ConfigureBotRequest>) -> Result<Response<Bot>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let id = bot_id(&req.bot_id)?;
        let config = req.config.ok_or_else(|| Error::invalid("config", "is required"))?;
        let config = self.checked_config(&principal.workspace_id, config).await?;
        let row = bots::configure(&self.pool, &principal.workspace_id, &id, &config).await?;
        Ok(Response::new(row.try_into()?))
    }

    /// Queues a training job for the next version; the worker picks it up
    /// at once. The answer is the queued job (202 through the gateway).
    async fn train_bot(&self, request: Request<TrainBotRequest>) -> Result<Response<TrainingJob>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let id = bot_id(&req.bot_id)?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        let job = training_jobs::queue(&mut tx, &principal.workspace_id, &id, req.deploy_when_trained).await?;
        tx.commit().await.map_err(Error::from)?;
        self.trainer.wake();
        Ok(Response::new(job.into()))
    }

    async fn list_training_jobs(
        &self,
        request: Request<ListTrainingJobsRequest>,
    ) -> Result<Response<ListTrainingJobsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let bot_id = bot_id(&req.bot_id)?;
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows = training_jobs::list(&self.pool, &principal.workspace_id, &bot_id, &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        Ok(Response::new(ListTrainingJobsResponse {
            jobs: rows.into_iter().map(TrainingJob::from).collect(),
            next_cursor,
        }))
    }

    async fn get_training_job(&self, request: Request<GetTrainingJobRequest>) -> Result<Response<TrainingJob>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let bot_id = bot_id(&req.bot_id)?;
        let job_id = TrainingJobId::parse("job_id", &req.job_id).map_err(Error::from)?;
        let row = training_jobs::get(&self.pool, &principal.workspace_id, &bot_id, &job_id).await?;
        Ok(Response::new(row.into()))
    }

    async fn deploy_bot(&self, request: Request<DeployBotRequest>) -> Result<Response<Bot>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let id = bot_id(&req.bot_id)?;
        if req.version < 0 {
            return Err(Error::invalid("version", "must be a trained version, or 0 for the newest").into());
        }
        let bot = self.deploy(&principal.workspace_id, &id, req.version).await?;
        if let Some(config) = &bot.config {
            self.warm(VersionKey {
                workspace_id: principal.workspace_id.clone(),
                bot_id: id,
                version: bot.deployed_version,
                language: config.language.clone(),
            });
        }
        Ok(Response::new(bot))
    }
}

impl Bots {
    /// Points the bot at a trained version and records `bot.deployed`.
    async fn deploy(&self, workspace_id: &str, id: &BotId, requested: i32) -> Result<Bot> {
        let mut tx = self.pool.begin().await?;
        let previous = bots::lock_deployed_version(&mut tx, workspace_id, id).await?;
        let version = training_jobs::trained_version(&mut tx, workspace_id, id, requested)
            .await?
            .ok_or_else(|| {
                Error::FailedPrecondition(match requested {
                    0 => "the bot has no successfully trained version yet; train it first".into(),
                    v => format!("version {v} of this bot has not been trained successfully; it cannot be deployed"),
                })
            })?;
        let row = bots::set_deployed_version(&mut tx, workspace_id, id, version).await?;
        let event = events::bot_deployed(workspace_id, id, version, previous);
        self.outbox.record(&mut tx, &event).await?;
        tx.commit().await?;
        row.try_into()
    }

    /// Loads a deployed version's index on this replica in the background,
    /// so the first reply does not wait for it.
    fn warm(&self, key: VersionKey) {
        let indexes = self.indexes.clone();
        tokio::spawn(async move {
            if let Err(error) = indexes.get(&key).await {
                tracing::warn!(%error, "warming a deployed index");
            }
        });
    }
}
