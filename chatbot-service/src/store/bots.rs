//! The `bots` table: a bot's configuration and which of its trained
//! versions is live.

use chrono::{DateTime, Utc};
use ids::BotId;
use prost::Message as _;
use proto::chatbot::v1::{Bot, BotConfig};
use service_runtime::telemetry::spans;
use service_runtime::{pagination::NewestFirst, rows};
use sqlx::{PgConnection, PgExecutor};
use tracing::Instrument;

use crate::{
    error::{Error, Result},
    proto_convert::timestamp,
};

#[derive(Debug, sqlx::FromRow)]
pub struct BotRow {
    pub id: BotId,
    pub name: String,
    pub description: String,
    /// `chatbot.v1.BotConfig`, protobuf-encoded.
    pub config: Vec<u8>,
    pub latest_version: i32,
    /// 0 until a version is deployed.
    pub deployed_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, description, config, latest_version, deployed_version, created_at, updated_at";

impl BotRow {
    /// The stored configuration (validated when it was written).
    pub fn config(&self) -> Result<BotConfig> {
        BotConfig::decode(self.config.as_slice()).map_err(|e| Error::Internal(format!("bot {} config: {e}", self.id)))
    }
}

impl TryFrom<BotRow> for Bot {
    type Error = Error;

    fn try_from(row: BotRow) -> Result<Self> {
        let config = row.config()?;
        Ok(Bot {
            id: row.id.into_string(),
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

pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    name: &str,
    description: &str,
    config: &BotConfig,
) -> Result<BotRow> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO bots (workspace_id, id, name, description, config)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(BotId::generate())
    .bind(name)
    .bind(description)
    .bind(config.encode_to_vec())
    .fetch_one(db)
    .instrument(spans::sql("INSERT", "bots"))
    .await?)
}

pub async fn list<'e>(db: impl PgExecutor<'e>, workspace_id: &str, page: &NewestFirst) -> Result<Vec<BotRow>> {
    Ok(page
        .fetch(db, &format!("SELECT {COLUMNS} FROM bots"), workspace_id)
        .instrument(spans::sql("INSERT", "bots"))
        .await?)
}

/// The bot, if it is the workspace's.
pub async fn find<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &BotId) -> Result<Option<BotRow>> {
    Ok(rows::by_id(db, "bots", COLUMNS, workspace_id, id.as_str()).await?)
}

/// The bot; NOT_FOUND unless it is the workspace's.
pub async fn get<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &BotId) -> Result<BotRow> {
    find(db, workspace_id, id)
        .await?
        .ok_or_else(|| Error::not_found(BotId::KIND, id.as_str()))
}

/// NOT_FOUND unless the bot is the workspace's; locks nothing.
pub async fn ensure<'e>(db: impl PgExecutor<'e>, workspace_id: &str, id: &BotId) -> Result<()> {
    match super::exists(db, "bots", workspace_id, id.as_str()).await? {
        true => Ok(()),
        false => Err(Error::not_found(BotId::KIND, id.as_str())),
    }
}

pub async fn configure<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    id: &BotId,
    config: &BotConfig,
) -> Result<BotRow> {
    sqlx::query_as(&format!(
        "UPDATE bots SET config = $3, updated_at = now()
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .bind(config.encode_to_vec())
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(BotId::KIND, id.as_str()))
}

/// Takes the bot's next version number, for a training job.
pub async fn next_version(conn: &mut PgConnection, workspace_id: &str, id: &BotId) -> Result<i32> {
    sqlx::query_scalar(
        "UPDATE bots SET latest_version = latest_version + 1, updated_at = now()
         WHERE workspace_id = $1 AND id = $2
         RETURNING latest_version",
    )
    .bind(workspace_id)
    .bind(id)
    .fetch_optional(conn)
    .instrument(spans::sql("UPDATE", "bots"))
    .await?
    .ok_or_else(|| Error::not_found(BotId::KIND, id.as_str()))
}

/// The live version, locking the bot until the transaction ends so
/// deploys apply one after another.
pub async fn lock_deployed_version(conn: &mut PgConnection, workspace_id: &str, id: &BotId) -> Result<i32> {
    sqlx::query_scalar("SELECT deployed_version FROM bots WHERE workspace_id = $1 AND id = $2 FOR UPDATE")
        .bind(workspace_id)
        .bind(id)
        .fetch_optional(conn)
        .instrument(spans::sql("SELECT", "bots"))
        .await?
        .ok_or_else(|| Error::not_found(BotId::KIND, id.as_str()))
}

/// Makes `version` the live one.
pub async fn set_deployed_version(
    conn: &mut PgConnection,
    workspace_id: &str,
    id: &BotId,
    version: i32,
) -> Result<BotRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE bots SET deployed_version = $3, updated_at = now()
         WHERE workspace_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(id)
    .bind(version)
    .fetch_one(conn)
    .instrument(spans::sql("UPDATE", "bots"))
    .await?)
}

/// A page of `table`'s rows of one bot, newest first: `select` is the query
/// up to its `FROM` clause. NOT_FOUND unless the bot is the workspace's.
pub async fn page_of<T>(
    pool: &sqlx::PgPool,
    workspace_id: &str,
    bot_id: &BotId,
    page: &NewestFirst,
    select: &str,
) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut tx = pool.begin().await?;
    ensure(&mut *tx, workspace_id, bot_id).await?;
    let query = format!(
        "{select} WHERE workspace_id = $1 AND bot_id = $5 AND {}",
        NewestFirst::CLAUSE
    );
    let rows = page
        .bind(sqlx::query_as(&query).bind(workspace_id))
        .bind(bot_id)
        .fetch_all(&mut *tx)
        .instrument(spans::sql("UPDATE", "bots"))
        .await?;
    tx.commit().await?;
    Ok(rows)
}
