//! A store's catalog as the platform last heard of it: the
//! `shopify_products`, `shopify_variants` and `shopify_inventory_levels`
//! tables. Every write is guarded by when Shopify produced the news, so a
//! stale retry arriving late never overwrites newer data, and a deleted
//! product stays deleted.

use chrono::{DateTime, Utc};
use serde::Serialize;
use service_runtime::error::ServiceError;
use sqlx::{PgConnection, PgExecutor};

use crate::kinds::shopify::payloads::{InventoryLevel, Product, price};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Where a change came from: the connection and when Shopify produced it.
pub struct Source<'a> {
    pub workspace_id: &'a str,
    pub integration_id: &'a str,
    pub triggered_at: DateTime<Utc>,
}

/// What storing news of a row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Newer news is stored: nothing was written.
    Stale,
    /// The row is new (or was deleted and is back).
    Created,
    Updated,
    /// Its date moved on; what it holds did not change.
    Unchanged,
}

impl Stored {
    /// Reads the `existed, was_deleted, old_hash` an upsert returned (no
    /// row: the guard found newer news).
    pub(crate) fn from_returned(returned: Option<(bool, bool, Option<i64>)>, hash: i64) -> Self {
        match returned {
            None => Self::Stale,
            Some((false, _, _)) | Some((_, true, _)) => Self::Created,
            Some((true, false, old)) if old == Some(hash) => Self::Unchanged,
            Some(_) => Self::Updated,
        }
    }

    pub fn written(self) -> bool {
        self != Self::Stale
    }
}

/// Stores the product and its variants unless newer news of it is stored.
/// A product whose content changed is due to be sent to its bots again.
/// `reconciled_at`: the sync snapshot that saw it, if a sync is storing it.
pub async fn upsert_product(
    conn: &mut PgConnection,
    source: &Source<'_>,
    product: &Product,
    reconciled_at: Option<DateTime<Utc>>,
) -> Result<Stored> {
    let hash = product.fingerprint();
    let returned: Option<(bool, bool, Option<i64>)> = sqlx::query_as(
        "WITH old AS (SELECT deleted_at, content_hash FROM shopify_products
                      WHERE integration_id = $1 AND product_id = $2)
         INSERT INTO shopify_products
             (integration_id, product_id, workspace_id, title, description, handle, status, updated_at,
              triggered_at, content_hash, reconciled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (integration_id, product_id) DO UPDATE SET
             title = EXCLUDED.title, description = EXCLUDED.description, handle = EXCLUDED.handle,
             status = EXCLUDED.status, updated_at = EXCLUDED.updated_at,
             triggered_at = EXCLUDED.triggered_at, deleted_at = NULL, content_hash = EXCLUDED.content_hash,
             reconciled_at = coalesce(EXCLUDED.reconciled_at, shopify_products.reconciled_at),
             knowledge_version = shopify_products.knowledge_version
                 + (shopify_products.deleted_at IS NOT NULL
                    OR shopify_products.content_hash IS DISTINCT FROM EXCLUDED.content_hash)::int
         WHERE shopify_products.triggered_at < EXCLUDED.triggered_at
         RETURNING EXISTS (SELECT 1 FROM old), coalesce((SELECT deleted_at IS NOT NULL FROM old), false),
                   (SELECT content_hash FROM old)",
    )
    .bind(source.integration_id)
    .bind(product.id)
    .bind(source.workspace_id)
    .bind(&product.title)
    .bind(product.description())
    .bind(&product.handle)
    .bind(&product.status)
    .bind(product.updated_at)
    .bind(source.triggered_at)
    .bind(hash)
    .bind(reconciled_at)
    .fetch_optional(&mut *conn)
    .await?;
    let stored = Stored::from_returned(returned, hash);
    if matches!(stored, Stored::Created | Stored::Updated) {
        replace_variants(conn, source.integration_id, product).await?;
    }
    Ok(stored)
}

async fn replace_variants(conn: &mut PgConnection, integration_id: &str, product: &Product) -> Result<()> {
    sqlx::query("DELETE FROM shopify_variants WHERE integration_id = $1 AND product_id = $2")
        .bind(integration_id)
        .bind(product.id)
        .execute(&mut *conn)
        .await?;
    let variants = &product.variants;
    sqlx::query(
        "INSERT INTO shopify_variants
             (integration_id, product_id, variant_id, title, sku, price, inventory_item_id, inventory_quantity)
         SELECT $1, $2, * FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[])
         ON CONFLICT (integration_id, variant_id) DO NOTHING",
    )
    .bind(integration_id)
    .bind(product.id)
    .bind(variants.iter().map(|v| v.id).collect::<Vec<_>>())
    .bind(variants.iter().map(|v| v.title.clone()).collect::<Vec<_>>())
    .bind(
        variants
            .iter()
            .map(|v| v.sku.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
    )
    .bind(variants.iter().map(|v| price(&v.price)).collect::<Vec<_>>())
    .bind(variants.iter().map(|v| v.inventory_item_id).collect::<Vec<_>>())
    .bind(variants.iter().map(|v| v.inventory_quantity).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the product deleted unless newer news of it is stored; whether it
/// was marked.
pub async fn delete_product(conn: &mut PgConnection, source: &Source<'_>, product_id: i64) -> Result<bool> {
    let marked = sqlx::query(
        "INSERT INTO shopify_products
             (integration_id, product_id, workspace_id, title, description, handle, status, triggered_at, deleted_at)
         VALUES ($1, $2, $3, '', '', '', '', $4, $4)
         ON CONFLICT (integration_id, product_id) DO UPDATE SET
             triggered_at = EXCLUDED.triggered_at, deleted_at = EXCLUDED.deleted_at,
             knowledge_version = shopify_products.knowledge_version + 1
         WHERE shopify_products.triggered_at < EXCLUDED.triggered_at",
    )
    .bind(source.integration_id)
    .bind(product_id)
    .bind(source.workspace_id)
    .bind(source.triggered_at)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if marked {
        sqlx::query("DELETE FROM shopify_variants WHERE integration_id = $1 AND product_id = $2")
            .bind(source.integration_id)
            .bind(product_id)
            .execute(conn)
            .await?;
    }
    Ok(marked)
}

/// A sync read these items' totals as of `snapshot`: per-location counts
/// older than that are superseded, and the products holding the items
/// show the totals read.
pub async fn settle_stock(
    conn: &mut PgConnection,
    integration_id: &str,
    item_ids: &[i64],
    snapshot: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "WITH superseded AS (
             DELETE FROM shopify_inventory_levels
             WHERE integration_id = $1 AND inventory_item_id = ANY($2) AND updated_at < $3
             RETURNING inventory_item_id)
         UPDATE shopify_products SET knowledge_version = knowledge_version + 1
         WHERE integration_id = $1 AND product_id IN (
             SELECT v.product_id FROM shopify_variants v JOIN superseded s
                 ON v.integration_id = $1 AND v.inventory_item_id = s.inventory_item_id)",
    )
    .bind(integration_id)
    .bind(item_ids)
    .bind(snapshot)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks deleted the products a complete sync as of `snapshot` did not see
/// and nothing newer mentions; how many.
pub async fn remove_unseen(conn: &mut PgConnection, integration_id: &str, snapshot: DateTime<Utc>) -> Result<u64> {
    let removed: Vec<i64> = sqlx::query_scalar(
        "UPDATE shopify_products
         SET deleted_at = $2, triggered_at = $2, knowledge_version = knowledge_version + 1
         WHERE integration_id = $1 AND deleted_at IS NULL AND triggered_at < $2
           AND (reconciled_at IS NULL OR reconciled_at < $2)
         RETURNING product_id",
    )
    .bind(integration_id)
    .bind(snapshot)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM shopify_variants WHERE integration_id = $1 AND product_id = ANY($2)")
        .bind(integration_id)
        .bind(&removed)
        .execute(conn)
        .await?;
    Ok(removed.len() as u64)
}

/// Stores a location's stock of an item unless a newer count is stored;
/// the product it belongs to, if one is known, has changed.
pub async fn set_inventory_level(conn: &mut PgConnection, integration_id: &str, level: &InventoryLevel) -> Result<()> {
    let stored = sqlx::query(
        "INSERT INTO shopify_inventory_levels (integration_id, inventory_item_id, location_id, available, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (integration_id, inventory_item_id, location_id) DO UPDATE SET
             available = EXCLUDED.available, updated_at = EXCLUDED.updated_at
         WHERE shopify_inventory_levels.updated_at < EXCLUDED.updated_at",
    )
    .bind(integration_id)
    .bind(level.inventory_item_id)
    .bind(level.location_id)
    .bind(level.available)
    .bind(level.updated_at)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !stored {
        return Ok(());
    }
    sqlx::query(
        "UPDATE shopify_products SET knowledge_version = knowledge_version + 1
         WHERE integration_id = $1 AND product_id IN (
             SELECT product_id FROM shopify_variants WHERE integration_id = $1 AND inventory_item_id = $2)",
    )
    .bind(integration_id)
    .bind(level.inventory_item_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A product as a bot and the API see it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, PartialEq)]
pub struct ProductView {
    pub product_id: i64,
    pub title: String,
    pub description: String,
    pub handle: String,
    pub status: String,
    /// The cheapest and dearest variant, as Shopify writes prices.
    pub price_min: Option<String>,
    pub price_max: Option<String>,
    /// Units available over every variant and location, when Shopify
    /// tracks them.
    pub stock: Option<i64>,
    pub deleted: bool,
}

/// Stock of a variant: its levels over every location when any were
/// reported, else the quantity its product last carried.
const PRODUCT_VIEW: &str = "
    SELECT p.product_id, p.title, p.description, p.handle, p.status,
           min(v.price::numeric)::text AS price_min, max(v.price::numeric)::text AS price_max,
           sum(coalesce(l.available, v.inventory_quantity))::bigint AS stock,
           p.deleted_at IS NOT NULL AS deleted
    FROM shopify_products p
    LEFT JOIN shopify_variants v ON v.integration_id = p.integration_id AND v.product_id = p.product_id
    LEFT JOIN LATERAL (
        SELECT sum(available) AS available FROM shopify_inventory_levels l
        WHERE l.integration_id = v.integration_id AND l.inventory_item_id = v.inventory_item_id
    ) l ON true";

/// The products of a connection after `after`, by id, deleted ones left out.
pub async fn list_products<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    integration_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<ProductView>> {
    Ok(sqlx::query_as(&format!(
        "{PRODUCT_VIEW}
         WHERE p.workspace_id = $1 AND p.integration_id = $2 AND p.product_id > $3 AND p.deleted_at IS NULL
         GROUP BY p.integration_id, p.product_id
         ORDER BY p.product_id
         LIMIT $4"
    ))
    .bind(workspace_id)
    .bind(integration_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Active products of the workspace's connected stores whose title holds
/// every word, as LIKE patterns (`%word%`, wildcards escaped).
pub async fn find_products<'e>(
    db: impl PgExecutor<'e>,
    workspace_id: &str,
    patterns: &[String],
    limit: i64,
) -> Result<Vec<ProductView>> {
    Ok(sqlx::query_as(&format!(
        "{PRODUCT_VIEW}
         WHERE p.workspace_id = $1 AND p.deleted_at IS NULL AND p.status = 'active' AND p.title ILIKE ALL ($2)
           AND EXISTS (SELECT 1 FROM integrations i WHERE i.id = p.integration_id AND i.status <> 'disconnected')
         GROUP BY p.integration_id, p.product_id
         ORDER BY p.title, p.product_id
         LIMIT $3"
    ))
    .bind(workspace_id)
    .bind(patterns)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// A LIKE pattern matching any text that contains `word`, and nothing
/// wider: its wildcards are escaped.
pub fn containing(word: &str) -> String {
    format!("%{}%", like_escaped(word))
}

/// `text` matching itself in a LIKE pattern.
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// A product whose knowledge item is behind, with the version it is at.
#[derive(Debug, sqlx::FromRow)]
pub struct Pending {
    #[sqlx(flatten)]
    pub view: ProductView,
    pub knowledge_version: i64,
}

/// Connections with products whose knowledge items are behind.
pub async fn connections_behind<'e>(db: impl PgExecutor<'e>, limit: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT integration_id FROM shopify_products
         WHERE knowledge_version > knowledge_synced LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Up to `limit` of the connection's products whose knowledge items are
/// behind, deleted ones included.
pub async fn behind<'e>(db: impl PgExecutor<'e>, integration_id: &str, limit: i64) -> Result<Vec<Pending>> {
    Ok(sqlx::query_as(&format!(
        "SELECT v.*, p.knowledge_version FROM ({PRODUCT_VIEW}
             WHERE p.integration_id = $1 AND p.knowledge_version > p.knowledge_synced
             GROUP BY p.integration_id, p.product_id
             ORDER BY p.product_id LIMIT $2) v
         JOIN shopify_products p ON p.integration_id = $1 AND p.product_id = v.product_id"
    ))
    .bind(integration_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Records that the products' knowledge items reflect these versions.
pub async fn knowledge_sent<'e>(db: impl PgExecutor<'e>, integration_id: &str, sent: &[(i64, i64)]) -> Result<()> {
    sqlx::query(
        "UPDATE shopify_products p SET knowledge_synced = greatest(p.knowledge_synced, s.version)
         FROM UNNEST($2::bigint[], $3::bigint[]) AS s(product_id, version)
         WHERE p.integration_id = $1 AND p.product_id = s.product_id",
    )
    .bind(integration_id)
    .bind(sent.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(sent.iter().map(|(_, v)| *v).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(())
}

/// Makes every product of the connection due to be sent again (a bot was
/// linked).
pub async fn resend_all(conn: &mut PgConnection, integration_id: &str) -> Result<()> {
    sqlx::query("UPDATE shopify_products SET knowledge_version = knowledge_version + 1 WHERE integration_id = $1")
        .bind(integration_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets a connection's catalog (`shop/redact`).
pub async fn forget(conn: &mut PgConnection, integration_id: &str) -> Result<()> {
    let tables = ["shopify_inventory_levels", "shopify_variants", "shopify_products"];
    super::forget(conn, &tables, integration_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_matches_its_own_text_and_no_wildcard() {
        assert_eq!(like_escaped("50% off_now\\"), "50\\% off\\_now\\\\");
    }
}
