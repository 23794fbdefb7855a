//! What the bot says: a [`Draft`] reply to a user message, from the
//! built-in retrieval engine or from an OpenAI-compatible model server.
//! Drafting only reads; storing the reply is
//! [`replying`](crate::replying)'s.

pub mod model_server;
pub mod orders;
mod prompt;
pub mod tools;

use std::sync::Arc;

use ids::{BotId, ConversationId};
use proto::chatbot::v1::BotConfig;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::{
    error::{Error, Result},
    retrieval::{Index, Indexes, Kind, VersionKey, index::Hit},
    secrets::Secrets,
    store::bots::BotRow,
};
use model_server::{ChatMessage, ChatRequest, Completion, ModelClient, ModelError};
use orders::{Customer, OrderDesk};

/// Sends a drafted reply's text as a stream would have produced it.
async fn send_words(content: &str, deltas: Option<&mpsc::Sender<String>>) {
    if let Some(sender) = deltas {
        for piece in word_pieces(content) {
            let _ = sender.send(piece.to_owned()).await;
        }
    }
}

/// Passages considered for an answer or given to a model.
const CANDIDATES: usize = 5;
/// An FAQ this close to the best passage's score is preferred to it: a
/// curated answer beats a document excerpt on the same topic.
const FAQ_PREFERENCE: f32 = 0.85;

/// The bot answering a conversation, as deployed.
pub struct Bot {
    pub id: BotId,
    pub config: BotConfig,
    pub deployed_version: i32,
}

impl TryFrom<BotRow> for Bot {
    type Error = Error;

    fn try_from(row: BotRow) -> Result<Self> {
        Ok(Self {
            config: row.config()?,
            id: row.id,
            deployed_version: row.deployed_version,
        })
    }
}

/// A reply not yet stored.
#[derive(Debug)]
pub struct Draft {
    pub content: String,
    pub metadata: Value,
    /// Set when the conversation goes to a human: why.
    pub handoff: Option<Value>,
    /// Set when the engine failed and the fallback was sent: why.
    pub failure: Option<String>,
}

#[derive(Clone)]
pub struct Drafter {
    pool: PgPool,
    indexes: Indexes,
    model: ModelClient,
    secrets: Secrets,
    orders: OrderDesk,
}

impl Drafter {
    pub fn new(pool: PgPool, indexes: Indexes, model: ModelClient, secrets: Secrets, orders: OrderDesk) -> Self {
        Self {
            pool,
            indexes,
            model,
            secrets,
            orders,
        }
    }

    /// Drafts the reply to `question`, asked by `customer` when the
    /// conversation names one; text is also sent on `deltas` as it is
    /// produced. Never fails for the engine's sake: a failing engine gives
    /// the fallback with the failure noted.
    pub async fn draft(
        &self,
        workspace_id: &str,
        conversation_id: &ConversationId,
        bot: &Bot,
        question: (&str, Option<&Customer>),
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<Draft> {
        let (question, customer) = question;
        if let Some(draft) = self.about_orders(workspace_id, bot, question, customer).await {
            send_words(&draft.content, deltas).await;
            return Ok(draft);
        }
        let index = self.deployed_index(workspace_id, bot).await?;
        let vector = match &index {
            Some(index) => self.indexes.question_vector(index, question).await,
            None => None,
        };
        let hits = index
            .as_deref()
            .map(|i| i.search(question, vector.as_deref(), CANDIDATES))
            .unwrap_or_default();
        let draft = match bot.config.engine.as_str() {
            "llm" => {
                let asker = Asker {
                    workspace_id,
                    conversation_id,
                    customer,
                };
                self.ask_model(&asker, bot, &hits, deltas).await?
            }
            _ => {
                let draft = from_knowledge(bot, index.is_some(), &hits);
                send_words(&draft.content, deltas).await;
                draft
            }
        };
        Ok(draft)
    }

    /// The knowledge engine's answer to a question about the verified
    /// customer's own orders, from the workspace's stores.
    async fn about_orders(
        &self,
        workspace_id: &str,
        bot: &Bot,
        question: &str,
        customer: Option<&Customer>,
    ) -> Option<Draft> {
        let customer = customer.filter(|_| bot.config.engine != "llm" && orders::is_order_question(question))?;
        self.orders.answer(workspace_id, customer).await
    }

    async fn deployed_index(&self, workspace_id: &str, bot: &Bot) -> Result<Option<Arc<Index>>> {
        if bot.deployed_version == 0 {
            return Ok(None);
        }
        let key = VersionKey {
            workspace_id: workspace_id.to_owned(),
            bot_id: bot.id.clone(),
            version: bot.deployed_version,
            language: bot.config.language.clone(),
        };
        self.indexes.get(&key).await.map(Some)
    }

    async fn ask_model(
        &self,
        asker: &Asker<'_>,
        bot: &Bot,
        hits: &[Hit<'_>],
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<Draft> {
        let llm = bot.config.llm.clone().unwrap_or_default();
        let history = prompt::history(&self.pool, asker.workspace_id, asker.conversation_id).await?;
        let messages = prompt::assemble(&bot.config, hits, history, llm.max_tokens);
        let api_key = match llm.api_key_ref.as_str() {
            "" => None,
            name => match self.secrets.resolve(asker.workspace_id, name, &llm.base_url).await {
                Ok(value) => Some(value),
                // The key is never sent elsewhere: the reply fails instead.
                Err(refusal) => return Ok(failed(bot, "llm", format!("config.llm.api_key_ref {refusal}"))),
            },
        };
        let request = ChatRequest {
            model: llm.model.clone(),
            messages,
            temperature: llm.temperature,
            max_tokens: llm.max_tokens,
            stream: false,
            tools: tools::definitions(&llm.tools, asker.customer.is_some()),
        };
        let citations = citations(hits);
        let model = Model {
            base_url: &llm.base_url,
            api_key: api_key.as_deref(),
        };
        let answered = match request.tools.is_empty() {
            true => {
                self.model
                    .complete(model.base_url, model.api_key, request, deltas)
                    .await
            }
            false => self.with_tools(asker, &model, request, deltas).await,
        };
        match answered {
            Ok(completion) if !completion.text.trim().is_empty() => Ok(Draft {
                content: completion.text,
                metadata: json!({
                    "engine": "llm",
                    "model": llm.model,
                    "version": bot.deployed_version,
                    "citations": citations,
                    "finish_reason": completion.finish_reason,
                    "usage": completion.usage,
                    "tools_called": completion.tool_calls.iter()
                        .filter_map(|c| c["function"]["name"].as_str()).collect::<Vec<_>>(),
                }),
                handoff: None,
                failure: None,
            }),
            Ok(_) => Ok(failed(bot, "llm", "the model server returned an empty answer".into())),
            Err(error) => Ok(failed(bot, "llm", error.to_string())),
        }
    }
}

/// Who asks: the workspace, the conversation, and its verified customer.
struct Asker<'a> {
    workspace_id: &'a str,
    conversation_id: &'a ConversationId,
    customer: Option<&'a Customer>,
}

/// Where a bot's model is, and its key.
struct Model<'a> {
    base_url: &'a str,
    api_key: Option<&'a str>,
}

/// Rounds of tool calls a reply may take before the model must answer.
const MAX_TOOL_ROUNDS: usize = 3;

impl Drafter {
    /// The model's answer once it has called the tools it wanted (up to
    /// [`MAX_TOOL_ROUNDS`] rounds, then it must answer without them); the
    /// completion carries every call made. Drafted whole, then streamed.
    async fn with_tools(
        &self,
        asker: &Asker<'_>,
        model: &Model<'_>,
        mut request: ChatRequest,
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<Completion, ModelError> {
        let mut called = Vec::new();
        let mut round = 0;
        loop {
            let last = round == MAX_TOOL_ROUNDS;
            if last {
                request.tools.clear();
            }
            let mut completion = self
                .model
                .complete(model.base_url, model.api_key, request.clone(), None)
                .await?;
            // A server that calls tools it was not offered gets no more rounds.
            if completion.tool_calls.is_empty() || last {
                send_words(&completion.text, deltas).await;
                called.append(&mut completion.tool_calls);
                completion.tool_calls = called;
                return Ok(completion);
            }
            request.messages.push(ChatMessage {
                role: "assistant",
                content: completion.text.clone(),
                tool_calls: completion.tool_calls.clone(),
                tool_call_id: None,
            });
            for call in &completion.tool_calls {
                let answer = tools::run(&self.orders, asker.workspace_id, asker.customer, call).await;
                request.messages.push(ChatMessage {
                    role: "tool",
                    content: answer,
                    tool_calls: Vec::new(),
                    tool_call_id: call["id"].as_str().map(str::to_owned),
                });
            }
            called.append(&mut completion.tool_calls);
            round += 1;
        }
    }
}

/// The best FAQ answer when a question matches one, otherwise the most
/// relevant passage; the fallback and a handoff below the threshold.
fn from_knowledge(bot: &Bot, deployed: bool, hits: &[Hit<'_>]) -> Draft {
    let threshold = bot.config.handoff_threshold;
    if !deployed {
        return handoff(
            bot,
            json!({"reason": "not_deployed", "detail": "the bot has no deployed knowledge version"}),
            0.0,
            Vec::new(),
        );
    }
    let Some(best) = choose(hits) else {
        return handoff(
            bot,
            json!({"reason": "low_confidence", "confidence": 0.0}),
            0.0,
            Vec::new(),
        );
    };
    let candidates: Vec<Value> = hits
        .iter()
        .map(|h| {
            json!({
                "item_id": h.passage.item_id, "kind": h.passage.kind.as_str(), "score": h.score,
                "confidence": h.confidence, "similarity": h.similarity,
            })
        })
        .collect();
    if best.confidence < threshold {
        let why = json!({"reason": "low_confidence", "confidence": best.confidence, "threshold": threshold});
        return handoff(bot, why, best.confidence, candidates);
    }
    Draft {
        content: best.passage.body.clone(),
        metadata: json!({
            "engine": "knowledge",
            "version": bot.deployed_version,
            "confidence": best.confidence,
            "citations": [best.passage.item_id],
            "candidates": candidates,
        }),
        handoff: None,
        failure: None,
    }
}

fn choose<'a>(hits: &'a [Hit<'a>]) -> Option<&'a Hit<'a>> {
    let best = hits.first()?;
    // Mixed scores already favour a matching FAQ; the ratio below is for
    // BM25 scores, which mixed ones are not.
    if best.passage.kind == Kind::Faq || hits.iter().any(|h| h.similarity.is_some()) {
        return Some(best);
    }
    let faq = hits.iter().find(|h| {
        h.passage.kind == Kind::Faq && h.score >= best.score * FAQ_PREFERENCE && h.confidence >= best.confidence
    });
    Some(faq.unwrap_or(best))
}

fn handoff(bot: &Bot, why: Value, confidence: f32, candidates: Vec<Value>) -> Draft {
    Draft {
        content: bot.config.fallback_message.clone(),
        metadata: json!({
            "engine": "knowledge",
            "version": bot.deployed_version,
            "confidence": confidence,
            "citations": [],
            "candidates": candidates,
            "handoff": why,
        }),
        handoff: Some(why),
        failure: None,
    }
}

/// The fallback after an engine failure; the conversation goes to a human.
fn failed(bot: &Bot, engine: &str, reason: String) -> Draft {
    tracing::warn!(bot_id = %bot.id, %reason, "reply engine failed; sending the fallback");
    let why = json!({"reason": "engine_failed", "detail": reason});
    Draft {
        content: bot.config.fallback_message.clone(),
        metadata: json!({"engine": engine, "version": bot.deployed_version, "failure": {"reason": reason}, "handoff": why}),
        handoff: Some(why),
        failure: Some(reason),
    }
}

fn citations(hits: &[Hit<'_>]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for hit in hits {
        if !ids.contains(&hit.passage.item_id) {
            ids.push(hit.passage.item_id.clone());
        }
    }
    ids
}

/// Text cut after each space, so a stored answer streams like a model's.
fn word_pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(' ')
}
