//! AnalyticsService: each RPC checks its request and reads its report.

use proto::analytics::v1::{
    ApiUsage, BotStats, ConversationBucket, ConversationCounts, ConversationGroup, ConversationStats,
    GetApiUsageRequest, GetBotStatsRequest, GetRequestMetricsRequest, GetStatsRequest, MessageBucket, MessageCounts,
    MessageGroup, MessageStats, RecordApiUsageRequest, RecordApiUsageResponse, RequestMetrics,
    analytics_service_server::AnalyticsService,
};
use service_runtime::window::Window;
use service_runtime::{
    database::internal_error, field_error::invalid_argument, pagination::page_limit, principal::Principal,
    time::timestamp,
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    api_usage::{
        record::{self, RecordError},
        report::{self, RoutePage},
    },
    bot_stats,
    bots::Bots,
    calendar::Calendar,
    metric,
    series::{self, Counts, Page, Query, Series},
};

pub struct Analytics {
    pool: PgPool,
    bots: Bots,
}

impl Analytics {
    pub fn new(pool: PgPool, bots: Bots) -> Self {
        Self { pool, bots }
    }

    async fn series(
        &self,
        workspace_id: &str,
        metrics: [&'static str; 3],
        req: &GetStatsRequest,
    ) -> Result<(Window, Calendar, Series), Status> {
        let window = Window::of(req.since.as_ref(), req.until.as_ref())?;
        let calendar = Calendar::of(&self.pool, &req.time_zone, &req.bucket).await?;
        let page = Page::of(req.limit, &req.cursor)?;
        let query = Query {
            workspace_id,
            metrics,
            window,
            bot_id: &req.bot_id,
            channel: &req.channel,
        };
        let series = series::read(&self.pool, &query, &calendar, &page)
            .await
            .map_err(internal_error)?;
        Ok((window, calendar, series))
    }
}

fn conversation_counts(n: Counts) -> Option<ConversationCounts> {
    Some(ConversationCounts {
        started: n[0],
        ended: n[1],
        handed_off: n[2],
    })
}

fn message_counts(n: Counts) -> Option<MessageCounts> {
    Some(MessageCounts {
        received: n[0],
        sent: n[1],
        failed: n[2],
    })
}

#[tonic::async_trait]
impl AnalyticsService for Analytics {
    async fn get_request_metrics(
        &self,
        request: Request<GetRequestMetricsRequest>,
    ) -> Result<Response<RequestMetrics>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let window = Window::of(req.since.as_ref(), req.until.as_ref())?;
        let (total, errors): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(sum(requests), 0)::bigint, COALESCE(sum(requests) FILTER (WHERE status >= 400), 0)::bigint
             FROM api_requests WHERE workspace_id = $1 AND minute >= $2 AND minute < $3",
        )
        .bind(&principal.workspace_id)
        .bind(window.since)
        .bind(window.until)
        .fetch_one(&self.pool)
        .await
        .map_err(internal_error)?;
        Ok(Response::new(RequestMetrics {
            since: Some(timestamp(window.since)),
            until: Some(timestamp(window.until)),
            total_requests: total,
            error_requests: errors,
        }))
    }

    async fn get_conversation_stats(
        &self,
        request: Request<GetStatsRequest>,
    ) -> Result<Response<ConversationStats>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let (window, calendar, series) = self
            .series(&principal.workspace_id, metric::CONVERSATION_METRICS, &req)
            .await?;
        Ok(Response::new(ConversationStats {
            since: Some(timestamp(window.since)),
            until: Some(timestamp(window.until)),
            time_zone: calendar.time_zone,
            bucket: calendar.bucket.name().into(),
            total: conversation_counts(series.total),
            buckets: series
                .buckets
                .into_iter()
                .map(|(start, n)| ConversationBucket {
                    start: Some(timestamp(start)),
                    counts: conversation_counts(n),
                })
                .collect(),
            next_cursor: series.next_cursor,
            by_bot_and_channel: series
                .groups
                .into_iter()
                .map(|(bot_id, channel, n)| ConversationGroup {
                    bot_id,
                    channel,
                    counts: conversation_counts(n),
                })
                .collect(),
        }))
    }

    async fn get_message_stats(&self, request: Request<GetStatsRequest>) -> Result<Response<MessageStats>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let (window, calendar, series) = self
            .series(&principal.workspace_id, metric::MESSAGE_METRICS, &req)
            .await?;
        Ok(Response::new(MessageStats {
            since: Some(timestamp(window.since)),
            until: Some(timestamp(window.until)),
            time_zone: calendar.time_zone,
            bucket: calendar.bucket.name().into(),
            total: message_counts(series.total),
            buckets: series
                .buckets
                .into_iter()
                .map(|(start, n)| MessageBucket {
                    start: Some(timestamp(start)),
                    counts: message_counts(n),
                })
                .collect(),
            next_cursor: series.next_cursor,
            by_bot_and_channel: series
                .groups
                .into_iter()
                .map(|(bot_id, channel, n)| MessageGroup {
                    bot_id,
                    channel,
                    counts: message_counts(n),
                })
                .collect(),
        }))
    }

    async fn get_bot_stats(&self, request: Request<GetBotStatsRequest>) -> Result<Response<BotStats>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let bot_id = ids::BotId::parse("bot_id", &req.bot_id).map_err(|e| match e {
            ids::IdError::Missing { .. } => invalid_argument("bot_id", "is required"),
            other => Status::not_found(other.to_string()),
        })?;
        let window = Window::of(req.since.as_ref(), req.until.as_ref())?;
        let top = match req.limit {
            0 => 10,
            n => page_limit(n)?,
        };
        self.bots.ensure(&principal.workspace_id, bot_id.as_str()).await?;
        let stats = bot_stats::read(&self.pool, &principal.workspace_id, bot_id.as_str(), window, top)
            .await
            .map_err(internal_error)?;
        Ok(Response::new(stats))
    }

    async fn get_api_usage(&self, request: Request<GetApiUsageRequest>) -> Result<Response<ApiUsage>, Status> {
        let principal = Principal::of(&request)?;
        self.api_usage(Some(&principal.workspace_id), &request.into_inner())
            .await
    }

    async fn get_platform_api_usage(&self, request: Request<GetApiUsageRequest>) -> Result<Response<ApiUsage>, Status> {
        self.api_usage(None, &request.into_inner()).await
    }

    async fn record_api_usage(
        &self,
        request: Request<RecordApiUsageRequest>,
    ) -> Result<Response<RecordApiUsageResponse>, Status> {
        match record::apply(&self.pool, request.into_inner()).await {
            Ok(applied) => Ok(Response::new(RecordApiUsageResponse { applied })),
            Err(RecordError::Invalid(status)) => Err(status),
            Err(RecordError::Database(error)) => Err(internal_error(error)),
        }
    }
}

impl Analytics {
    async fn api_usage(
        &self,
        workspace_id: Option<&str>,
        req: &GetApiUsageRequest,
    ) -> Result<Response<ApiUsage>, Status> {
        let window = Window::of(req.since.as_ref(), req.until.as_ref())?;
        let page = RoutePage::of(req.limit, &req.cursor)?;
        let usage = report::read(&self.pool, workspace_id, window, &page)
            .await
            .map_err(internal_error)?;
        Ok(Response::new(usage))
    }
}
