//! The `knowledge_items` table: the documents and FAQ pairs users edit,
//! which training snapshots into passages.

use chrono::{DateTime, Utc};
use ids::{BotId, KnowledgeItemId};
use proto::chatbot::v1::{Document, FaqPair, KnowledgeItem, knowledge_item::Content};
use serde_json::Value;
use service_runtime::pagination::NewestFirst;
use service_runtime::telemetry::spans;
use sqlx::{PgConnection, PgExecutor, PgPool};
use tracing::Instrument;

use super::bots;
use crate::{
    error::{Error, Result},
    proto_convert::{json_to_struct, timestamp},
};

#[derive(Debug, sqlx::FromRow)]
pub struct ItemRow {
    pub id: KnowledgeItemId,
    pub bot_id: BotId,
    /// `faq` (title = question, body = answer) or `document`.
    pub kind: String,
    pub title: String,
    pub body: String,
    pub source_url: String,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The connected system that keeps the item up to date, if one does.
    pub source: String,
}

const COLUMNS: &str = "id, bot_id, kind, title, body, source_url, metadata, created_at, updated_at, source";

impl From<ItemRow> for KnowledgeItem {
    fn from(row: ItemRow) -> Self {
        let content = if row.kind == "faq" {
            Content::Faq(FaqPair {
                question: row.title,
                answer: row.body,
            })
        } else {
            Content::Document(Document {
                title: row.title,
                text: row.body,
                source_url: row.source_url,
                metadata: Some(json_to_struct(row.metadata)),
            })
        };
        KnowledgeItem {
            id: row.id.into_string(),
            bot_id: row.bot_id.into_string(),
            content: Some(content),
            created_at: Some(timestamp(row.created_at)),
            updated_at: Some(timestamp(row.updated_at)),
            source: row.source,
        }
    }
}

/// A validated item, as stored.
pub struct NewItem {
    pub kind: &'static str,
    pub title: String,
    pub body: String,
    pub source_url: String,
    pub metadata: Value,
}

/// Inserts `items` in one statement, returning them in the order given.
pub async fn insert(
    conn: &mut PgConnection,
    workspace_id: &str,
    bot_id: &BotId,
    items: Vec<NewItem>,
) -> Result<Vec<ItemRow>> {
    let ids: Vec<KnowledgeItemId> = items.iter().map(|_| KnowledgeItemId::generate()).collect();
    let kinds: Vec<&str> = items.iter().map(|i| i.kind).collect();
    let titles: Vec<&str> = items.iter().map(|i| i.title.as_str()).collect();
    let bodies: Vec<&str> = items.iter().map(|i| i.body.as_str()).collect();
    let urls: Vec<&str> = items.iter().map(|i| i.source_url.as_str()).collect();
    let metadata: Vec<&Value> = items.iter().map(|i| &i.metadata).collect();
    // Each item gets its own created_at tick so newest-first paging is
    // stable and matches the order the caller sent.
    let mut rows: Vec<ItemRow> = sqlx::query_as(&format!(
        "INSERT INTO knowledge_items (workspace_id, bot_id, id, kind, title, body, source_url, metadata, created_at)
         SELECT $1, $2, t.id, t.kind, t.title, t.body, t.url, t.metadata,
                now() + (t.n * interval '1 microsecond')
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
              WITH ORDINALITY AS t(id, kind, title, body, url, metadata, n)
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(bot_id)
    .bind(&ids)
    .bind(&kinds)
    .bind(&titles)
    .bind(&bodies)
    .bind(&urls)
    .bind(&metadata)
    .fetch_all(conn)
    .await?;
    rows.sort_by_key(|r| r.created_at);
    Ok(rows)
}

/// A connected system's change to the items it keeps: how many items were
/// created, updated (unchanged ones are not) and removed.
#[derive(Debug, Default, PartialEq)]
pub struct Synced {
    pub created: i64,
    pub updated: i64,
    pub removed: i64,
}

/// Applies a connected system's change to the bot's items of `source`:
/// everything of it removed first when `clear`, then `removals`, then
/// `upserts` keyed by the system's id. One transaction, the caller's.
pub async fn sync_source(
    conn: &mut PgConnection,
    workspace_id: &str,
    bot_id: &BotId,
    source: &str,
    change: SourceChange<'_>,
) -> Result<Synced> {
    let mut synced = Synced::default();
    let removal = match change.clear {
        true => None,
        false => Some(change.removals),
    };
    if change.clear || !change.removals.is_empty() {
        synced.removed = sqlx::query(
            "DELETE FROM knowledge_items
             WHERE workspace_id = $1 AND bot_id = $2 AND source = $3
               AND ($4::text[] IS NULL OR external_id = ANY($4))",
        )
        .bind(workspace_id)
        .bind(bot_id)
        .bind(source)
        .bind(removal)
        .execute(&mut *conn)
        .instrument(spans::sql("DELETE", "knowledge_items"))
        .await?
        .rows_affected() as i64;
    }
    if change.upserts.is_empty() {
        return Ok(synced);
    }
    let items = change.upserts;
    let created: Vec<bool> = sqlx::query_scalar(
        "INSERT INTO knowledge_items
             (workspace_id, bot_id, id, kind, title, body, source_url, metadata, source, external_id)
         SELECT $1, $2, t.id, t.kind, t.title, t.body, t.url, t.metadata, $3, t.external_id
         FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[])
              AS t(id, kind, title, body, url, metadata, external_id)
         ON CONFLICT (workspace_id, bot_id, source, external_id) WHERE source <> '' DO UPDATE SET
             kind = EXCLUDED.kind, title = EXCLUDED.title, body = EXCLUDED.body,
             source_url = EXCLUDED.source_url, metadata = EXCLUDED.metadata, updated_at = now()
         WHERE (knowledge_items.kind, knowledge_items.title, knowledge_items.body,
                knowledge_items.source_url, knowledge_items.metadata)
               IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.title, EXCLUDED.body, EXCLUDED.source_url, EXCLUDED.metadata)
         RETURNING xmax = 0",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(source)
    .bind(items.iter().map(|_| KnowledgeItemId::generate()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, i)| i.kind).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, i)| i.title.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, i)| i.body.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, i)| i.source_url.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, i)| &i.metadata).collect::<Vec<_>>())
    .bind(items.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
    .fetch_all(conn)
    .instrument(spans::sql("INSERT", "knowledge_items"))
    .await?;
    synced.created = created.iter().filter(|c| **c).count() as i64;
    synced.updated = created.len() as i64 - synced.created;
    Ok(synced)
}

/// What a connected system changed.
pub struct SourceChange<'a> {
    /// By the system's own id.
    pub upserts: &'a [(String, NewItem)],
    pub removals: &'a [String],
    pub clear: bool,
}

/// A page of the bot's items, newest first.
pub async fn list(pool: &PgPool, workspace_id: &str, bot_id: &BotId, page: &NewestFirst) -> Result<Vec<ItemRow>> {
    bots::page_of(
        pool,
        workspace_id,
        bot_id,
        page,
        &format!("SELECT {COLUMNS} FROM knowledge_items"),
    )
    .await
}

pub async fn get<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    bot_id: &BotId,
    id: &KnowledgeItemId,
) -> Result<ItemRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM knowledge_items WHERE workspace_id = $1 AND bot_id = $2 AND id = $3"
    ))
    .bind(workspace_id)
    .bind(bot_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(KnowledgeItemId::KIND, id.as_str()))
}

pub async fn update<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    bot_id: &BotId,
    id: &KnowledgeItemId,
    item: &NewItem,
) -> Result<ItemRow> {
    sqlx::query_as(&format!(
        "UPDATE knowledge_items
         SET kind = $4, title = $5, body = $6, source_url = $7, metadata = $8, updated_at = now()
         WHERE workspace_id = $1 AND bot_id = $2 AND id = $3
         RETURNING {COLUMNS}"
    ))
    .bind(workspace_id)
    .bind(bot_id)
    .bind(id)
    .bind(item.kind)
    .bind(&item.title)
    .bind(&item.body)
    .bind(&item.source_url)
    .bind(&item.metadata)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| Error::not_found(KnowledgeItemId::KIND, id.as_str()))
}

pub async fn delete<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    bot_id: &BotId,
    id: &KnowledgeItemId,
) -> Result<()> {
    let deleted = sqlx::query("DELETE FROM knowledge_items WHERE workspace_id = $1 AND bot_id = $2 AND id = $3")
        .bind(workspace_id)
        .bind(bot_id)
        .bind(id)
        .execute(db)
        .instrument(spans::sql("DELETE", "knowledge_items"))
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(Error::not_found(KnowledgeItemId::KIND, id.as_str()));
    }
    Ok(())
}

/// An item as training reads it.
#[derive(sqlx::FromRow)]
pub struct TrainingItem {
    pub id: KnowledgeItemId,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// Up to `limit` of the bot's items after `after` (a created_at and id),
/// oldest first: training reads them in pages.
pub async fn page_for_training<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    bot_id: &BotId,
    after: Option<&(DateTime<Utc>, KnowledgeItemId)>,
    limit: i64,
) -> Result<Vec<TrainingItem>> {
    Ok(sqlx::query_as(
        "SELECT id, kind, title, body, created_at FROM knowledge_items
         WHERE workspace_id = $1 AND bot_id = $2
           AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4))
         ORDER BY created_at, id
         LIMIT $5",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| &a.1))
    .bind(limit)
    .fetch_all(db)
    .instrument(spans::sql("SELECT", "knowledge_items"))
    .await?)
}
