//! A service's admin listener: `/metrics` in the Prometheus text format
//! and `/healthz`, apart from the gRPC port so scrapes and probes never
//! queue behind API calls.

use std::{future::Future, pin::Pin, sync::Arc};

use axum::{Router, extract::State, response::IntoResponse, routing::get};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    exposition::{Exposition, Kind},
    grpc_metrics::GrpcMetrics,
};

type Gauges = Arc<dyn Fn(PgPool) -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// What a scrape reports: the gRPC series, the database pool, and the
/// service's own gauges (read at scrape time, e.g. from its tables).
#[derive(Clone)]
pub struct Scrape {
    pub grpc: Arc<GrpcMetrics>,
    pub pool: PgPool,
    pub max_connections: u32,
    pub gauges: Option<Gauges>,
}

impl Scrape {
    pub fn new(grpc: Arc<GrpcMetrics>, pool: PgPool, max_connections: u32) -> Self {
        Self {
            grpc,
            pool,
            max_connections,
            gauges: None,
        }
    }

    /// Adds the service's own gauges.
    pub fn with_gauges<F, Fut>(mut self, gauges: F) -> Self
    where
        F: Fn(PgPool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = String> + Send + 'static,
    {
        self.gauges = Some(Arc::new(move |pool| Box::pin(gauges(pool))));
        self
    }

    async fn render(&self) -> String {
        let mut out = Exposition::default();
        self.grpc.write(&mut out);
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        out.family(
            "db_pool_connections",
            Kind::Gauge,
            "Open database connections, by whether a query holds them.",
        );
        out.sample("db_pool_connections", &[("state", "used")], size.saturating_sub(idle));
        out.sample("db_pool_connections", &[("state", "idle")], idle);
        out.single(
            "db_pool_max_connections",
            Kind::Gauge,
            "Most database connections the pool opens.",
            self.max_connections,
        );
        let mut text = out.into_string();
        if let Some(gauges) = &self.gauges {
            text.push_str(&gauges(self.pool.clone()).await);
        }
        text
    }
}

/// Serves the admin endpoints on `listener` until `shutdown`.
pub fn spawn(listener: TcpListener, scrape: Scrape, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Arc::new(scrape));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the admin listener stopped");
        }
    });
}

async fn metrics(State(scrape): State<Arc<Scrape>>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        scrape.render().await,
    )
}
