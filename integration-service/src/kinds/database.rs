//! Reading a workspace's own PostgreSQL or MySQL/MariaDB database: the
//! connection attempt made before it is saved (which also tries each
//! mapping), its products and their ids, and a customer's orders. Every
//! statement runs in a read-only, time-limited session (`db_sessions`),
//! with every value the platform passes bound.

use std::time::Duration;

use outbound_http::TargetGuard;
use service_runtime::error::ServiceError;
use sqlx::Connection;

pub use super::database_settings::{DatabaseSettings, Engine};
use super::{
    db_sessions::{self, Pool, Pools},
    order_mapping::{OrderSource, QUERY_COLUMNS},
    product_mapping::ID_PAGE,
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Connects as `settings` say with `password`, runs one read-only
/// statement and each mapping's query once (so a wrong table, column or
/// written query is refused now, not at the first read), and disconnects.
/// A refusal by the database (or by the network before it) is
/// [`ServiceError::Unprocessable`] with its reason.
pub async fn try_connect(
    settings: &DatabaseSettings,
    password: &str,
    targets: &TargetGuard,
    timeout: Duration,
) -> Result<()> {
    let reach = Reach {
        settings,
        password,
        timeout,
        pool: None,
        targets,
    };
    reach.query::<(i32,)>("SELECT 1".into(), Vec::new()).await?;
    let dialect = settings.engine.dialect();
    if let Some(mapping) = &settings.products {
        let checked: Result<Vec<SourceProduct>> = reach.query(mapping.select(dialect), vec![String::new(); 2]).await;
        checked.map_err(|e| mapping_refused("settings.products", e))?;
    }
    if let Some(orders) = &settings.orders {
        let checked: Result<Vec<SourceOrder>> = reach.orders(orders, "nobody@example.invalid", 1).await;
        let field = match orders {
            OrderSource::Query(_) => format!("settings.orders.query (which must return {QUERY_COLUMNS})"),
            OrderSource::Columns(_) => "settings.orders".to_owned(),
        };
        checked.map_err(|e| mapping_refused(&field, e))?;
    }
    Ok(())
}

/// A mapping the database would not run, named.
fn mapping_refused(field: &str, error: ServiceError) -> ServiceError {
    match error {
        ServiceError::Unprocessable(reason) => ServiceError::Unprocessable(format!("{field}: {reason}")),
        other => other,
    }
}

/// A product row as read from a workspace's database.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SourceProduct {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub price: Option<String>,
    pub stock: Option<i64>,
    /// When it changed, as sortable text: the cursor.
    pub changed: String,
}

/// An order row as read from a workspace's database, every field as text.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SourceOrder {
    pub id: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub total: Option<String>,
    pub currency: Option<String>,
    pub tracking_number: Option<String>,
    /// `YYYY-MM-DDTHH:MM:SS.ffffff`, as the database keeps it.
    pub created_at: Option<String>,
}

/// A saved connection to read: its id names its pool.
pub struct Source<'a> {
    pub integration_id: &'a str,
    pub settings: &'a DatabaseSettings,
    pub password: &'a str,
}

/// The products changed after `cursor` (change time and id, as text), at
/// most one page, oldest change first.
pub async fn read_products(
    source: &Source<'_>,
    pools: &Pools,
    guard: (&TargetGuard, Duration),
    cursor: (&str, &str),
) -> Result<Vec<SourceProduct>> {
    let Some(mapping) = &source.settings.products else {
        return Ok(Vec::new());
    };
    let reach = Reach::pooled(source, pools, guard).await?;
    let sql = mapping.select(source.settings.engine.dialect());
    reach.query(sql, vec![cursor.0.to_owned(), cursor.1.to_owned()]).await
}

/// Every product id the database holds now, as text, when there are at
/// most `most`: what finding deleted rows compares against.
pub async fn read_product_ids(
    source: &Source<'_>,
    pools: &Pools,
    guard: (&TargetGuard, Duration),
    most: usize,
) -> Result<Vec<String>> {
    let Some(mapping) = &source.settings.products else {
        return Ok(Vec::new());
    };
    let reach = Reach::pooled(source, pools, guard).await?;
    let sql = mapping.ids(source.settings.engine.dialect());
    let mut ids: Vec<String> = Vec::new();
    loop {
        let after = ids.last().cloned().unwrap_or_default();
        let page: Vec<(String,)> = reach.query(sql.clone(), vec![after]).await?;
        let full = page.len() as i64 == ID_PAGE;
        ids.extend(page.into_iter().map(|(id,)| id));
        if ids.len() > most {
            return Err(ServiceError::Unprocessable(format!(
                "the product table holds more than {most} rows, too many to look for deleted ones"
            )));
        }
        if !full {
            return Ok(ids);
        }
    }
}

/// The customer's orders (by `email`), newest first, at most `limit`.
pub async fn read_orders(
    source: &Source<'_>,
    pools: &Pools,
    guard: (&TargetGuard, Duration),
    email: &str,
    limit: i64,
) -> Result<Vec<SourceOrder>> {
    let Some(orders) = &source.settings.orders else {
        return Ok(Vec::new());
    };
    Reach::pooled(source, pools, guard)
        .await?
        .orders(orders, email, limit)
        .await
}

/// A row either engine can read into.
trait Row:
    for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow> + Send + Unpin
{
}

impl<T> Row for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>
        + Send
        + Unpin
{
}

/// One database as a statement reaches it: through its connection's pool
/// or, before it is saved, in a session of its own.
struct Reach<'a> {
    settings: &'a DatabaseSettings,
    password: &'a str,
    targets: &'a TargetGuard,
    timeout: Duration,
    pool: Option<Pool>,
}

impl<'a> Reach<'a> {
    async fn pooled(
        source: &Source<'a>,
        pools: &Pools,
        (targets, timeout): (&'a TargetGuard, Duration),
    ) -> Result<Self> {
        let pool = pools
            .pool(
                source.integration_id,
                source.settings,
                source.password,
                (targets, timeout),
            )
            .await?;
        Ok(Self {
            settings: source.settings,
            password: source.password,
            targets,
            timeout,
            pool: Some(pool),
        })
    }

    async fn orders<T: Row>(&self, orders: &OrderSource, email: &str, limit: i64) -> Result<Vec<T>> {
        let (sql, binds) = orders.select(self.settings.engine.dialect(), limit);
        self.query(sql, vec![email.trim().to_owned(); binds]).await
    }

    /// Runs one statement with `binds`, read-only and time-limited.
    async fn query<T: Row>(&self, sql: String, binds: Vec<String>) -> Result<Vec<T>> {
        let settings = self.settings;
        // A session of its own goes to the host as checked now.
        let host = match &self.pool {
            Some(_) => String::new(),
            None => db_sessions::checked_host(settings, self.targets, self.timeout).await?,
        };
        let read = async {
            match &self.pool {
                Some(Pool::Postgres(pool)) => bound(&sql, &binds).fetch_all(pool).await,
                Some(Pool::Mysql(pool)) => bound(&sql, &binds).fetch_all(pool).await,
                None => self.in_own_session(&host, &sql, &binds).await,
            }
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(error)) => Err(ServiceError::Unprocessable(db_sessions::refusal(&error, self.password))),
            Err(_) => Err(ServiceError::Unprocessable(format!(
                "{}:{} did not answer within {} s",
                settings.host,
                settings.port,
                self.timeout.as_secs_f64()
            ))),
        }
    }

    /// Runs a statement in a session opened for it, and closes it.
    async fn in_own_session<T: Row>(&self, host: &str, sql: &str, binds: &[String]) -> Result<Vec<T>, sqlx::Error> {
        let settings = self.settings;
        match settings.engine {
            Engine::Postgres => {
                let mut session = db_sessions::open_postgres(settings, host, self.password).await?;
                let rows = bound(sql, binds).fetch_all(&mut session).await;
                let _ = session.close().await;
                rows
            }
            Engine::Mysql => {
                let mut session = db_sessions::open_mysql(settings, host, self.password).await?;
                let rows = bound(sql, binds).fetch_all(&mut session).await;
                let _ = session.close().await;
                rows
            }
        }
    }
}

/// `sql` with each of `binds` bound in turn.
fn bound<'q, DB, T>(
    sql: &'q str,
    binds: &'q [String],
) -> sqlx::query::QueryAs<'q, DB, T, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    T: for<'r> sqlx::FromRow<'r, DB::Row>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    binds.iter().fold(sqlx::query_as(sql), |query, bind| query.bind(bind))
}
