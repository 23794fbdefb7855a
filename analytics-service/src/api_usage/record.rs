//! Applying a gateway's report: added to the per-minute rows, once.

use chrono::{DateTime, Utc};
use proto::analytics::v1::RecordApiUsageRequest;
use service_runtime::{field_error::invalid_argument, time::from_timestamp};
use sqlx::{PgConnection, PgPool};
use tonic::Status;

/// Most cells, slow requests or readiness samples one report may carry.
const MAX_ROWS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Invalid(#[from] Status),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Applies `report` unless it was applied before; says whether it was.
pub async fn apply(pool: &PgPool, report: RecordApiUsageRequest) -> Result<bool, RecordError> {
    check(&report)?;
    let mut tx = pool.begin().await?;
    let first_time =
        sqlx::query("INSERT INTO usage_reports (id, slow_threshold_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&report.report_id)
            .bind(report.slow_threshold_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if !first_time {
        return Ok(false);
    }
    write_cells(&mut tx, &report).await?;
    write_slow(&mut tx, &report).await?;
    write_readiness(&mut tx, &report).await?;
    tx.commit().await?;
    Ok(true)
}

fn check(report: &RecordApiUsageRequest) -> Result<(), Status> {
    if report.report_id.is_empty() || report.report_id.len() > 128 {
        return Err(invalid_argument("report_id", "must be 1 to 128 characters"));
    }
    if [report.cells.len(), report.slow.len(), report.readiness.len()]
        .iter()
        .any(|n| *n > MAX_ROWS)
    {
        return Err(invalid_argument(
            "cells",
            &format!("at most {MAX_ROWS} rows per report"),
        ));
    }
    if report.cells.iter().any(|c| !(100..=599).contains(&c.status)) {
        return Err(invalid_argument("cells.status", "must be an HTTP status"));
    }
    Ok(())
}

fn minute_of(ts: Option<&prost_types::Timestamp>, field: &str) -> Result<DateTime<Utc>, Status> {
    ts.and_then(from_timestamp)
        .ok_or_else(|| invalid_argument(field, "is required"))
}

async fn write_cells(tx: &mut PgConnection, report: &RecordApiUsageRequest) -> Result<(), RecordError> {
    let mut rows = CellRows::default();
    for cell in &report.cells {
        let minute = minute_of(cell.minute.as_ref(), "cells.minute")?;
        rows.push_cell(cell, minute);
    }
    sqlx::query(
        "INSERT INTO api_requests (workspace_id, minute, method, route, status, requests, slow)
         SELECT ws, date_trunc('minute', minute), method, route, status, sum(requests), sum(slow)
         FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::smallint[], $6::bigint[], $7::bigint[])
              AS c(ws, minute, method, route, status, requests, slow)
         GROUP BY 1, 2, 3, 4, 5
         ON CONFLICT (workspace_id, minute, method, route, status) DO UPDATE
         SET requests = api_requests.requests + excluded.requests, slow = api_requests.slow + excluded.slow",
    )
    .bind(&rows.workspaces)
    .bind(&rows.minutes)
    .bind(&rows.methods)
    .bind(&rows.routes)
    .bind(&rows.statuses)
    .bind(&rows.requests)
    .bind(&rows.slow)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO api_latency (workspace_id, minute, method, route, status, le_ms, count)
         SELECT ws, date_trunc('minute', minute), method, route, status, le_ms, sum(count)
         FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::smallint[], $6::float8[], $7::bigint[])
              AS l(ws, minute, method, route, status, le_ms, count)
         GROUP BY 1, 2, 3, 4, 5, 6
         ON CONFLICT (workspace_id, minute, method, route, status, le_ms) DO UPDATE
         SET count = api_latency.count + excluded.count",
    )
    .bind(&rows.bucket_workspaces)
    .bind(&rows.bucket_minutes)
    .bind(&rows.bucket_methods)
    .bind(&rows.bucket_routes)
    .bind(&rows.bucket_statuses)
    .bind(&rows.bucket_bounds)
    .bind(&rows.bucket_counts)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The report's cells as columns, for `unnest`.
#[derive(Default)]
struct CellRows<'a> {
    workspaces: Vec<&'a str>,
    minutes: Vec<DateTime<Utc>>,
    methods: Vec<&'a str>,
    routes: Vec<&'a str>,
    statuses: Vec<i16>,
    requests: Vec<i64>,
    slow: Vec<i64>,
    bucket_workspaces: Vec<&'a str>,
    bucket_minutes: Vec<DateTime<Utc>>,
    bucket_methods: Vec<&'a str>,
    bucket_routes: Vec<&'a str>,
    bucket_statuses: Vec<i16>,
    bucket_bounds: Vec<f64>,
    bucket_counts: Vec<i64>,
}

impl<'a> CellRows<'a> {
    fn push_cell(&mut self, cell: &'a proto::analytics::v1::UsageCell, minute: DateTime<Utc>) {
        let status = cell.status as i16;
        self.workspaces.push(&cell.workspace_id);
        self.minutes.push(minute);
        self.methods.push(&cell.method);
        self.routes.push(&cell.route);
        self.statuses.push(status);
        self.requests.push(cell.requests);
        self.slow.push(cell.slow);
        for bucket in &cell.latency {
            self.bucket_workspaces.push(&cell.workspace_id);
            self.bucket_minutes.push(minute);
            self.bucket_methods.push(&cell.method);
            self.bucket_routes.push(&cell.route);
            self.bucket_statuses.push(status);
            self.bucket_bounds.push(bucket.le_ms);
            self.bucket_counts.push(bucket.count);
        }
    }
}

async fn write_slow(tx: &mut PgConnection, report: &RecordApiUsageRequest) -> Result<(), RecordError> {
    if report.slow.is_empty() {
        return Ok(());
    }
    let mut at = Vec::new();
    for slow in &report.slow {
        at.push(minute_of(slow.at.as_ref(), "slow.at")?);
    }
    let column = |f: fn(&proto::analytics::v1::SlowRequest) -> &str| report.slow.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO slow_requests (workspace_id, at, method, route, status, duration_ms, request_id)
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::smallint[], $6::float8[], $7::text[])",
    )
    .bind(column(|s| &s.workspace_id))
    .bind(at)
    .bind(column(|s| &s.method))
    .bind(column(|s| &s.route))
    .bind(report.slow.iter().map(|s| s.status as i16).collect::<Vec<_>>())
    .bind(report.slow.iter().map(|s| s.duration_ms).collect::<Vec<_>>())
    .bind(column(|s| &s.request_id))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn write_readiness(tx: &mut PgConnection, report: &RecordApiUsageRequest) -> Result<(), RecordError> {
    if report.readiness.is_empty() {
        return Ok(());
    }
    let mut minutes = Vec::new();
    for sample in &report.readiness {
        minutes.push(minute_of(sample.minute.as_ref(), "readiness.minute")?);
    }
    sqlx::query(
        "INSERT INTO readiness (minute, component, checks, passed)
         SELECT date_trunc('minute', minute), component, sum(checks), sum(passed)
         FROM unnest($1::timestamptz[], $2::text[], $3::bigint[], $4::bigint[]) AS r(minute, component, checks, passed)
         GROUP BY 1, 2
         ON CONFLICT (minute, component) DO UPDATE
         SET checks = readiness.checks + excluded.checks, passed = readiness.passed + excluded.passed",
    )
    .bind(minutes)
    .bind(
        report
            .readiness
            .iter()
            .map(|r| r.component.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(report.readiness.iter().map(|r| r.checks).collect::<Vec<_>>())
    .bind(report.readiness.iter().map(|r| r.passed).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
