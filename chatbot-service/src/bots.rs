//! BotService: bots, their typed configuration, and training versions.

use chrono::{DateTime, Utc};
use prost::Message as _;
use proto::chatbot::v1::{
    Bot, BotConfig, ConfigureBotRequest, CreateBotRequest, DeployBotRequest, GetBotRequest, GetTrainingJobRequest,
    ListBotsRequest, ListBotsResponse, ListTrainingJobsRequest, ListTrainingJobsResponse, TrainBotRequest, TrainingJob,
    bot_service_server::BotService,
};
use serde_json::json;
use service_runtime::{events::Envelope, outbox::Outbox, pagination::NewestFirst, principal::Principal};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    bot_config,
    error::{Error, Result},
    ids::{BotId, JobId},
    knowledge::newest_of_bot,
    model::{bounded_text, required_text},
    proto_convert::timestamp,
    retrieval::{Indexes, VersionKey},
    secrets::Secrets,
    training::Trainer,
};

pub const BOT_DEPLOYED: &str = "bot.deployed";

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
    /// must name a secret this service holds.
    fn checked_config(&self, config: BotConfig) -> Result<BotConfig> {
        let config = bot_config::normalise(config)?;
        if let Some(llm) = &config.llm
            && !llm.api_key_ref.is_empty()
            && self.secrets.get(&llm.api_key_ref).is_none()
        {
            return Err(Error::invalid(
                "config.llm.api_key_ref",
                "names no secret this service holds (see CHATBOT_SECRETS_DIR)",
            ));
        }
        Ok(config)
    }
}

#[derive(sqlx::FromRow)]
struct BotRow {
    id: String,
    name: String,
    description: String,
    config: Vec<u8>,
    latest_version: i32,
    deployed_version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, description, config, latest_version, deployed_version, created_at, updated_at";

impl TryFrom<BotRow> for Bot {
    type Error = Error;

    fn try_from(row: BotRow) -> Result<Self> {
        let config = BotConfig::decode(row.config.as_slice())
            .map_err(|e| Error::Database(sqlx::Error::Decode(format!("bot {} config: {e}", row.id).into())))?;
        Ok(Bot {
            id: row.id,
            name: row.name,
            description: row.description,
            config: Some(config),
            created_at: Some(timestamp(row.created_at)),
            updated_at: Some(timestamp(row.updated_at)),
            latest_version: row.latest_version,
            deployed_version: row.deployed_version,
        })
    }
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    bot_id: String,
    status: String,
    version: i32,
    passages_indexed: i64,
    passages_total: i64,
    error: String,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str =
    "id, bot_id, status, version, passages_indexed, passages_total, error, created_at, started_at, finished_at";

impl From<JobRow> for TrainingJob {
    fn from(row: JobRow) -> Self {
        TrainingJob {
            id: row.id,
            bot_id: row.bot_id,
            status: row.status,
            version: row.version,
            passages_indexed: row.passages_indexed,
            passages_total: row.passages_total,
            error: row.error,
            created_at: Some(timestamp(row.created_at)),
            started_at: row.started_at.map(timestamp),
            finished_at: row.finished_at.map(timestamp),
        }
    }
}

#[tonic::async_trait]
impl BotService for Bots {
    async fn list_bots(&self, request: Request<ListBotsRequest>) -> Result<Response<ListBotsResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows: Vec<BotRow> = page
            .bind(
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM bots WHERE workspace_id = $1 AND {}",
                    NewestFirst::CLAUSE
                ))
                .bind(&principal.workspace_id),
            )
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from)?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, &r.id));
        let bots = rows.into_iter().map(Bot::try_from).collect::<Result<_>>()?;
        Ok(Response::new(ListBotsResponse { bots, next_cursor }))
    }

    async fn create_bot(&self, request: Request<CreateBotRequest>) -> Result<Response<Bot>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let name = required_text("name", &req.name, 100)?;
        let description = bounded_text("description", &req.description, 1000)?;
        let config = match req.config {
            Some(config) => self.checked_config(config)?,
            None => bot_config::default_config(),
        };
        let row: BotRow = sqlx::query_as(&format!(
            "INSERT INTO bots (workspace_id, id, name, description, config)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING {COLUMNS}"
        ))
        .bind(&principal.workspace_id)
        .bind(BotId::generate().as_str())
        .bind(name)
        .bind(description)
        .bind(config.encode_to_vec())
        .fetch_one(&self.pool)
        .await
        .map_err(Error::from)?;
        Ok(Response::new(row.try_into()?))
    }

    async fn get_bot(&self, request: Request<GetBotRequest>) -> Result<Response<Bot>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = BotId::parse("bot_id", &request.get_ref().bot_id)?;
        let row: BotRow = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM bots WHERE workspace_id = $1 AND id = $2"
        ))
        .bind(&principal.workspace_id)
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::not_found(BotId::KIND, id.as_str()))?;
        Ok(Response::new(row.try_into()?))
    }

    async fn configure_bot(&self, request: Request<ConfigureBotRequest>) -> Result<Response<Bot>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let id = BotId::parse("bot_id", &req.bot_id)?;
        let config = self.checked_config(req.config.ok_or_else(|| Error::invalid("config", "is required"))?)?;
        let row: BotRow = sqlx::query_as(&format!(
            "UPDATE bots SET config = $3, updated_at = now()
             WHERE workspace_id = $1 AND id = $2
             RETURNING {COLUMNS}"
        ))
        .bind(&principal.workspace_id)
        .bind(id.as_str())
        .bind(config.encode_to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::not_found(BotId::KIND, id.as_str()))?;
        Ok(Response::new(row.try_into()?))
    }

    /// Queues a training job for the next version; the worker picks it up
    /// at once. The answer is the queued job (202 through the gateway).
    async fn train_bot(&self, request: Request<TrainBotRequest>) -> Result<Response<TrainingJob>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = BotId::parse("bot_id", &request.get_ref().bot_id)?;
        let job = self.queue_job(&principal.workspace_id, &id).await?;
        self.trainer.wake();
        Ok(Response::new(job.into()))
    }

    async fn list_training_jobs(
        &self,
        request: Request<ListTrainingJobsRequest>,
    ) -> Result<Response<ListTrainingJobsResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id)?;
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows: Vec<JobRow> = newest_of_bot(
            &self.pool,
            &principal.workspace_id,
            &bot_id,
            &page,
            &format!("SELECT {JOB_COLUMNS} FROM training_jobs"),
        )
        .await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, &r.id));
        Ok(Response::new(ListTrainingJobsResponse {
            jobs: rows.into_iter().map(TrainingJob::from).collect(),
            next_cursor,
        }))
    }

    async fn get_training_job(&self, request: Request<GetTrainingJobRequest>) -> Result<Response<TrainingJob>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id)?;
        let job_id = JobId::parse("job_id", &req.job_id)?;
        let row: JobRow = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM training_jobs WHERE workspace_id = $1 AND bot_id = $2 AND id = $3"
        ))
        .bind(&principal.workspace_id)
        .bind(bot_id.as_str())
        .bind(job_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::not_found(JobId::KIND, job_id.as_str()))?;
        Ok(Response::new(row.into()))
    }

    async fn deploy_bot(&self, request: Request<DeployBotRequest>) -> Result<Response<Bot>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let id = BotId::parse("bot_id", &req.bot_id)?;
        if req.version < 0 {
            return Err(Error::invalid("version", "must be a trained version, or 0 for the newest").into());
        }
        let bot = self.deploy(&principal.workspace_id, &id, req.version).await?;
        // Warm this replica's index so the first reply does not load it.
        if let Some(config) = &bot.config {
            let indexes = self.indexes.clone();
            let key = VersionKey {
                workspace_id: principal.workspace_id.clone(),
                bot_id: bot.id.clone(),
                version: bot.deployed_version,
                language: config.language.clone(),
            };
            tokio::spawn(async move {
                if let Err(error) = indexes.get(&key).await {
                    tracing::warn!(%error, "warming a deployed index");
                }
            });
        }
        Ok(Response::new(bot))
    }
}

impl Bots {
    async fn queue_job(&self, workspace_id: &str, id: &BotId) -> Result<JobRow> {
        let mut tx = self.pool.begin().await?;
        let version: i32 = sqlx::query_scalar(
            "UPDATE bots SET latest_version = latest_version + 1, updated_at = now()
             WHERE workspace_id = $1 AND id = $2
             RETURNING latest_version",
        )
        .bind(workspace_id)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::not_found(BotId::KIND, id.as_str()))?;
        let job: JobRow = sqlx::query_as(&format!(
            "INSERT INTO training_jobs (workspace_id, id, bot_id, status, version)
             VALUES ($1, $2, $3, 'queued', $4)
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(workspace_id)
        .bind(JobId::generate().as_str())
        .bind(id.as_str())
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Points the bot at a trained version and records `bot.deployed`.
    async fn deploy(&self, workspace_id: &str, id: &BotId, requested: i32) -> Result<Bot> {
        let mut tx = self.pool.begin().await?;
        let previous: i32 =
            sqlx::query_scalar("SELECT deployed_version FROM bots WHERE workspace_id = $1 AND id = $2 FOR UPDATE")
                .bind(workspace_id)
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| Error::not_found(BotId::KIND, id.as_str()))?;
        let version: Option<i32> = sqlx::query_scalar(
            "SELECT max(version) FROM training_jobs
             WHERE workspace_id = $1 AND bot_id = $2 AND status = 'succeeded' AND ($3 = 0 OR version = $3)",
        )
        .bind(workspace_id)
        .bind(id.as_str())
        .bind(requested)
        .fetch_one(&mut *tx)
        .await?;
        let version = version.ok_or_else(|| {
            Error::FailedPrecondition(match requested {
                0 => "the bot has no successfully trained version yet; train it first".into(),
                v => format!("version {v} of this bot has not been trained successfully; it cannot be deployed"),
            })
        })?;
        let row: BotRow = sqlx::query_as(&format!(
            "UPDATE bots SET deployed_version = $3, updated_at = now()
             WHERE workspace_id = $1 AND id = $2
             RETURNING {COLUMNS}"
        ))
        .bind(workspace_id)
        .bind(id.as_str())
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        let event = Envelope::new(
            BOT_DEPLOYED,
            workspace_id,
            json!({ "bot_id": id.as_str(), "version": version, "previous_version": previous }),
        );
        self.outbox.record(&mut tx, &event).await?;
        tx.commit().await?;
        row.try_into()
    }
}
