//! BotService: bots, their typed configuration, and training versions.

use chrono::{DateTime, Utc};
use prost::Message as _;
use proto::chatbot::v1::{
    Bot, BotConfig, ConfigureBotRequest, CreateBotRequest, GetBotRequest, ListBotsRequest, ListBotsResponse,
    TrainBotRequest, TrainingJob, bot_service_server::BotService,
};
use service_runtime::{pagination::NewestFirst, principal::Principal};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    bot_config,
    error::{Error, Result},
    ids::{BotId, JobId},
    model::{bounded_text, required_text},
    proto_convert::timestamp,
};

pub struct Bots {
    pool: PgPool,
}

impl Bots {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(sqlx::FromRow)]
struct BotRow {
    id: String,
    name: String,
    description: String,
    config: Vec<u8>,
    latest_version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, description, config, latest_version, created_at, updated_at";

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
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<JobRow> for TrainingJob {
    fn from(row: JobRow) -> Self {
        TrainingJob {
            id: row.id,
            bot_id: row.bot_id,
            status: row.status,
            version: row.version,
            passages_indexed: row.passages_indexed,
            created_at: Some(timestamp(row.created_at)),
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
            Some(config) => bot_config::normalise(config)?,
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
        let config = bot_config::normalise(req.config.ok_or_else(|| Error::invalid("config", "is required"))?)?;
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

    /// Records a new immutable version of the bot. Knowledge items arrive
    /// with the knowledge feature; until then a version indexes no passages.
    async fn train_bot(&self, request: Request<TrainBotRequest>) -> Result<Response<TrainingJob>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let id = BotId::parse("bot_id", &request.get_ref().bot_id)?;
        let job = self.record_version(&principal.workspace_id, &id).await?;
        Ok(Response::new(job.into()))
    }
}

impl Bots {
    async fn record_version(&self, workspace_id: &str, id: &BotId) -> Result<JobRow> {
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
        let job: JobRow = sqlx::query_as(
            "INSERT INTO training_jobs (workspace_id, id, bot_id, status, version, passages_indexed, finished_at)
             VALUES ($1, $2, $3, 'succeeded', $4, 0, now())
             RETURNING id, bot_id, status, version, passages_indexed, created_at, finished_at",
        )
        .bind(workspace_id)
        .bind(JobId::generate().as_str())
        .bind(id.as_str())
        .bind(version)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(job)
    }
}
