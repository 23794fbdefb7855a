//! The `knowledge_items` table: the documents and FAQ pairs users edit,
//! which training snapshots into passages.

use chrono::{DateTime, Utc};
use ids::{BotId, KnowledgeItemId};
use proto::chatbot::v1::{Document, FaqPair, KnowledgeItem, knowledge_item::Content};
use serde_json::Value;
use service_runtime::pagination::NewestFirst;
use sqlx::{PgConnection, PgExecutor, PgPool};

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
}

const COLUMNS: &str = "id, bot_id, kind, title, body, source_url, metadata, created_at, updated_at";

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
    .await?)
}
