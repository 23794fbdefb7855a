//! A customer's orders in the workspace's own databases, read when asked
//! (they are the customer's, and current there): each connected database
//! with an order mapping is asked with the customer's email bound, in a
//! read-only session, at most a few sessions at once per connection. A
//! database that is down or slow costs its own orders only: the answer
//! comes from the others within a short budget.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::NaiveDateTime;
use proto::integration::v1::{Order, Tracking};
use service_runtime::error::ServiceError;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::{
    kinds::{
        Connection, Reach,
        database::{self, SourceOrder},
    },
    store::integrations,
    vault::Vault,
};

/// Sessions one connection may have open for lookups at once.
const SESSIONS_PER_CONNECTION: usize = 4;
/// How long a lookup waits for any one database: the bot is answering.
const BUDGET: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct DatabaseOrders {
    pool: PgPool,
    vault: Vault,
    reach: Arc<Reach>,
    sessions: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl DatabaseOrders {
    pub fn new(pool: PgPool, vault: Vault, reach: Arc<Reach>) -> Self {
        Self {
            pool,
            vault,
            reach,
            sessions: Arc::default(),
        }
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
            let _session = self.session(row.id.as_str()).acquire_owned().await;
            let reach = (&self.reach.targets, self.reach.timeout.min(BUDGET));
            database::read_orders(&settings, &credentials.password, reach, email, limit).await
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

    fn session(&self, integration_id: &str) -> Arc<Semaphore> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .entry(integration_id.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(SESSIONS_PER_CONNECTION)))
            .clone()
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
