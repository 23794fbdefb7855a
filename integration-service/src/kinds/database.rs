//! A workspace's own PostgreSQL or MySQL/MariaDB database: what connecting
//! to it takes, and the connection attempt made before it is saved.
//!
//! Sessions are read-only by construction: PostgreSQL's are opened with
//! `default_transaction_read_only`, MySQL's set `TRANSACTION READ ONLY`,
//! and every statement has a time limit. TLS is verified against the host
//! name unless the workspace explicitly turns it off (a database on the
//! same private network). The host must resolve to addresses the target
//! guard permits; without TLS the connection goes to exactly the address
//! that was checked, with TLS to the name the certificate must match.

use std::{net::SocketAddr, time::Duration};

use outbound_http::TargetGuard;

use super::{
    knowledge_links,
    order_mapping::{OrderSource, QUERY_COLUMNS},
    product_mapping::{Dialect, ID_PAGE, ProductMapping},
};
use serde_json::{Map, Value, json};
use service_runtime::error::ServiceError;
use sqlx::{
    ConnectOptions, Connection, Executor,
    mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode},
    postgres::{PgConnectOptions, PgConnection, PgSslMode},
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Longest any statement of ours may run on a customer's database.
const STATEMENT_LIMIT: Duration = Duration::from_secs(5);
const MAX_NAME_LEN: usize = 255;

/// Which engine the database runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mysql,
}

impl Engine {
    pub fn dialect(self) -> Dialect {
        match self {
            Self::Postgres => Dialect::Postgres,
            Self::Mysql => Dialect::Mysql,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Postgres => 5432,
            Self::Mysql => 3306,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// The server's certificate must be valid for the host name.
    Verify,
    Disable,
}

/// What to connect to, as checked, and what to read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSettings {
    pub engine: Engine,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub tls: Tls,
    /// Where its products are, when it has them to offer.
    pub products: Option<ProductMapping>,
    /// Where its customers' orders are, when it has them to offer.
    pub orders: Option<OrderSource>,
    /// Stock below this is low (`product.low_stock`); 0 is out of stock.
    pub low_stock_threshold: i64,
    /// How often changed products are read.
    pub poll_every: Duration,
    /// Bots that learn the products: each is one of their knowledge items.
    pub bot_ids: Vec<ids::BotId>,
    /// When set, those bots are retrained and deployed once their products
    /// have been quiet this long after a change.
    pub retrain_after: Option<Duration>,
}

const SETTINGS: &str = "host, port, database, user, tls, products, orders, low_stock_threshold, poll_seconds, bot_ids, retrain_after_seconds";
const DEFAULT_LOW_STOCK: i64 = 10;
const DEFAULT_POLL: Duration = Duration::from_secs(60);

impl DatabaseSettings {
    /// Reads `settings.*`, naming the field at fault.
    pub fn parse(engine: Engine, settings: &Map<String, Value>) -> Result<Self> {
        if let Some(unknown) = settings.keys().find(|k| !SETTINGS.split(", ").any(|s| s == k.as_str())) {
            return Err(ServiceError::invalid(
                "settings",
                format!("{unknown:?} is not a setting of a database connection ({SETTINGS})"),
            ));
        }
        let number = |key: &str, field: &'static str, range: std::ops::RangeInclusive<i64>, default: i64| match settings
            .get(key)
        {
            None | Some(Value::Null) => Ok(default),
            Some(value) => value
                .as_f64()
                .filter(|n| n.fract() == 0.0 && range.contains(&(*n as i64)))
                .map(|n| n as i64)
                .ok_or_else(|| {
                    ServiceError::invalid(
                        field,
                        format!("must be a whole number, {} to {}", range.start(), range.end()),
                    )
                }),
        };
        let low_stock_threshold = number(
            "low_stock_threshold",
            "settings.low_stock_threshold",
            0..=1_000_000,
            DEFAULT_LOW_STOCK,
        )?;
        let poll_seconds = number(
            "poll_seconds",
            "settings.poll_seconds",
            1..=86_400,
            DEFAULT_POLL.as_secs() as i64,
        )?;
        let products = match settings.get("products") {
            None | Some(Value::Null) => None,
            Some(mapping) => Some(ProductMapping::parse(mapping)?),
        };
        let orders = match settings.get("orders") {
            None | Some(Value::Null) => None,
            Some(source) => Some(OrderSource::parse(source)?),
        };
        let port = match settings.get("port") {
            None | Some(Value::Null) => engine.default_port(),
            Some(value) => value
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| ServiceError::invalid("settings.port", "must be a port number, 1 to 65535"))?,
        };
        let tls = match settings.get("tls").and_then(Value::as_str) {
            None | Some("verify") => Tls::Verify,
            Some("disable") => Tls::Disable,
            Some(_) => return Err(ServiceError::invalid("settings.tls", "must be verify or disable")),
        };
        Ok(Self {
            engine,
            host: name(settings, "host", "settings.host")?,
            port,
            database: name(settings, "database", "settings.database")?,
            user: name(settings, "user", "settings.user")?,
            tls,
            products,
            orders,
            low_stock_threshold,
            poll_every: Duration::from_secs(poll_seconds as u64),
            bot_ids: knowledge_links::bot_ids(settings.get("bot_ids"))?,
            retrain_after: knowledge_links::retrain_after(settings.get("retrain_after_seconds"))?,
        })
    }

    /// The settings as they are stored and shown.
    pub fn to_json(&self) -> Value {
        let mut json = json!({
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
            "tls": match self.tls { Tls::Verify => "verify", Tls::Disable => "disable" },
            "low_stock_threshold": self.low_stock_threshold,
            "poll_seconds": self.poll_every.as_secs(),
        });
        if let Some(products) = &self.products {
            json["products"] = products.to_json();
        }
        if let Some(orders) = &self.orders {
            json["orders"] = orders.to_json();
        }
        if !self.bot_ids.is_empty() {
            json["bot_ids"] = json!(self.bot_ids);
        }
        if let Some(after) = self.retrain_after {
            json["retrain_after_seconds"] = json!(after.as_secs());
        }
        json
    }
}

/// A required name: non-empty, printable, bounded.
fn name(settings: &Map<String, Value>, key: &str, field: &'static str) -> Result<String> {
    let value = settings
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default();
    if value.is_empty() {
        return Err(ServiceError::invalid(field, "is required"));
    }
    if value.len() > MAX_NAME_LEN || value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            field,
            format!("must be at most {MAX_NAME_LEN} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

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
        targets,
        timeout,
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

/// The products changed after `cursor` (change time and id, as text), at
/// most one page, oldest change first, read in a read-only session.
pub async fn read_products(
    settings: &DatabaseSettings,
    password: &str,
    targets: &TargetGuard,
    timeout: Duration,
    cursor: (&str, &str),
) -> Result<Vec<SourceProduct>> {
    let Some(mapping) = &settings.products else {
        return Ok(Vec::new());
    };
    let reach = Reach {
        settings,
        password,
        targets,
        timeout,
    };
    let sql = mapping.select(settings.engine.dialect());
    reach.query(sql, vec![cursor.0.to_owned(), cursor.1.to_owned()]).await
}

/// Every product id the database holds now, as text, when there are at
/// most `most`: what finding deleted rows compares against.
pub async fn read_product_ids(
    settings: &DatabaseSettings,
    password: &str,
    (targets, timeout): (&TargetGuard, Duration),
    most: usize,
) -> Result<Vec<String>> {
    let Some(mapping) = &settings.products else {
        return Ok(Vec::new());
    };
    let reach = Reach {
        settings,
        password,
        targets,
        timeout,
    };
    let sql = mapping.ids(settings.engine.dialect());
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

/// The customer's orders (by `email`), newest first, at most `limit`,
/// read in a read-only session.
pub async fn read_orders(
    settings: &DatabaseSettings,
    password: &str,
    (targets, timeout): (&TargetGuard, Duration),
    email: &str,
    limit: i64,
) -> Result<Vec<SourceOrder>> {
    let Some(orders) = &settings.orders else {
        return Ok(Vec::new());
    };
    let reach = Reach {
        settings,
        password,
        targets,
        timeout,
    };
    reach.orders(orders, email, limit).await
}

/// One database, as reached for one statement.
struct Reach<'a> {
    settings: &'a DatabaseSettings,
    password: &'a str,
    targets: &'a TargetGuard,
    timeout: Duration,
}

impl Reach<'_> {
    async fn orders<T>(&self, orders: &OrderSource, email: &str, limit: i64) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>
            + Send
            + Unpin,
    {
        let (sql, binds) = orders.select(self.settings.engine.dialect(), limit);
        self.query(sql, vec![email.trim().to_owned(); binds]).await
    }

    /// Runs one statement with `binds` in a new read-only session, and
    /// closes it.
    async fn query<T>(&self, sql: String, binds: Vec<String>) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>
            + Send
            + Unpin,
    {
        let settings = self.settings;
        let address = checked_address(settings, self.targets, self.timeout).await?;
        // With TLS the certificate is checked against the name; without it
        // the connection goes to the address that was checked.
        let host = match settings.tls {
            Tls::Verify => settings.host.clone(),
            Tls::Disable => address.ip().to_string(),
        };
        let read = async {
            match settings.engine {
                Engine::Postgres => {
                    let mut session = open_postgres(settings, &host, self.password).await?;
                    let mut query = sqlx::query_as(&sql);
                    for bind in &binds {
                        query = query.bind(bind);
                    }
                    let rows = query.fetch_all(&mut session).await;
                    let _ = session.close().await;
                    rows
                }
                Engine::Mysql => {
                    let mut session = open_mysql(settings, &host, self.password).await?;
                    let mut query = sqlx::query_as(&sql);
                    for bind in &binds {
                        query = query.bind(bind);
                    }
                    let rows = query.fetch_all(&mut session).await;
                    let _ = session.close().await;
                    rows
                }
            }
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(error)) => Err(ServiceError::Unprocessable(refusal(&error, self.password))),
            Err(_) => Err(ServiceError::Unprocessable(format!(
                "{}:{} did not answer within {} s",
                settings.host,
                settings.port,
                self.timeout.as_secs_f64()
            ))),
        }
    }
}

/// The address to connect to: the host's first one the guard permits.
async fn checked_address(settings: &DatabaseSettings, targets: &TargetGuard, timeout: Duration) -> Result<SocketAddr> {
    let lookup = tokio::net::lookup_host((settings.host.as_str(), settings.port));
    let addresses: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addresses)) => addresses.collect(),
        Ok(Err(error)) => {
            return Err(ServiceError::Unprocessable(format!(
                "{} could not be resolved: {error}",
                settings.host
            )));
        }
        Err(_) => {
            return Err(ServiceError::Unprocessable(format!(
                "{} could not be resolved in time",
                settings.host
            )));
        }
    };
    addresses
        .into_iter()
        .find(|address| targets.permits(address.ip()))
        .ok_or_else(|| {
            ServiceError::invalid(
                "settings.host",
                format!(
                    "{} {}; allow its network in INTEGRATION_ALLOWED_CIDRS to connect to it",
                    settings.host,
                    outbound_http::target_guard::REFUSED
                ),
            )
        })
}

/// A PostgreSQL session that can only read, each statement time-limited.
async fn open_postgres(settings: &DatabaseSettings, host: &str, password: &str) -> Result<PgConnection, sqlx::Error> {
    let statement_timeout = STATEMENT_LIMIT.as_millis().to_string();
    let options = PgConnectOptions::new()
        .host(host)
        .port(settings.port)
        .database(&settings.database)
        .username(&settings.user)
        .password(password)
        .application_name("chatbot-platform")
        .ssl_mode(match settings.tls {
            Tls::Verify => PgSslMode::VerifyFull,
            Tls::Disable => PgSslMode::Disable,
        })
        .options([
            ("default_transaction_read_only", "on"),
            ("statement_timeout", statement_timeout.as_str()),
        ])
        .disable_statement_logging();
    PgConnection::connect_with(&options).await
}

/// A MySQL or MariaDB session that can only read, each statement
/// time-limited.
async fn open_mysql(settings: &DatabaseSettings, host: &str, password: &str) -> Result<MySqlConnection, sqlx::Error> {
    let mut options = MySqlConnectOptions::new()
        .host(host)
        .port(settings.port)
        .database(&settings.database)
        .username(&settings.user)
        .ssl_mode(match settings.tls {
            Tls::Verify => MySqlSslMode::VerifyIdentity,
            Tls::Disable => MySqlSslMode::Disabled,
        })
        .disable_statement_logging();
    // An empty password is sent as one unless left out.
    if !password.is_empty() {
        options = options.password(password);
    }
    let mut connection = MySqlConnection::connect_with(&options).await?;
    connection.execute("SET SESSION TRANSACTION READ ONLY").await?;
    // MariaDB bounds statements in seconds, MySQL in milliseconds.
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut connection)
        .await?;
    let limit = if version.contains("MariaDB") {
        format!("SET SESSION max_statement_time = {}", STATEMENT_LIMIT.as_secs())
    } else {
        format!("SET SESSION max_execution_time = {}", STATEMENT_LIMIT.as_millis())
    };
    connection.execute(limit.as_str()).await?;
    Ok(connection)
}

/// What the database (or the network) said, for the workspace to act on;
/// the password is taken out should a server quote it.
fn refusal(error: &sqlx::Error, password: &str) -> String {
    let reason = match error {
        sqlx::Error::Database(error) => error.message().to_owned(),
        // A failed TLS handshake (an untrusted certificate) surfaces as
        // invalid data on the socket.
        sqlx::Error::Io(error) if error.kind() == std::io::ErrorKind::InvalidData => format!("TLS: {error}"),
        sqlx::Error::Io(error) => format!("could not reach the database: {error}"),
        sqlx::Error::Tls(error) => format!("TLS: {error}"),
        other => other.to_string(),
    };
    if password.is_empty() {
        reason
    } else {
        reason.replace(password, "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn defaults_fill_in_the_port_and_verified_tls() {
        let parsed = DatabaseSettings::parse(
            Engine::Mysql,
            &settings(json!({"host": "db.example.com", "database": "shop", "user": "bot"})),
        )
        .unwrap();
        assert_eq!(parsed.port, 3306);
        assert_eq!(parsed.tls, Tls::Verify);
        assert_eq!(
            parsed.to_json(),
            json!({"host": "db.example.com", "port": 3306, "database": "shop", "user": "bot", "tls": "verify",
                "low_stock_threshold": 10, "poll_seconds": 60})
        );
    }

    #[test]
    fn each_wrong_setting_is_named() {
        let field = |value: Value| match DatabaseSettings::parse(Engine::Postgres, &settings(value)) {
            Err(ServiceError::InvalidArgument { field, .. }) => field.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(json!({"database": "d", "user": "u"})), "settings.host");
        assert_eq!(
            field(json!({"host": "h", "database": "d", "user": "u", "port": 70000})),
            "settings.port"
        );
        assert_eq!(
            field(json!({"host": "h", "database": "d", "user": "u", "tls": "maybe"})),
            "settings.tls"
        );
        assert_eq!(
            field(json!({"host": "h", "database": "d", "user": "u", "password": "p"})),
            "settings"
        );
    }

    /// The machine's own servers, as deploy/test.sh starts them: PostgreSQL
    /// trusting loopback, MariaDB's root without a password.
    fn local(engine: Engine) -> DatabaseSettings {
        let (port, database, user) = match engine {
            Engine::Postgres => (5432, "postgres", "postgres"),
            Engine::Mysql => (3306, "mysql", "root"),
        };
        DatabaseSettings {
            engine,
            host: "127.0.0.1".into(),
            port,
            database: database.into(),
            user: user.into(),
            tls: Tls::Disable,
            products: None,
            orders: None,
            low_stock_threshold: DEFAULT_LOW_STOCK,
            poll_every: DEFAULT_POLL,
            bot_ids: Vec::new(),
            retrain_after: None,
        }
    }

    #[tokio::test]
    async fn a_postgres_session_can_only_read() {
        let mut session = open_postgres(&local(Engine::Postgres), "127.0.0.1", "")
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (deploy/test.sh starts it)");
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut session).await.unwrap();
        assert_eq!(one, 1);
        let write = session.execute("CREATE TABLE not_allowed (n int)").await.unwrap_err();
        assert!(write.to_string().contains("read-only transaction"), "{write}");
        let limit: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&mut session)
            .await
            .unwrap();
        assert_eq!(limit, "5s");
    }

    #[tokio::test]
    async fn a_mariadb_session_can_only_read() {
        let mut session = open_mysql(&local(Engine::Mysql), "127.0.0.1", "")
            .await
            .expect("MariaDB at 127.0.0.1:3306 as root (deploy/test.sh starts it)");
        // Temporary tables are a read-only session's to use, as MySQL
        // defines it; a real one is not.
        let write = session.execute("CREATE TABLE not_allowed (n int)").await.unwrap_err();
        assert!(write.to_string().contains("READ ONLY"), "{write}");
        let limit: f64 = sqlx::query_scalar("SELECT @@max_statement_time")
            .fetch_one(&mut session)
            .await
            .unwrap();
        assert_eq!(limit, 5.0);
    }

    #[test]
    fn a_quoted_password_never_reaches_the_reason() {
        let error = sqlx::Error::Protocol("server said: bad password s3cret!".into());
        assert_eq!(
            refusal(&error, "s3cret!"),
            "encountered unexpected or invalid data: server said: bad password [redacted]"
        );
    }
}
