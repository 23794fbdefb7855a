//! The `db_products` and `db_sources` tables: products read from a
//! workspace's own database, and where reading each database stands.

use chrono::{DateTime, Utc};
use serde::Serialize;
use service_runtime::error::ServiceError;
use sqlx::{PgConnection, PgExecutor};

use crate::kinds::database::SourceProduct;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Where a product's stock stands against the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockState {
    InStock,
    Low,
    Out,
}

impl StockState {
    pub fn of(stock: Option<i64>, threshold: i64) -> Self {
        match stock {
            Some(n) if n <= 0 => Self::Out,
            Some(n) if n < threshold => Self::Low,
            _ => Self::InStock,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::InStock => "in_stock",
            Self::Low => "low",
            Self::Out => "out",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "low" => Self::Low,
            "out" => Self::Out,
            _ => Self::InStock,
        }
    }
}

/// A database connection due to be read, with its cursor.
#[derive(Debug, sqlx::FromRow)]
pub struct DueSource {
    pub workspace_id: String,
    pub integration_id: String,
    pub cursor_changed: String,
    pub cursor_id: String,
}

/// Connected databases with a product mapping whose next read is due.
pub async fn due<'e>(db: impl PgExecutor<'e>, limit: i64) -> Result<Vec<DueSource>> {
    Ok(sqlx::query_as(
        "SELECT i.workspace_id, i.id AS integration_id,
                coalesce(s.cursor_changed, '') AS cursor_changed, coalesce(s.cursor_id, '') AS cursor_id
         FROM integrations i LEFT JOIN db_sources s ON s.integration_id = i.id
         WHERE i.kind IN ('postgres', 'mysql') AND i.status = 'connected'
           AND jsonb_typeof(i.settings -> 'products') = 'object'
           AND coalesce(s.next_poll_at, '-infinity') <= now()
         ORDER BY s.next_poll_at NULLS FIRST LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Stores a product as read; the stock state it had before (`None`: new).
pub async fn upsert(
    conn: &mut PgConnection,
    workspace_id: &str,
    integration_id: &str,
    product: &SourceProduct,
    state: StockState,
) -> Result<Option<StockState>> {
    let before: Option<Option<String>> = sqlx::query_scalar(
        "WITH old AS (SELECT stock_state FROM db_products WHERE integration_id = $1 AND external_id = $2)
         INSERT INTO db_products
             (integration_id, external_id, workspace_id, title, description, price, stock, stock_state, changed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (integration_id, external_id) DO UPDATE SET
             title = EXCLUDED.title, description = EXCLUDED.description, price = EXCLUDED.price,
             stock = EXCLUDED.stock, stock_state = EXCLUDED.stock_state, changed = EXCLUDED.changed,
             read_at = now()
         RETURNING (SELECT stock_state FROM old)",
    )
    .bind(integration_id)
    .bind(&product.id)
    .bind(workspace_id)
    .bind(&product.title)
    .bind(product.description.as_deref().unwrap_or_default())
    .bind(&product.price)
    .bind(product.stock)
    .bind(state.as_str())
    .bind(&product.changed)
    .fetch_optional(conn)
    .await?;
    Ok(before.flatten().map(|s| StockState::parse(&s)))
}

/// Records where reading stands and when to read next.
pub async fn advance(
    conn: &mut PgConnection,
    integration_id: &str,
    cursor: (&str, &str),
    next_poll_at: DateTime<Utc>,
    error: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO db_sources (integration_id, cursor_changed, cursor_id, next_poll_at, last_error)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (integration_id) DO UPDATE SET cursor_changed = EXCLUDED.cursor_changed,
             cursor_id = EXCLUDED.cursor_id, next_poll_at = EXCLUDED.next_poll_at, last_error = EXCLUDED.last_error",
    )
    .bind(integration_id)
    .bind(cursor.0)
    .bind(cursor.1)
    .bind(next_poll_at)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// A product as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DbProductView {
    pub external_id: String,
    pub title: String,
    pub description: String,
    pub price: Option<String>,
    pub stock: Option<i64>,
}

/// The connection's products after `after` (an external id), by id.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    integration_id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<DbProductView>> {
    Ok(sqlx::query_as(
        "SELECT external_id, title, description, price, stock FROM db_products
         WHERE workspace_id = $1 AND integration_id = $2 AND external_id > $3
         ORDER BY external_id LIMIT $4",
    )
    .bind(workspace_id)
    .bind(integration_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}
