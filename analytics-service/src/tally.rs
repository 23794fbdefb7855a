//! What a batch of events changes in the statistics, written in one
//! transaction with the stream position it reaches: a crash either keeps
//! both or neither, and an event seen again (republished by a relay, or
//! read again after a crash) is skipped by its id.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use event_pipeline::{Received, catalog};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::metric;

/// Counts `events` and records that the stream `stream` has been read up
/// to their last offset.
pub async fn apply(pool: &PgPool, stream: &str, events: &[Received]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let fresh = claim(&mut tx, events).await?;
    let tally = Tally::of(&fresh);
    tally.write(&mut tx).await?;
    if let Some(offset) = events.iter().filter_map(|e| e.offset).max() {
        sqlx::query(
            "INSERT INTO stream_positions (stream, last_offset) VALUES ($1, $2)
             ON CONFLICT (stream) DO UPDATE SET last_offset = GREATEST(stream_positions.last_offset, $2)",
        )
        .bind(stream)
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The events not counted before, each once. A concurrent transaction
/// claiming the same id makes this one wait for it, then skip the event.
async fn claim<'a>(tx: &mut PgConnection, events: &'a [Received]) -> Result<Vec<&'a Received>, sqlx::Error> {
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let claimed: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO counted_events (event_id) SELECT DISTINCT unnest($1::text[])
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(&ids)
    .fetch_all(tx)
    .await?
    .into_iter()
    .collect();
    let mut taken = HashSet::new();
    Ok(events
        .iter()
        .filter(|e| claimed.contains(e.id.as_str()) && taken.insert(e.id.as_str()))
        .collect())
}

/// One conversation as its latest event shows it.
struct Conversation {
    bot_id: String,
    channel: String,
    started_at: DateTime<Utc>,
}

/// What one user message became.
#[derive(Default)]
struct Question {
    text: String,
    conversation_id: String,
    asked_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    fell_back: bool,
}

#[derive(Default)]
struct Tally {
    conversations: HashMap<(String, String), Conversation>,
    /// (workspace, metric, when, conversation): one count each.
    counts: Vec<(String, &'static str, DateTime<Utc>, String)>,
    questions: HashMap<(String, String), Question>,
}

impl Tally {
    fn of(events: &[&Received]) -> Self {
        let mut tally = Self::default();
        for event in events {
            tally.add(event);
        }
        tally
    }

    fn add(&mut self, event: &Received) {
        let at = event.occurred_at.unwrap_or_else(Utc::now);
        let workspace = event.workspace_id.as_str();
        let data = &event.data;
        let conversation_id = event.conversation_id().unwrap_or_default().to_owned();
        if let Some(conversation) = data.get("conversation") {
            self.saw_conversation(workspace, conversation, at);
        }
        let metric = match event.event_type.as_str() {
            catalog::CONVERSATION_STARTED => Some(metric::CONVERSATIONS_STARTED),
            catalog::CONVERSATION_ENDED => Some(metric::CONVERSATIONS_ENDED),
            catalog::CONVERSATION_UPDATED if handed_off(data) => Some(metric::CONVERSATIONS_HANDED_OFF),
            catalog::MESSAGE_RECEIVED => {
                let message = &data["message"];
                let question = self.question(workspace, &message["id"], &conversation_id);
                question.asked_at = created_at(message);
                question.text = even_out(message["content"].as_str().unwrap_or_default());
                Some(metric::MESSAGES_RECEIVED)
            }
            catalog::MESSAGE_SENT => {
                let message = &data["message"];
                if message["role"] == "bot" {
                    let question = self.question(workspace, &message["metadata"]["in_reply_to"], &conversation_id);
                    question.answered_at = question.answered_at.or(created_at(message));
                    // The fallback goes with a handoff: the bot did not know.
                    question.fell_back |= !message["metadata"]["handoff"].is_null();
                }
                Some(metric::MESSAGES_SENT)
            }
            catalog::MESSAGE_FAILED => {
                let question = self.question(workspace, &data["message"]["id"], &conversation_id);
                question.fell_back = true;
                question.answered_at = question.answered_at.or(created_at(&data["reply"]));
                Some(metric::MESSAGES_FAILED)
            }
            _ => None,
        };
        if let Some(metric) = metric {
            self.counts.push((workspace.to_owned(), metric, at, conversation_id));
        }
    }

    fn saw_conversation(&mut self, workspace: &str, conversation: &Value, at: DateTime<Utc>) {
        let Some(id) = conversation["id"].as_str() else {
            return;
        };
        self.conversations.insert(
            (workspace.to_owned(), id.to_owned()),
            Conversation {
                bot_id: conversation["bot_id"].as_str().unwrap_or_default().to_owned(),
                channel: conversation["channel"].as_str().unwrap_or_default().to_owned(),
                started_at: created_at(conversation).unwrap_or(at),
            },
        );
    }

    /// The question `id` (a throwaway when the event names none).
    fn question(&mut self, workspace: &str, id: &Value, conversation_id: &str) -> &mut Question {
        let id = id.as_str().unwrap_or_default().to_owned();
        let question = self.questions.entry((workspace.to_owned(), id)).or_default();
        if question.conversation_id.is_empty() {
            question.conversation_id = conversation_id.to_owned();
        }
        question
    }

    async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        self.write_conversations(tx).await?;
        self.write_counts(tx).await?;
        self.write_questions(tx).await
    }

    async fn write_conversations(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.conversations.is_empty() {
            return Ok(());
        }
        let (mut workspaces, mut ids, mut bots, mut channels, mut starts) = (vec![], vec![], vec![], vec![], vec![]);
        for ((workspace, id), conversation) in &self.conversations {
            workspaces.push(workspace.as_str());
            ids.push(id.as_str());
            bots.push(conversation.bot_id.as_str());
            channels.push(conversation.channel.as_str());
            starts.push(conversation.started_at);
        }
        sqlx::query(
            "INSERT INTO conversations (workspace_id, id, bot_id, channel, started_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
             ON CONFLICT (workspace_id, id) DO UPDATE
             SET bot_id = excluded.bot_id, channel = excluded.channel",
        )
        .bind(workspaces)
        .bind(ids)
        .bind(bots)
        .bind(channels)
        .bind(starts)
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Counts go to their conversation's bot and channel.
    async fn write_counts(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.counts.is_empty() {
            return Ok(());
        }
        let workspaces: Vec<&str> = self.counts.iter().map(|c| c.0.as_str()).collect();
        let metrics: Vec<&str> = self.counts.iter().map(|c| c.1).collect();
        let times: Vec<DateTime<Utc>> = self.counts.iter().map(|c| c.2).collect();
        let conversations: Vec<&str> = self.counts.iter().map(|c| c.3.as_str()).collect();
        sqlx::query(&format!(
            "INSERT INTO counts (workspace_id, metric, slot, bot_id, channel, count)
             SELECT e.ws, e.metric, {SLOT}, COALESCE(c.bot_id, ''), COALESCE(c.channel, ''), count(*)
             FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS e(ws, metric, at, conversation)
             LEFT JOIN conversations c ON c.workspace_id = e.ws AND c.id = e.conversation
             GROUP BY 1, 2, 3, 4, 5
             ON CONFLICT (workspace_id, metric, slot, bot_id, channel)
             DO UPDATE SET count = counts.count + excluded.count"
        ))
        .bind(workspaces)
        .bind(metrics)
        .bind(times)
        .bind(conversations)
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Either side of a question may arrive first; each fills its part.
    async fn write_questions(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        let questions: Vec<_> = self.questions.iter().filter(|((_, id), _)| !id.is_empty()).collect();
        if questions.is_empty() {
            return Ok(());
        }
        let workspaces: Vec<&str> = questions.iter().map(|((w, _), _)| w.as_str()).collect();
        let ids: Vec<&str> = questions.iter().map(|((_, id), _)| id.as_str()).collect();
        let texts: Vec<&str> = questions.iter().map(|(_, q)| q.text.as_str()).collect();
        let conversations: Vec<&str> = questions.iter().map(|(_, q)| q.conversation_id.as_str()).collect();
        let asked: Vec<Option<DateTime<Utc>>> = questions.iter().map(|(_, q)| q.asked_at).collect();
        let answered: Vec<Option<DateTime<Utc>>> = questions.iter().map(|(_, q)| q.answered_at).collect();
        let fell_back: Vec<bool> = questions.iter().map(|(_, q)| q.fell_back).collect();
        sqlx::query(
            "INSERT INTO questions (workspace_id, id, bot_id, conversation_id, asked_at, answered_at, fell_back, question)
             SELECT q.ws, q.id, COALESCE(c.bot_id, ''), q.conversation, q.asked, q.answered, q.fell_back, q.text
             FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::bool[],
                         $7::text[]) AS q(ws, id, conversation, asked, answered, fell_back, text)
             LEFT JOIN conversations c ON c.workspace_id = q.ws AND c.id = q.conversation
             ON CONFLICT (workspace_id, id) DO UPDATE SET
                 bot_id = CASE WHEN questions.bot_id = '' THEN excluded.bot_id ELSE questions.bot_id END,
                 conversation_id = CASE WHEN questions.conversation_id = '' THEN excluded.conversation_id
                                        ELSE questions.conversation_id END,
                 asked_at = COALESCE(questions.asked_at, excluded.asked_at),
                 answered_at = COALESCE(questions.answered_at, excluded.answered_at),
                 fell_back = questions.fell_back OR excluded.fell_back,
                 question = CASE WHEN questions.question = '' THEN excluded.question ELSE questions.question END",
        )
        .bind(workspaces)
        .bind(ids)
        .bind(conversations)
        .bind(asked)
        .bind(answered)
        .bind(fell_back)
        .bind(texts)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// The 15-minute slot of `e.at`.
const SLOT: &str = "date_bin('15 minutes', e.at, TIMESTAMPTZ '2000-01-01 00:00:00+00')";

/// Whether a `conversation.updated` handed the conversation to a human.
fn handed_off(data: &Value) -> bool {
    data["changes"].as_array().is_some_and(|changes| {
        changes
            .iter()
            .any(|c| c["field"] == "status" && c["new_value"] == "waiting")
    })
}

fn created_at(row: &Value) -> Option<DateTime<Utc>> {
    let text = row["created_at"].as_str()?;
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
}

/// Longest question kept, in characters.
const MAX_QUESTION_CHARS: usize = 200;

/// The same question asked with other letter case, spacing or final
/// punctuation counts as one.
pub fn even_out(text: &str) -> String {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    let joined = words.join(" ");
    joined
        .trim_end_matches(['?', '!', '.', ',', ';', ':'])
        .chars()
        .take(MAX_QUESTION_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn questions_are_evened_out() {
        assert_eq!(even_out("  Where is   my ORDER?? "), "where is my order");
        assert_eq!(even_out(&"x".repeat(500)).len(), MAX_QUESTION_CHARS);
    }

    #[test]
    fn only_a_change_to_waiting_is_a_handoff() {
        let to_waiting = json!({"changes": [{"field": "status", "old_value": "active", "new_value": "waiting"}]});
        let to_ended = json!({"changes": [{"field": "status", "old_value": "active", "new_value": "ended"}]});
        let channel = json!({"changes": [{"field": "channel", "old_value": "web", "new_value": "waiting"}]});
        assert!(handed_off(&to_waiting));
        assert!(!handed_off(&to_ended));
        assert!(!handed_off(&channel));
    }

    fn event(event_type: &str, data: Value) -> Received {
        let envelope = event_pipeline::Envelope::new(event_type, "ws_1", data);
        Received::parse(envelope.body).unwrap()
    }

    #[test]
    fn a_fallback_with_a_handoff_is_a_question_the_bot_could_not_answer() {
        let events = [event(
            catalog::MESSAGE_SENT,
            json!({"message": {"id": "msg_r", "conversation_id": "conv_1", "role": "bot",
                "metadata": {"in_reply_to": "msg_q", "handoff": {"reason": "low_confidence"}},
                "created_at": "2026-12-03T10:00:01Z"}}),
        )];
        let refs: Vec<&Received> = events.iter().collect();
        let tally = Tally::of(&refs);
        assert!(tally.questions[&("ws_1".to_owned(), "msg_q".to_owned())].fell_back);
    }

    #[test]
    fn a_reply_and_a_failure_meet_their_question() {
        let asked = "2026-12-03T10:00:00Z";
        let events = [
            event(
                catalog::MESSAGE_RECEIVED,
                json!({"message": {"id": "msg_q", "conversation_id": "conv_1", "role": "user",
                    "content": "Refund?", "created_at": asked}}),
            ),
            event(
                catalog::MESSAGE_SENT,
                json!({"message": {"id": "msg_r", "conversation_id": "conv_1", "role": "bot",
                    "metadata": {"in_reply_to": "msg_q"}, "created_at": "2026-12-03T10:00:01Z"}}),
            ),
            event(
                catalog::MESSAGE_FAILED,
                json!({"message": {"id": "msg_q", "conversation_id": "conv_1", "content": "Refund?"},
                    "reply": {"created_at": "2026-12-03T10:00:01Z"}}),
            ),
        ];
        let refs: Vec<&Received> = events.iter().collect();
        let tally = Tally::of(&refs);
        let question = &tally.questions[&("ws_1".to_owned(), "msg_q".to_owned())];
        assert_eq!(question.asked_at, created_at(&json!({"created_at": asked})));
        assert!(question.answered_at.is_some() && question.fell_back);
        assert_eq!(question.conversation_id, "conv_1");
        let metrics: Vec<&str> = tally.counts.iter().map(|c| c.1).collect();
        assert_eq!(
            metrics,
            [
                metric::MESSAGES_RECEIVED,
                metric::MESSAGES_SENT,
                metric::MESSAGES_FAILED
            ]
        );
        assert_eq!(question.text, "refund");
    }
}
