//! KnowledgeService: the documents and FAQ pairs a bot is trained on.

use chrono::{DateTime, Utc};
use proto::chatbot::v1::{
    BatchCreateKnowledgeItemsRequest, BatchCreateKnowledgeItemsResponse, CreateKnowledgeItemRequest,
    DeleteKnowledgeItemRequest, DeleteKnowledgeItemResponse, Document, FaqPair, GetKnowledgeItemRequest, KnowledgeItem,
    ListKnowledgeItemsRequest, ListKnowledgeItemsResponse, UpdateKnowledgeItemRequest, knowledge_item::Content,
    knowledge_service_server::KnowledgeService,
};
use service_runtime::{pagination::NewestFirst, principal::Principal};
use sqlx::{PgPool, Postgres, Transaction};
use tonic::{Request, Response, Status};

use crate::{
    error::{Error, Result},
    ids::{BotId, KnowledgeItemId},
    model::{bounded_text, required_text},
    proto_convert::{json_to_struct, metadata_to_json, timestamp},
};

const MAX_BATCH: usize = 1000;
const MAX_DOCUMENT_CHARS: usize = 1024 * 1024;

pub struct Knowledge {
    pool: PgPool,
}

impl Knowledge {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A validated item, as stored.
struct NewItem {
    kind: &'static str,
    title: String,
    body: String,
    source_url: String,
    metadata: serde_json::Value,
}

impl NewItem {
    fn parse(item: Option<KnowledgeItem>) -> Result<Self> {
        match item.and_then(|i| i.content) {
            Some(Content::Faq(faq)) => Ok(Self {
                kind: "faq",
                title: required_text("faq.question", &faq.question, 1000)?,
                body: required_text("faq.answer", &faq.answer, 8000)?,
                source_url: String::new(),
                metadata: serde_json::json!({}),
            }),
            Some(Content::Document(doc)) => Ok(Self {
                kind: "document",
                title: bounded_text("document.title", doc.title.trim(), 300)?,
                body: required_text("document.text", &doc.text, MAX_DOCUMENT_CHARS)?,
                source_url: source_url(&doc.source_url)?,
                metadata: metadata_to_json("document.metadata", doc.metadata)?,
            }),
            None => Err(Error::invalid("item", "must hold a document or a faq")),
        }
    }
}

fn source_url(url: &str) -> Result<String> {
    let url = url.trim();
    let ok = url.is_empty()
        || ((url.starts_with("https://") || url.starts_with("http://"))
            && url.len() <= 2000
            && !url.contains(char::is_whitespace));
    if ok {
        Ok(url.to_owned())
    } else {
        Err(Error::invalid(
            "document.source_url",
            "must be an http:// or https:// URL of at most 2000 characters",
        ))
    }
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: String,
    bot_id: String,
    kind: String,
    title: String,
    body: String,
    source_url: String,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
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
            id: row.id,
            bot_id: row.bot_id,
            content: Some(content),
            created_at: Some(timestamp(row.created_at)),
            updated_at: Some(timestamp(row.updated_at)),
        }
    }
}

#[tonic::async_trait]
impl KnowledgeService for Knowledge {
    async fn create_knowledge_item(
        &self,
        request: Request<CreateKnowledgeItemRequest>,
    ) -> Result<Response<KnowledgeItem>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id)?;
        let item = NewItem::parse(req.item)?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        ensure_bot(&mut tx, &principal.workspace_id, &bot_id).await?;
        let mut rows = insert(&mut tx, &principal.workspace_id, &bot_id, vec![item]).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(rows.remove(0).into()))
    }

    async fn batch_create_knowledge_items(
        &self,
        request: Request<BatchCreateKnowledgeItemsRequest>,
    ) -> Result<Response<BatchCreateKnowledgeItemsResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id)?;
        if req.items.is_empty() || req.items.len() > MAX_BATCH {
            return Err(Error::invalid("items", format!("must hold 1 to {MAX_BATCH} items")).into());
        }
        let items = req
            .items
            .into_iter()
            .enumerate()
            .map(|(n, item)| NewItem::parse(Some(item)).map_err(|e| e.within(&format!("items[{n}]"))))
            .collect::<Result<Vec<_>>>()?;
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        ensure_bot(&mut tx, &principal.workspace_id, &bot_id).await?;
        let rows = insert(&mut tx, &principal.workspace_id, &bot_id, items).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(BatchCreateKnowledgeItemsResponse {
            items: rows.into_iter().map(KnowledgeItem::from).collect(),
        }))
    }

    async fn list_knowledge_items(
        &self,
        request: Request<ListKnowledgeItemsRequest>,
    ) -> Result<Response<ListKnowledgeItemsResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id)?;
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows: Vec<ItemRow> = newest_of_bot(
            &self.pool,
            &principal.workspace_id,
            &bot_id,
            &page,
            &format!("SELECT {COLUMNS} FROM knowledge_items"),
        )
        .await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, &r.id));
        Ok(Response::new(ListKnowledgeItemsResponse {
            items: rows.into_iter().map(KnowledgeItem::from).collect(),
            next_cursor,
        }))
    }

    async fn get_knowledge_item(
        &self,
        request: Request<GetKnowledgeItemRequest>,
    ) -> Result<Response<KnowledgeItem>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id)?;
        let id = KnowledgeItemId::parse("item_id", &req.item_id)?;
        let row: ItemRow = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM knowledge_items WHERE workspace_id = $1 AND bot_id = $2 AND id = $3"
        ))
        .bind(&principal.workspace_id)
        .bind(bot_id.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::not_found(KnowledgeItemId::KIND, id.as_str()))?;
        Ok(Response::new(row.into()))
    }

    async fn update_knowledge_item(
        &self,
        request: Request<UpdateKnowledgeItemRequest>,
    ) -> Result<Response<KnowledgeItem>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id)?;
        let id = KnowledgeItemId::parse("item_id", &req.item_id)?;
        let item = NewItem::parse(req.item)?;
        let row: ItemRow = sqlx::query_as(&format!(
            "UPDATE knowledge_items
             SET kind = $4, title = $5, body = $6, source_url = $7, metadata = $8, updated_at = now()
             WHERE workspace_id = $1 AND bot_id = $2 AND id = $3
             RETURNING {COLUMNS}"
        ))
        .bind(&principal.workspace_id)
        .bind(bot_id.as_str())
        .bind(id.as_str())
        .bind(item.kind)
        .bind(&item.title)
        .bind(&item.body)
        .bind(&item.source_url)
        .bind(&item.metadata)
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Error::not_found(KnowledgeItemId::KIND, id.as_str()))?;
        Ok(Response::new(row.into()))
    }

    async fn delete_knowledge_item(
        &self,
        request: Request<DeleteKnowledgeItemRequest>,
    ) -> Result<Response<DeleteKnowledgeItemResponse>, Status> {
        let principal = Principal::from_metadata(request.metadata())?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id)?;
        let id = KnowledgeItemId::parse("item_id", &req.item_id)?;
        let deleted = sqlx::query("DELETE FROM knowledge_items WHERE workspace_id = $1 AND bot_id = $2 AND id = $3")
            .bind(&principal.workspace_id)
            .bind(bot_id.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(Error::from)?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::not_found(KnowledgeItemId::KIND, id.as_str()).into());
        }
        Ok(Response::new(DeleteKnowledgeItemResponse {}))
    }
}

/// A page of the bot's rows of a table, newest first; `select` is the
/// query up to its `FROM` clause. NOT_FOUND unless the bot is the caller's.
pub(crate) async fn newest_of_bot<T>(
    pool: &PgPool,
    workspace_id: &str,
    bot_id: &BotId,
    page: &NewestFirst,
    select: &str,
) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut tx = pool.begin().await?;
    ensure_bot(&mut tx, workspace_id, bot_id).await?;
    let query = format!(
        "{select} WHERE workspace_id = $1 AND bot_id = $5 AND {}",
        NewestFirst::CLAUSE
    );
    let rows = page
        .bind(sqlx::query_as(&query).bind(workspace_id))
        .bind(bot_id.as_str())
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

/// NOT_FOUND unless the bot is the caller's; locks nothing.
pub(crate) async fn ensure_bot(tx: &mut Transaction<'_, Postgres>, workspace_id: &str, bot_id: &BotId) -> Result<()> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM bots WHERE workspace_id = $1 AND id = $2")
        .bind(workspace_id)
        .bind(bot_id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| Error::not_found(BotId::KIND, bot_id.as_str()))
}

/// Inserts `items` in one statement, returning them in the order given.
async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    workspace_id: &str,
    bot_id: &BotId,
    items: Vec<NewItem>,
) -> Result<Vec<ItemRow>> {
    let ids: Vec<String> = items
        .iter()
        .map(|_| KnowledgeItemId::generate().into_string())
        .collect();
    let kinds: Vec<&str> = items.iter().map(|i| i.kind).collect();
    let titles: Vec<&str> = items.iter().map(|i| i.title.as_str()).collect();
    let bodies: Vec<&str> = items.iter().map(|i| i.body.as_str()).collect();
    let urls: Vec<&str> = items.iter().map(|i| i.source_url.as_str()).collect();
    let metadata: Vec<&serde_json::Value> = items.iter().map(|i| &i.metadata).collect();
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
    .bind(bot_id.as_str())
    .bind(&ids)
    .bind(&kinds)
    .bind(&titles)
    .bind(&bodies)
    .bind(&urls)
    .bind(&metadata)
    .fetch_all(&mut **tx)
    .await?;
    rows.sort_by_key(|r| r.created_at);
    Ok(rows)
}
