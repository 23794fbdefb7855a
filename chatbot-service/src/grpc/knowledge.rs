//! KnowledgeService: the documents and FAQ pairs a bot is trained on.

use ids::{BotId, KnowledgeItemId};
use proto::chatbot::v1::{
    BatchCreateKnowledgeItemsRequest, BatchCreateKnowledgeItemsResponse, CreateKnowledgeItemRequest,
    DeleteKnowledgeItemRequest, DeleteKnowledgeItemResponse, GetKnowledgeItemRequest, KnowledgeItem,
    ListKnowledgeItemsRequest, ListKnowledgeItemsResponse, SyncKnowledgeSourceRequest, SyncKnowledgeSourceResponse,
    UpdateKnowledgeItemRequest, knowledge_item::Content, knowledge_service_server::KnowledgeService,
};
use service_runtime::{pagination::NewestFirst, principal::Principal};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    error::{Error, Result},
    model::{bounded_text, required_text},
    proto_convert::metadata_to_json,
    store::{
        bots,
        knowledge::{self, ItemRow, NewItem, SourceChange},
    },
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

    /// Inserts `items` for the workspace's bot, all or none.
    async fn create(&self, workspace_id: &str, bot_id: &BotId, items: Vec<NewItem>) -> Result<Vec<ItemRow>> {
        let mut tx = self.pool.begin().await?;
        bots::ensure(&mut *tx, workspace_id, bot_id).await?;
        let rows = knowledge::insert(&mut tx, workspace_id, bot_id, items).await?;
        tx.commit().await?;
        Ok(rows)
    }
}

/// A connected system's change to its items, checked.
struct SyncRequest {
    source: String,
    /// By the system's own id, each once.
    upserts: Vec<(String, NewItem)>,
    removals: Vec<String>,
    clear: bool,
}

fn parse_sync(req: SyncKnowledgeSourceRequest) -> Result<SyncRequest> {
    let source = req.source.trim();
    if source.is_empty() || source.len() > 200 {
        return Err(Error::invalid("source", "must be 1 to 200 characters"));
    }
    if req.upserts.len() > MAX_BATCH {
        return Err(Error::invalid(
            "upserts",
            format!("must hold at most {MAX_BATCH} items"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut upserts = Vec::with_capacity(req.upserts.len());
    for (n, sourced) in req.upserts.into_iter().enumerate() {
        let within = |e: Error| e.within(&format!("upserts[{n}]"));
        let external_id = required_text("external_id", &sourced.external_id, 200).map_err(within)?;
        if !seen.insert(external_id.clone()) {
            return Err(within(Error::invalid("external_id", "is given twice")));
        }
        let item = KnowledgeItem {
            content: sourced.document.map(Content::Document),
            ..KnowledgeItem::default()
        };
        upserts.push((external_id, parse_item(Some(item)).map_err(within)?));
    }
    Ok(SyncRequest {
        source: source.to_owned(),
        upserts,
        removals: req.removed_external_ids,
        clear: req.clear,
    })
}

/// An item from a request, checked.
fn parse_item(item: Option<KnowledgeItem>) -> Result<NewItem> {
    match item.and_then(|i| i.content) {
        Some(Content::Faq(faq)) => Ok(NewItem {
            kind: "faq",
            title: required_text("faq.question", &faq.question, 1000)?,
            body: required_text("faq.answer", &faq.answer, 8000)?,
            source_url: String::new(),
            metadata: serde_json::json!({}),
        }),
        Some(Content::Document(doc)) => Ok(NewItem {
            kind: "document",
            title: bounded_text("document.title", doc.title.trim(), 300)?,
            body: required_text("document.text", &doc.text, MAX_DOCUMENT_CHARS)?,
            source_url: source_url(&doc.source_url)?,
            metadata: metadata_to_json("document.metadata", doc.metadata)?,
        }),
        None => Err(Error::invalid("item", "must hold a document or a faq")),
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

fn ids_of(bot_id: &str, item_id: &str) -> Result<(BotId, KnowledgeItemId)> {
    Ok((
        BotId::parse("bot_id", bot_id)?,
        KnowledgeItemId::parse("item_id", item_id)?,
    ))
}

#[tonic::async_trait]
impl KnowledgeService for Knowledge {
    async fn create_knowledge_item(
        &self,
        request: Request<CreateKnowledgeItemRequest>,
    ) -> Result<Response<KnowledgeItem>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id).map_err(Error::from)?;
        let item = parse_item(req.item)?;
        let mut rows = self.create(&principal.workspace_id, &bot_id, vec![item]).await?;
        Ok(Response::new(rows.remove(0).into()))
    }

    async fn batch_create_knowledge_items(
        &self,
        request: Request<BatchCreateKnowledgeItemsRequest>,
    ) -> Result<Response<BatchCreateKnowledgeItemsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id).map_err(Error::from)?;
        if req.items.is_empty() || req.items.len() > MAX_BATCH {
            return Err(Error::invalid("items", format!("must hold 1 to {MAX_BATCH} items")).into());
        }
        let items = req
            .items
            .into_iter()
            .enumerate()
            .map(|(n, item)| parse_item(Some(item)).map_err(|e| e.within(&format!("items[{n}]"))))
            .collect::<Result<Vec<_>>>()?;
        let rows = self.create(&principal.workspace_id, &bot_id, items).await?;
        Ok(Response::new(BatchCreateKnowledgeItemsResponse {
            items: rows.into_iter().map(KnowledgeItem::from).collect(),
        }))
    }

    async fn list_knowledge_items(
        &self,
        request: Request<ListKnowledgeItemsRequest>,
    ) -> Result<Response<ListKnowledgeItemsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id).map_err(Error::from)?;
        let page = NewestFirst::new(req.limit, &req.cursor)?;
        let rows = knowledge::list(&self.pool, &principal.workspace_id, &bot_id, &page).await?;
        let (rows, next_cursor) = page.finish(rows, |r| (r.created_at, r.id.as_str()));
        Ok(Response::new(ListKnowledgeItemsResponse {
            items: rows.into_iter().map(KnowledgeItem::from).collect(),
            next_cursor,
        }))
    }

    async fn get_knowledge_item(
        &self,
        request: Request<GetKnowledgeItemRequest>,
    ) -> Result<Response<KnowledgeItem>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let (bot_id, id) = ids_of(&req.bot_id, &req.item_id)?;
        let row = knowledge::get(&self.pool, &principal.workspace_id, &bot_id, &id).await?;
        Ok(Response::new(row.into()))
    }

    async fn update_knowledge_item(
        &self,
        request: Request<UpdateKnowledgeItemRequest>,
    ) -> Result<Response<KnowledgeItem>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let (bot_id, id) = ids_of(&req.bot_id, &req.item_id)?;
        let item = parse_item(req.item)?;
        let row = knowledge::update(&self.pool, &principal.workspace_id, &bot_id, &id, &item).await?;
        Ok(Response::new(row.into()))
    }

    async fn delete_knowledge_item(
        &self,
        request: Request<DeleteKnowledgeItemRequest>,
    ) -> Result<Response<DeleteKnowledgeItemResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let (bot_id, id) = ids_of(&req.bot_id, &req.item_id)?;
        knowledge::delete(&self.pool, &principal.workspace_id, &bot_id, &id).await?;
        Ok(Response::new(DeleteKnowledgeItemResponse {}))
    }

    async fn sync_knowledge_source(
        &self,
        request: Request<SyncKnowledgeSourceRequest>,
    ) -> Result<Response<SyncKnowledgeSourceResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let bot_id = BotId::parse("bot_id", &req.bot_id).map_err(Error::from)?;
        let sync = parse_sync(req)?;
        let change = SourceChange {
            upserts: &sync.upserts,
            removals: &sync.removals,
            clear: sync.clear,
        };
        let mut tx = self.pool.begin().await.map_err(Error::from)?;
        bots::ensure(&mut *tx, &principal.workspace_id, &bot_id).await?;
        let synced = knowledge::sync_source(&mut tx, &principal.workspace_id, &bot_id, &sync.source, change).await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(Response::new(SyncKnowledgeSourceResponse {
            created: synced.created as i32,
            updated: synced.updated as i32,
            removed: synced.removed as i32,
        }))
    }
}
