//! How one bot performs over a window, from its questions and its
//! conversations' counts.

use proto::analytics::v1::{BotStats, UnansweredQuestion};
use service_runtime::time::timestamp;
use service_runtime::window::Window;
use sqlx::PgPool;

use crate::metric;

pub async fn read(
    pool: &PgPool,
    workspace_id: &str,
    bot_id: &str,
    window: Window,
    top: i64,
) -> Result<BotStats, sqlx::Error> {
    let (questions, answered, fallbacks, p50, p95): (i64, i64, i64, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE answered_at IS NOT NULL AND NOT fell_back),
                count(*) FILTER (WHERE fell_back),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM answered_at - asked_at) * 1000)
                    FILTER (WHERE answered_at IS NOT NULL),
                percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM answered_at - asked_at) * 1000)
                    FILTER (WHERE answered_at IS NOT NULL)
         FROM questions
         WHERE workspace_id = $1 AND bot_id = $2 AND asked_at >= $3 AND asked_at < $4",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(window.since)
    .bind(window.until)
    .fetch_one(pool)
    .await?;
    let (conversations, handoffs): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(count) FILTER (WHERE metric = $5), 0)::bigint,
                COALESCE(sum(count) FILTER (WHERE metric = $6), 0)::bigint
         FROM counts
         WHERE workspace_id = $1 AND bot_id = $2 AND slot >= $3 AND slot < $4 AND metric IN ($5, $6)",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(window.since)
    .bind(window.until)
    .bind(metric::CONVERSATIONS_STARTED)
    .bind(metric::CONVERSATIONS_HANDED_OFF)
    .fetch_one(pool)
    .await?;
    let unanswered: Vec<(String, i64)> = sqlx::query_as(
        "SELECT question, count(*) AS n FROM questions
         WHERE workspace_id = $1 AND bot_id = $2 AND asked_at >= $3 AND asked_at < $4 AND fell_back
         GROUP BY question ORDER BY n DESC, question LIMIT $5",
    )
    .bind(workspace_id)
    .bind(bot_id)
    .bind(window.since)
    .bind(window.until)
    .bind(top)
    .fetch_all(pool)
    .await?;
    Ok(BotStats {
        bot_id: bot_id.to_owned(),
        since: Some(timestamp(window.since)),
        until: Some(timestamp(window.until)),
        questions,
        answered,
        fallbacks,
        answer_rate: ratio(answered, questions),
        fallback_rate: ratio(fallbacks, questions),
        conversations,
        handoffs,
        handoff_rate: ratio(handoffs, conversations),
        reply_latency_p50_ms: p50.unwrap_or_default(),
        reply_latency_p95_ms: p95.unwrap_or_default(),
        top_unanswered: unanswered
            .into_iter()
            .map(|(question, count)| UnansweredQuestion { question, count })
            .collect(),
    })
}

/// `part / whole`, or 0 when there is no whole.
pub fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}
