//! `GET /admin/v1/api-usage`: the API monitoring report across every
//! workspace, for the platform operator. Same query parameters and answer
//! as a workspace's `GET /api/v1/analytics/api-usage`.

use std::sync::Arc;

use axum::{
    extract::{Query, Request, State},
    response::{IntoResponse, Response},
};
use prost::Message;
use prost_reflect::DynamicMessage;
use proto::analytics::v1::{GetApiUsageRequest, analytics_service_client::AnalyticsServiceClient};
use serde::Deserialize;

use crate::{
    AppState,
    problem::{Problem, ProblemContext, ProblemResponse},
    transcode::response::{self, Format},
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    since: Option<String>,
    until: Option<String>,
    limit: Option<i32>,
    cursor: Option<String>,
}

pub async fn api_usage(
    State(state): State<Arc<AppState>>,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, ProblemResponse> {
    let ctx = ProblemContext::of_request(&request);
    let fail = |problem: Problem| ProblemResponse::new(problem, ctx.clone());
    let Query(query) = query.map_err(|e| fail(Problem::invalid_argument("query", e.body_text())))?;
    let message = GetApiUsageRequest {
        since: time("since", query.since.as_deref()).map_err(fail)?,
        until: time("until", query.until.as_deref()).map_err(fail)?,
        limit: query.limit.unwrap_or_default(),
        cursor: query.cursor.unwrap_or_default(),
    };
    let channel = state.analytics.clone().ok_or_else(|| {
        fail(Problem::from_status(&tonic::Status::unavailable(
            "no analytics upstream is configured",
        )))
    })?;
    let mut call = tonic::Request::new(message);
    call.set_timeout(state.config.upstream_timeout);
    let reply = AnalyticsServiceClient::new(channel)
        .get_platform_api_usage(call)
        .await
        .map_err(|status| fail(Problem::from_status(&status)))?
        .into_inner();
    let descriptor = state
        .descriptors
        .get_message_by_name("analytics.v1.ApiUsage")
        .ok_or_else(|| fail(Problem::internal()))?;
    let dynamic =
        DynamicMessage::decode(descriptor, reply.encode_to_vec().as_slice()).map_err(|_| fail(Problem::internal()))?;
    let body = response::render(&dynamic, "", Format::Json).map_err(|_| fail(Problem::internal()))?;
    Ok(([(http::header::CONTENT_TYPE, Format::Json.content_type())], body).into_response())
}

/// An RFC 3339 query parameter as a protobuf timestamp.
fn time(field: &str, text: Option<&str>) -> Result<Option<prost_types::Timestamp>, Problem> {
    let Some(text) = text else { return Ok(None) };
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|_| Problem::invalid_argument(field, "must be an RFC 3339 time such as 2026-12-01T00:00:00Z"))?;
    Ok(Some(service_runtime::time::timestamp(at.to_utc())))
}
