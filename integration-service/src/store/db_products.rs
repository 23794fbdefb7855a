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

    /// Whether going from `before` (`None`: never seen) to `self` crosses
    /// a line to announce: `Some(true)` out of stock, `Some(false)` low.
    /// A product seen for the first time crossed no line the platform knew
    /// of, and one that recovers announces nothing.
    pub fn crossed_from(self, before: Option<Self>) -> Option<bool> {
        match (before?, self) {
            (was, now) if was == now => None,
            (_, Self::Out) => Some(true),
            (Self::InStock, Self::Low) => Some(false),
            _ => None,
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
    /// Whether its ids are due to be read whole, to find deleted rows.
    pub sweep_due: bool,
}

/// Takes the connected databases with a product mapping whose next read
/// is due, up to `limit`, each for `lease`: another replica takes it only
/// once the lease has run out (the reader records the real next read when
/// it is done).
pub async fn due<'e>(db: impl PgExecutor<'e>, limit: i64, lease: std::time::Duration) -> Result<Vec<DueSource>> {
    Ok(sqlx::query_as(
        "WITH due AS (
             SELECT i.id, i.workspace_id FROM integrations i LEFT JOIN db_sources s ON s.integration_id = i.id
             WHERE i.kind IN ('postgres', 'mysql') AND i.status = 'connected'
               AND jsonb_typeof(i.settings -> 'products') = 'object'
               AND coalesce(s.next_poll_at, '-infinity') <= now()
             ORDER BY s.next_poll_at NULLS FIRST LIMIT $1),
         taken AS (
             INSERT INTO db_sources (integration_id, next_poll_at)
             SELECT id, now() + $2::interval FROM due
             ON CONFLICT (integration_id) DO UPDATE SET next_poll_at = EXCLUDED.next_poll_at
                 WHERE db_sources.next_poll_at <= now()
             RETURNING integration_id, cursor_changed, cursor_id, next_sweep_at <= now() AS sweep_due)
         SELECT d.workspace_id, t.integration_id, t.cursor_changed, t.cursor_id, t.sweep_due
         FROM taken t JOIN due d ON d.id = t.integration_id",
    )
    .bind(limit)
    .bind(lease)
    .fetch_all(db)
    .await?)
}

/// Locks the connection's stored products among `external_ids` until the
/// transaction ends, so the states a page replaces are the ones an
/// inventory webhook committed just before, never an older snapshot. Rows
/// are locked in byte order of their ids, as webhooks apply their changes,
/// so the two never wait on each other in a cycle.
pub async fn lock(conn: &mut PgConnection, integration_id: &str, external_ids: &[&str]) -> Result<()> {
    sqlx::query(
        "SELECT 1 FROM db_products WHERE integration_id = $1 AND external_id = ANY($2)
         ORDER BY external_id COLLATE \"C\" FOR UPDATE",
    )
    .bind(integration_id)
    .bind(external_ids)
    .execute(conn)
    .await?;
    Ok(())
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
             read_at = now(), stock_at = NULL, deleted_at = NULL,
             -- A row touched without a change a bot would read is not sent again.
             knowledge_version = db_products.knowledge_version
                 + (ROW(db_products.title, db_products.description, db_products.price, db_products.stock)
                    IS DISTINCT FROM ROW(EXCLUDED.title, EXCLUDED.description, EXCLUDED.price, EXCLUDED.stock)
                    OR db_products.deleted_at IS NOT NULL)::int
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

/// A stored product after a stock change sent by webhook.
#[derive(Debug, sqlx::FromRow)]
pub struct StockReplaced {
    pub title: String,
    pub price: Option<String>,
    /// Its stock state before.
    pub before: String,
}

impl StockReplaced {
    pub fn before(&self) -> StockState {
        StockState::parse(&self.before)
    }
}

/// Sets a stored product's stock as of `at`, unless a newer webhook set it
/// already; `None` when the product is unknown or the change is stale.
/// The row is locked first, so the state it had is the one replaced.
pub async fn set_stock(
    conn: &mut PgConnection,
    integration_id: &str,
    external_id: &str,
    (stock, state): (i64, StockState),
    at: DateTime<Utc>,
) -> Result<Option<StockReplaced>> {
    let before: Option<String> = sqlx::query_scalar(
        "SELECT stock_state FROM db_products WHERE integration_id = $1 AND external_id = $2
           AND deleted_at IS NULL AND (stock_at IS NULL OR stock_at <= $3) FOR UPDATE",
    )
    .bind(integration_id)
    .bind(external_id)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(before) = before else {
        return Ok(None);
    };
    Ok(sqlx::query_as(
        "UPDATE db_products SET stock = $3, stock_state = $4, stock_at = $5,
             knowledge_version = knowledge_version + (stock IS DISTINCT FROM $3)::int
         WHERE integration_id = $1 AND external_id = $2
         RETURNING title, price, $6::text AS before",
    )
    .bind(integration_id)
    .bind(external_id)
    .bind(stock)
    .bind(state.as_str())
    .bind(at)
    .bind(before)
    .fetch_optional(conn)
    .await?)
}

/// Which of `external_ids` the connection has stored.
pub async fn known<'e>(db: impl PgExecutor<'e>, integration_id: &str, external_ids: &[String]) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT external_id FROM db_products WHERE integration_id = $1 AND external_id = ANY($2) AND deleted_at IS NULL")
            .bind(integration_id)
            .bind(external_ids)
            .fetch_all(db)
            .await?,
    )
}

/// Takes an inventory webhook's id; false when it was taken before.
pub async fn take_delivery(conn: &mut PgConnection, integration_id: &str, webhook_id: &str) -> Result<bool> {
    sqlx::query("DELETE FROM db_inventory_deliveries WHERE received_at < now() - interval '1 day'")
        .execute(&mut *conn)
        .await?;
    let taken = sqlx::query(
        "INSERT INTO db_inventory_deliveries (integration_id, webhook_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(integration_id)
    .bind(webhook_id)
    .execute(conn)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Marks deleted the connection's products read before `since` whose ids
/// are not among `present` (every id its database holds now); how many.
pub async fn mark_gone(
    conn: &mut PgConnection,
    integration_id: &str,
    present: &[String],
    since: DateTime<Utc>,
) -> Result<u64> {
    let gone = sqlx::query(
        "UPDATE db_products SET deleted_at = now(), knowledge_version = knowledge_version + 1
         WHERE integration_id = $1 AND deleted_at IS NULL AND read_at < $3 AND NOT (external_id = ANY($2))",
    )
    .bind(integration_id)
    .bind(present)
    .bind(since)
    .execute(conn)
    .await?;
    Ok(gone.rows_affected())
}

/// Reads the connection's changed rows, and then its ids whole, at once
/// (a sync was asked for).
pub async fn poll_now(conn: &mut PgConnection, integration_id: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO db_sources (integration_id, next_poll_at, next_sweep_at) VALUES ($1, now(), now())
         ON CONFLICT (integration_id) DO UPDATE SET next_poll_at = now(), next_sweep_at = now()",
    )
    .bind(integration_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// When the connection's ids are next read whole.
pub async fn sweep_next(conn: &mut PgConnection, integration_id: &str, at: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE db_sources SET next_sweep_at = $2 WHERE integration_id = $1")
        .bind(integration_id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
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

/// The workspace's products, over its connected databases, whose title
/// contains every word (`patterns`: LIKE patterns, already escaped).
pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    patterns: &[String],
    limit: i64,
) -> Result<Vec<DbProductView>> {
    Ok(sqlx::query_as(
        "SELECT p.external_id, p.title, p.description, p.price, p.stock FROM db_products p
         WHERE p.workspace_id = $1 AND p.deleted_at IS NULL AND p.title ILIKE ALL ($2)
           AND EXISTS (SELECT 1 FROM integrations i WHERE i.id = p.integration_id AND i.status <> 'disconnected')
         ORDER BY p.title, p.external_id LIMIT $3",
    )
    .bind(workspace_id)
    .bind(patterns)
    .bind(limit)
    .fetch_all(db)
    .await?)
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
         WHERE workspace_id = $1 AND integration_id = $2 AND external_id > $3 AND deleted_at IS NULL
         ORDER BY external_id LIMIT $4",
    )
    .bind(workspace_id)
    .bind(integration_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// A product whose knowledge item is behind, with the version it is at.
#[derive(Debug, sqlx::FromRow)]
pub struct Pending {
    #[sqlx(flatten)]
    pub view: DbProductView,
    pub knowledge_version: i64,
    /// Gone from the workspace's database: its item is removed.
    pub deleted: bool,
}

/// Connections with products whose knowledge items are behind.
pub async fn connections_behind<'e>(db: impl PgExecutor<'e>, limit: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT integration_id FROM db_products WHERE knowledge_version > knowledge_synced LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Up to `limit` of the connection's products whose knowledge items are
/// behind.
pub async fn behind<'e>(db: impl PgExecutor<'e>, integration_id: &str, limit: i64) -> Result<Vec<Pending>> {
    Ok(sqlx::query_as(
        "SELECT external_id, title, description, price, stock, knowledge_version, deleted_at IS NOT NULL AS deleted
         FROM db_products
         WHERE integration_id = $1 AND knowledge_version > knowledge_synced
         ORDER BY external_id LIMIT $2",
    )
    .bind(integration_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Records that the products' knowledge items reflect these versions.
pub async fn knowledge_sent<'e>(db: impl PgExecutor<'e>, integration_id: &str, sent: &[(String, i64)]) -> Result<()> {
    sqlx::query(
        "UPDATE db_products p SET knowledge_synced = greatest(p.knowledge_synced, s.version)
         FROM UNNEST($2::text[], $3::bigint[]) AS s(external_id, version)
         WHERE p.integration_id = $1 AND p.external_id = s.external_id",
    )
    .bind(integration_id)
    .bind(sent.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
    .bind(sent.iter().map(|(_, v)| *v).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(())
}

/// Makes every product of the connection due to be sent again (a bot was
/// linked).
pub async fn resend_all(conn: &mut PgConnection, integration_id: &str) -> Result<()> {
    sqlx::query("UPDATE db_products SET knowledge_version = knowledge_version + 1 WHERE integration_id = $1")
        .bind(integration_id)
        .execute(conn)
        .await?;
    Ok(())
}
