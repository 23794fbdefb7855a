//! Counts of three metrics over a window: per bucket of a calendar (one
//! page at a time, empty buckets included), in total, and per bot and
//! channel. The conversation and message reports are both this.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use service_runtime::window::Window;
use service_runtime::{
    field_error::invalid_argument,
    pagination::{decode_cursor, encode_cursor, page_limit},
};
use sqlx::PgPool;
use tonic::Status;

use crate::calendar::Calendar;

/// Most bot-and-channel groups a report lists.
const MAX_GROUPS: usize = 100;

/// What a report counts: three metrics, optionally of one bot or channel.
pub struct Query<'a> {
    pub workspace_id: &'a str,
    pub metrics: [&'static str; 3],
    pub window: Window,
    pub bot_id: &'a str,
    pub channel: &'a str,
}

pub struct Page {
    pub limit: i64,
    after: Option<DateTime<Utc>>,
}

impl Page {
    pub fn of(limit: i32, cursor: &str) -> Result<Self, Status> {
        let after = match decode_cursor(cursor)? {
            None => None,
            Some(position) => Some(
                position
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_micros)
                    .ok_or_else(|| invalid_argument("cursor", "is not a cursor returned by this API"))?,
            ),
        };
        Ok(Self {
            limit: page_limit(limit)?,
            after,
        })
    }
}

pub type Counts = [i64; 3];

pub struct Series {
    pub total: Counts,
    pub buckets: Vec<(DateTime<Utc>, Counts)>,
    pub next_cursor: String,
    /// (bot, channel, counts), busiest first.
    pub groups: Vec<(String, String, Counts)>,
}

pub async fn read(pool: &PgPool, query: &Query<'_>, calendar: &Calendar, page: &Page) -> Result<Series, sqlx::Error> {
    let (mut buckets, next_cursor) = read_buckets(pool, query, calendar, page).await?;
    buckets.sort_by_key(|(start, _)| *start);
    let groups = read_groups(pool, query).await?;
    let mut total = [0; 3];
    for (_, _, counts) in &groups {
        for (sum, n) in total.iter_mut().zip(counts) {
            *sum += n;
        }
    }
    Ok(Series {
        total,
        buckets,
        next_cursor,
        groups: groups.into_iter().take(MAX_GROUPS).collect(),
    })
}

async fn read_buckets(
    pool: &PgPool,
    query: &Query<'_>,
    calendar: &Calendar,
    page: &Page,
) -> Result<(Vec<(DateTime<Utc>, Counts)>, String), sqlx::Error> {
    // The page's buckets (one more, to know whether another page follows),
    // then the slots each holds, clipped to the window.
    let rows: Vec<(DateTime<Utc>, String, i64)> = sqlx::query_as(
        "WITH buckets AS (
             SELECT local_start AT TIME ZONE $5 AS start,
                    (local_start + $7::interval) AT TIME ZONE $5 AS finish
             FROM generate_series(date_trunc($6, $3 AT TIME ZONE $5), $4 AT TIME ZONE $5, $7::interval) AS local_start
         ), page AS (
             SELECT start, finish FROM buckets
             WHERE start < $4 AND ($8::timestamptz IS NULL OR start > $8)
             ORDER BY start LIMIT $9
         )
         SELECT p.start, m.metric, COALESCE(sum(c.count), 0)::bigint
         FROM page p CROSS JOIN unnest($2::text[]) AS m(metric)
         LEFT JOIN counts c ON c.workspace_id = $1 AND c.metric = m.metric
              AND c.slot >= GREATEST(p.start, $3) AND c.slot < LEAST(p.finish, $4)
              AND ($10 = '' OR c.bot_id = $10) AND ($11 = '' OR c.channel = $11)
         GROUP BY p.start, m.metric",
    )
    .bind(query.workspace_id)
    .bind(&query.metrics[..])
    .bind(query.window.since)
    .bind(query.window.until)
    .bind(&calendar.time_zone)
    .bind(calendar.bucket.name())
    .bind(calendar.bucket.step())
    .bind(page.after)
    .bind(page.limit + 1)
    .bind(query.bot_id)
    .bind(query.channel)
    .fetch_all(pool)
    .await?;
    let mut by_start: HashMap<DateTime<Utc>, Counts> = HashMap::new();
    for (start, metric, count) in rows {
        let slot = by_start.entry(start).or_default();
        if let Some(i) = query.metrics.iter().position(|m| *m == metric) {
            slot[i] = count;
        }
    }
    let mut buckets: Vec<_> = by_start.into_iter().collect();
    buckets.sort_by_key(|(start, _)| *start);
    let mut next_cursor = String::new();
    if buckets.len() as i64 > page.limit {
        buckets.truncate(page.limit as usize);
        if let Some((last, _)) = buckets.last() {
            next_cursor = encode_cursor(&last.timestamp_micros().to_string());
        }
    }
    Ok((buckets, next_cursor))
}

async fn read_groups(pool: &PgPool, query: &Query<'_>) -> Result<Vec<(String, String, Counts)>, sqlx::Error> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT bot_id, channel, metric, sum(count)::bigint FROM counts
         WHERE workspace_id = $1 AND metric = ANY($2) AND slot >= $3 AND slot < $4
           AND ($5 = '' OR bot_id = $5) AND ($6 = '' OR channel = $6)
         GROUP BY bot_id, channel, metric",
    )
    .bind(query.workspace_id)
    .bind(&query.metrics[..])
    .bind(query.window.since)
    .bind(query.window.until)
    .bind(query.bot_id)
    .bind(query.channel)
    .fetch_all(pool)
    .await?;
    let mut groups: HashMap<(String, String), Counts> = HashMap::new();
    for (bot, channel, metric, count) in rows {
        let counts = groups.entry((bot, channel)).or_default();
        if let Some(i) = query.metrics.iter().position(|m| *m == metric) {
            counts[i] = count;
        }
    }
    let mut groups: Vec<_> = groups.into_iter().map(|((b, c), n)| (b, c, n)).collect();
    groups.sort_by(|a, b| {
        b.2.iter()
            .sum::<i64>()
            .cmp(&a.2.iter().sum())
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    Ok(groups)
}
