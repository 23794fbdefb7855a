//! The prompt for a model server: the persona and reply language, the
//! retrieved passages, and as much recent conversation as the token budget
//! allows (newest kept first; the question itself always fits).

use ids::ConversationId;
use proto::chatbot::v1::BotConfig;
use sqlx::PgPool;

use super::model_server::ChatMessage;
use crate::{error::Result, retrieval::index::Hit, store::messages};

/// The context window assumed for the prompt plus the reply. Small enough
/// for the smallest common local models (4k); the reply's `max_tokens` is
/// taken out of it first.
const CONTEXT_TOKENS: usize = 4096;
/// Passages may use at most this share of what is left for the prompt.
const PASSAGE_SHARE: f32 = 0.5;
/// Most recent messages read for history.
const HISTORY_MESSAGES: i64 = 30;

/// A conservative token estimate (about four characters a token in
/// English, plus the per-message overhead of chat formats).
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4) + 4
}

/// Recent messages, oldest first, as chat roles; the newest is the
/// question being answered.
pub async fn history(pool: &PgPool, workspace_id: &str, conversation_id: &ConversationId) -> Result<Vec<ChatMessage>> {
    let rows = messages::recent(pool, workspace_id, conversation_id, HISTORY_MESSAGES).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(role, content)| {
            let role = match role.as_str() {
                "user" => "user",
                "bot" | "agent" => "assistant",
                _ => return None,
            };
            Some(ChatMessage::text(role, content))
        })
        .collect())
}

/// System prompt, then the history that fits, newest kept first.
pub fn assemble(config: &BotConfig, hits: &[Hit<'_>], history: Vec<ChatMessage>, max_tokens: i32) -> Vec<ChatMessage> {
    let budget = CONTEXT_TOKENS.saturating_sub(max_tokens.max(0) as usize).max(256);
    let system = system_prompt(config, hits, (budget as f32 * PASSAGE_SHARE) as usize);
    let mut left = budget.saturating_sub(estimate_tokens(&system));
    let mut kept = Vec::new();
    for (n, message) in history.into_iter().rev().enumerate() {
        let cost = estimate_tokens(&message.content);
        // The question itself is always sent, cut to the budget if need be.
        if n == 0 && cost > left {
            let chars = left.saturating_sub(4) * 4;
            kept.push(ChatMessage::text(
                message.role,
                message.content.chars().take(chars).collect(),
            ));
            break;
        }
        if cost > left {
            break;
        }
        left -= cost;
        kept.push(message);
    }
    kept.reverse();
    let mut messages = vec![ChatMessage::text("system", system)];
    messages.extend(kept);
    messages
}

fn system_prompt(config: &BotConfig, hits: &[Hit<'_>], passage_budget: usize) -> String {
    let mut prompt = String::new();
    if !config.persona.trim().is_empty() {
        prompt.push_str(config.persona.trim());
        prompt.push_str("\n\n");
    }
    prompt.push_str(&format!(
        "Reply in the language with BCP 47 tag \"{}\".",
        config.language
    ));
    if hits.is_empty() {
        return prompt;
    }
    prompt.push_str(
        " Answer from the knowledge below. If it does not contain the answer, say you do not know; \
         never invent order details, prices or policies.\n\nKnowledge:",
    );
    let mut used = 0;
    for (n, hit) in hits.iter().enumerate() {
        let entry = format!("\n[{}] {}\n{}", n + 1, hit.passage.title, hit.passage.body);
        let cost = estimate_tokens(&entry);
        if used + cost > passage_budget {
            break;
        }
        used += cost;
        prompt.push_str(&entry);
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrieval::{Index, Kind, Passage};

    fn message(role: &'static str, content: &str) -> ChatMessage {
        ChatMessage::text(role, content.into())
    }

    #[test]
    fn the_prompt_has_persona_language_and_passages_then_history_in_order() {
        let index = Index::build(
            "en",
            vec![Passage {
                item_id: "kn_1".into(),
                kind: Kind::Faq,
                title: "How long do refunds take?".into(),
                body: "Refunds take 5 to 10 days.".into(),
                vectors: None,
            }],
        );
        let hits = index.search("refund time", None, 3);
        let config = BotConfig {
            persona: "You are Ava, the Acme support assistant.".into(),
            language: "en".into(),
            ..Default::default()
        };
        let history = vec![
            message("user", "hi"),
            message("assistant", "Hello!"),
            message("user", "refund time?"),
        ];
        let messages = assemble(&config, &hits, history, 512);
        assert_eq!(messages[0].role, "system");
        assert!(messages[0].content.starts_with("You are Ava"));
        assert!(messages[0].content.contains("Refunds take 5 to 10 days."));
        assert!(messages[0].content.contains("\"en\""));
        let rest: Vec<&str> = messages[1..].iter().map(|m| m.content.as_str()).collect();
        assert_eq!(rest, ["hi", "Hello!", "refund time?"]);
    }

    #[test]
    fn old_history_is_dropped_to_fit_the_budget_but_the_question_stays() {
        let long = "x".repeat(16_000);
        let history = vec![
            message("user", &long),
            message("assistant", &long),
            message("user", "and now?"),
        ];
        let messages = assemble(&BotConfig::default(), &[], history, 1024);
        let rest: Vec<&str> = messages[1..].iter().map(|m| m.content.as_str()).collect();
        assert_eq!(rest, ["and now?"]);
        let total: usize = messages.iter().map(|m| estimate_tokens(&m.content)).sum();
        assert!(total <= CONTEXT_TOKENS - 1024);
    }
}
