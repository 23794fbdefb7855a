//! The API monitoring report over a window, for one workspace or (`None`)
//! the whole platform.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use proto::analytics::v1::{ApiUsage, ComponentUptime, RouteUsage, SlowRequest, Uptime};
use service_runtime::window::Window;
use service_runtime::{
    field_error::invalid_argument,
    pagination::{decode_cursor, encode_cursor, page_limit},
    time::timestamp,
};
use sqlx::{PgConnection, PgPool};
use tonic::Status;

use super::summary::{Bucket, StatusRow, summarise};
use crate::bot_stats::ratio;

/// Slow requests listed.
const SLOWEST: i64 = 20;
/// The overall readiness component.
pub const PLATFORM: &str = "gateway";

/// A page of routes: after `(route, method)`, at most `limit`.
pub struct RoutePage {
    after: Option<(String, String)>,
    limit: i64,
}

impl RoutePage {
    pub fn of(limit: i32, cursor: &str) -> Result<Self, Status> {
        let after = match decode_cursor(cursor)? {
            None => None,
            Some(position) => Some(
                position
                    .split_once('\n')
                    .map(|(route, method)| (route.to_owned(), method.to_owned()))
                    .ok_or_else(|| invalid_argument("cursor", "is not a cursor returned by this API"))?,
            ),
        };
        Ok(Self {
            after,
            limit: page_limit(limit)?,
        })
    }
}

pub async fn read(
    pool: &PgPool,
    workspace_id: Option<&str>,
    window: Window,
    page: &RoutePage,
) -> Result<ApiUsage, sqlx::Error> {
    // One snapshot for every part, so a report landing meanwhile cannot
    // give a route latency without requests.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let usage = read_in(&mut tx, workspace_id, window, page).await?;
    tx.commit().await?;
    Ok(usage)
}

async fn read_in(
    db: &mut PgConnection,
    workspace_id: Option<&str>,
    window: Window,
    page: &RoutePage,
) -> Result<ApiUsage, sqlx::Error> {
    let (routes, next_cursor) = routes(db, workspace_id, window, page).await?;
    Ok(ApiUsage {
        since: Some(timestamp(window.since)),
        until: Some(timestamp(window.until)),
        workspace_id: workspace_id.unwrap_or_default().to_owned(),
        total: Some(total(db, workspace_id, window).await?),
        routes,
        next_cursor,
        slowest: slowest(db, workspace_id, window).await?,
        slow_threshold_ms: sqlx::query_scalar(
            "SELECT slow_threshold_ms FROM usage_reports ORDER BY received_at DESC LIMIT 1",
        )
        .fetch_optional(&mut *db)
        .await?
        .unwrap_or_default(),
        uptime: Some(uptime(db, window).await?),
    })
}

/// Request rows of the scope in the window; `$1` is the workspace or NULL.
const SCOPE: &str = "($1::text IS NULL OR workspace_id = $1) AND minute >= $2 AND minute < $3";

type Query<'q, O> = sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

/// Binds [`SCOPE`]'s `$1` to `$3`.
fn in_scope<'q, O>(query: Query<'q, O>, workspace_id: Option<&'q str>, window: Window) -> Query<'q, O> {
    query.bind(workspace_id).bind(window.since).bind(window.until)
}

/// Binds [`SCOPE`] and the route page's `$4` to `$6`.
fn in_page<'q, O>(
    query: Query<'q, O>,
    workspace_id: Option<&'q str>,
    window: Window,
    page: &RoutePage,
) -> Query<'q, O> {
    let (after_route, after_method) = page.after.clone().unzip();
    in_scope(query, workspace_id, window)
        .bind(after_route)
        .bind(after_method)
        .bind(page.limit + 1)
}

async fn total(
    db: &mut PgConnection,
    workspace_id: Option<&str>,
    window: Window,
) -> Result<proto::analytics::v1::RequestSummary, sqlx::Error> {
    let statuses: Vec<(i16, i64, i64)> = in_scope(
        sqlx::query_as(&format!(
            "SELECT status, sum(requests)::bigint, sum(slow)::bigint FROM api_requests WHERE {SCOPE} GROUP BY status"
        )),
        workspace_id,
        window,
    )
    .fetch_all(&mut *db)
    .await?;
    let mut buckets: Vec<(f64, i64)> = in_scope(
        sqlx::query_as(&format!(
            "SELECT le_ms, sum(count)::bigint FROM api_latency WHERE {SCOPE} GROUP BY le_ms"
        )),
        workspace_id,
        window,
    )
    .fetch_all(&mut *db)
    .await?;
    Ok(summarise(&statuses, &mut buckets))
}

type RouteKey = (String, String);

async fn routes(
    db: &mut PgConnection,
    workspace_id: Option<&str>,
    window: Window,
    page: &RoutePage,
) -> Result<(Vec<RouteUsage>, String), sqlx::Error> {
    // The page's routes (one more, to know whether another page follows).
    let with_page = format!(
        "WITH page AS (
             SELECT DISTINCT route, method FROM api_requests
             WHERE {SCOPE} AND ($4::text IS NULL OR (route, method) > ($4, $5))
             ORDER BY route, method LIMIT $6)"
    );
    let statuses: Vec<(String, String, i16, i64, i64)> = in_page(
        sqlx::query_as(&format!(
            "{with_page}
         SELECT r.route, r.method, r.status, sum(r.requests)::bigint, sum(r.slow)::bigint
         FROM api_requests r JOIN page USING (route, method)
         WHERE {SCOPE} GROUP BY 1, 2, 3"
        )),
        workspace_id,
        window,
        page,
    )
    .fetch_all(&mut *db)
    .await?;
    let buckets: Vec<(String, String, f64, i64)> = in_page(
        sqlx::query_as(&format!(
            "{with_page}
         SELECT l.route, l.method, l.le_ms, sum(l.count)::bigint
         FROM api_latency l JOIN page USING (route, method)
         WHERE {SCOPE} GROUP BY 1, 2, 3"
        )),
        workspace_id,
        window,
        page,
    )
    .fetch_all(&mut *db)
    .await?;
    let mut by_route: BTreeMap<RouteKey, (Vec<StatusRow>, Vec<Bucket>)> = BTreeMap::new();
    for (route, method, status, requests, slow) in statuses {
        by_route
            .entry((route, method))
            .or_default()
            .0
            .push((status, requests, slow));
    }
    for (route, method, bound, count) in buckets {
        by_route.entry((route, method)).or_default().1.push((bound, count));
    }
    let mut next_cursor = String::new();
    if by_route.len() as i64 > page.limit {
        let keep: Vec<RouteKey> = by_route.keys().take(page.limit as usize).cloned().collect();
        by_route.retain(|key, _| keep.contains(key));
        if let Some((route, method)) = keep.last() {
            next_cursor = encode_cursor(&format!("{route}\n{method}"));
        }
    }
    let routes = by_route
        .into_iter()
        .map(|((route, method), (statuses, mut buckets))| RouteUsage {
            method,
            route,
            summary: Some(summarise(&statuses, &mut buckets)),
        })
        .collect();
    Ok((routes, next_cursor))
}

#[derive(sqlx::FromRow)]
struct SlowRow {
    workspace_id: String,
    at: DateTime<Utc>,
    method: String,
    route: String,
    status: i16,
    duration_ms: f64,
    request_id: String,
}

async fn slowest(
    db: &mut PgConnection,
    workspace_id: Option<&str>,
    window: Window,
) -> Result<Vec<SlowRequest>, sqlx::Error> {
    let rows: Vec<SlowRow> = sqlx::query_as(
        "SELECT workspace_id, at, method, route, status, duration_ms, request_id FROM slow_requests
         WHERE ($1::text IS NULL OR workspace_id = $1) AND at >= $2 AND at < $3
         ORDER BY duration_ms DESC LIMIT $4",
    )
    .bind(workspace_id)
    .bind(window.since)
    .bind(window.until)
    .bind(SLOWEST)
    .fetch_all(&mut *db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| SlowRequest {
            at: Some(timestamp(row.at)),
            method: row.method,
            route: row.route,
            status: i32::from(row.status),
            duration_ms: row.duration_ms,
            request_id: row.request_id,
            workspace_id: row.workspace_id,
        })
        .collect())
}

/// Uptime from the readiness checks the gateways ran in the window.
async fn uptime(db: &mut PgConnection, window: Window) -> Result<Uptime, sqlx::Error> {
    let components: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT component, sum(checks)::bigint, sum(passed)::bigint FROM readiness
         WHERE minute >= $1 AND minute < $2 GROUP BY component ORDER BY component",
    )
    .bind(window.since)
    .bind(window.until)
    .fetch_all(&mut *db)
    .await?;
    // Minutes between the window's first check and its end (or the last
    // complete minute) with no check at all.
    let unobserved: i64 = sqlx::query_scalar(
        "WITH span AS (
             SELECT min(minute) AS first,
                    LEAST(date_trunc('minute', $2::timestamptz), date_trunc('minute', now()) - interval '1 minute')
                        AS last
             FROM readiness WHERE component = $3 AND minute >= $1 AND minute < $2)
         SELECT count(*) FROM span, generate_series(span.first, span.last - interval '1 minute', interval '1 minute') m
         WHERE NOT EXISTS (SELECT 1 FROM readiness r WHERE r.component = $3 AND r.minute = m)",
    )
    .bind(window.since)
    .bind(window.until)
    .bind(PLATFORM)
    .fetch_one(&mut *db)
    .await?;
    let (checks, passed) = components
        .iter()
        .find(|c| c.0 == PLATFORM)
        .map_or((0, 0), |c| (c.1, c.2));
    Ok(Uptime {
        checks,
        passed,
        ratio: ratio(passed, checks),
        unobserved_minutes: unobserved,
        components: components
            .into_iter()
            .map(|(component, checks, passed)| ComponentUptime {
                component,
                checks,
                passed,
                ratio: ratio(passed, checks),
            })
            .collect(),
    })
}
