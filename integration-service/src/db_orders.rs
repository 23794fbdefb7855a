//! A customer's orders in the workspace's own databases, read when asked
//! (they are the customer's, and current there): each connected database
//! with an order mapping is asked with the customer's email bound, in a
//! read-only session from the connection's small pool (which bounds the
//! sessions held on it). A database that is down or slow costs its own
//! orders only: the answer comes from the others within a short budget.

use std::{sync::Arc, time::Duration};

use chrono::NaiveDateTime;
use proto::integration::v1::{Order, Tracking};
use service_runtime::error::ServiceError;
use sqlx::PgPool;

use crate::{
    kinds::{
        Connection, Reach,
        database::{self, Source, SourceOrder},
    },
    store::integrations,
    vault::Vault,
};

/// How long a lookup waits for any one database: the bot is answering.
const BUDGET: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct DatabaseOrders {
    pool: PgPool,
    vault: Vault,
    reach: Arc<Reach>,
}

impl DatabaseOrders {
    pub fn new(pool: PgPool, vault: Vault, reach: Arc<Reach>) -> Self {
        Self { pool, vault, reach }
    }

    /// The customer's latest orders in each of the workspace's databases,
    /// at most `limit` from each.
    pub async fn for_customer(&self, workspace_id: &str, email: &str, limit: i64) -> Result<Vec<Order>, ServiceError> {
        let sources = integrations::order_sources(&self.pool, workspace_id).await?;
        let lookups = sources.iter().map(|(row, sealed)| async move {
            let Connection::Database { settings, credentials } = self.vault.connection(row, sealed, workspace_id)?
            else {
                return Ok(Vec::new());
            };
            let database = Source {
                integration_id: row.id.as_str(),
                settings: &settings,
                password: &credentials.password,
            };
            let guard = (&self.reach.targets, self.reach.timeout.min(BUDGET));
            database::read_orders(&database, &self.reach.databases, guard, email, limit).await
        });
        let mut orders = Vec::new();
        for (read, (row, _)) in futures_util::future::join_all(lookups).await.into_iter().zip(&sources) {
            match read {
                Ok(rows) => orders.extend(rows.into_iter().map(order)),
                Err(error) => tracing::warn!(integration = %row.id, %error, "reading a customer's orders"),
            }
        }
        Ok(orders)
    }
}

/// A database's order as every service reads orders.
fn order(row: SourceOrder) -> Order {
    let id = row.id.unwrap_or_default();
    let created_at = row
        .created_at
        .as_deref()
        .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").ok())
        .map(|t| prost_types::Timestamp {
            seconds: t.and_utc().timestamp(),
            nanos: t.and_utc().timestamp_subsec_nanos() as i32,
        });
    Order {
        name: row.name.filter(|n| !n.is_empty()).unwrap_or_else(|| id.clone()),
        external_id: id,
        status: row.status.unwrap_or_default(),
        total_price: row.total.unwrap_or_default(),
        currency: row.currency.unwrap_or_default(),
        tracking: row
            .tracking_number
            .filter(|n| !n.is_empty())
            .map(|number| Tracking {
                number,
                ..Tracking::default()
            })
            .into_iter()
            .collect(),
        created_at,
        ..Order::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_as_an_order_named_by_its_id_when_it_has_no_name() {
        let row = SourceOrder {
            id: Some("1042".into()),
            name: None,
            status: Some("packed".into()),
            total: Some("19.90".into()),
            currency: Some("EUR".into()),
            tracking_number: Some("JD0001".into()),
            created_at: Some("2026-11-30T09:15:00.250000".into()),
        };
        let order = order(row);
        assert_eq!((order.name.as_str(), order.external_id.as_str()), ("1042", "1042"));
        assert_eq!(order.tracking[0].number, "JD0001");
        let at = order.created_at.unwrap();
        assert_eq!((at.seconds, at.nanos), (1_796_030_100, 250_000_000));
    }
}
