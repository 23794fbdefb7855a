//! Sessions on a workspace's own database. They are read-only by
//! construction: PostgreSQL's are opened with
//! `default_transaction_read_only`, MySQL's set `TRANSACTION READ ONLY`,
//! and every statement has a time limit. TLS is verified against the host
//! name unless the workspace explicitly turns it off (a database on the
//! same private network). The host must resolve to addresses the target
//! guard permits; without TLS the connection goes to exactly the address
//! that was checked, with TLS to the name the certificate must match.
//!
//! Reads go through a small pool per connection, which is also the limit
//! on how many sessions the platform holds on that database at once; idle
//! sessions close after a minute.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use outbound_http::TargetGuard;
use service_runtime::error::ServiceError;
use sqlx::{
    ConnectOptions, Connection, Executor,
    mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlSslMode},
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgSslMode},
};

use super::database_settings::{DatabaseSettings, Engine, Tls};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Longest any statement of ours may run on a customer's database.
const STATEMENT_LIMIT: Duration = Duration::from_secs(5);
/// Sessions one connection's pool holds at most: the platform's
/// concurrency limit on that database.
pub const POOL_SIZE: u32 = 3;
const POOL_IDLE: Duration = Duration::from_secs(60);

/// A connection's pool of read-only sessions.
#[derive(Clone)]
pub enum Pool {
    Postgres(PgPool),
    Mysql(MySqlPool),
}

/// Every connection's pool, made on first use and made again when the
/// connection's settings or password change.
#[derive(Clone, Default)]
pub struct Pools {
    pools: Arc<Mutex<HashMap<String, (u64, Pool)>>>,
}

impl Pools {
    /// The pool of the connection `integration_id`, whose host is checked
    /// against `targets` whenever a pool is made.
    pub async fn pool(
        &self,
        integration_id: &str,
        settings: &DatabaseSettings,
        password: &str,
        (targets, timeout): (&TargetGuard, Duration),
    ) -> Result<Pool> {
        let mut hasher = DefaultHasher::new();
        (settings.to_json().to_string(), password).hash(&mut hasher);
        let fingerprint = hasher.finish();
        if let Some((made_for, pool)) = self.lock().get(integration_id)
            && *made_for == fingerprint
        {
            return Ok(pool.clone());
        }
        let host = checked_host(settings, targets, timeout).await?;
        let pool = match settings.engine {
            Engine::Postgres => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .min_connections(0)
                    .idle_timeout(POOL_IDLE)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(postgres_options(settings, &host, password)),
            ),
            Engine::Mysql => Pool::Mysql(
                MySqlPoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .min_connections(0)
                    .idle_timeout(POOL_IDLE)
                    .acquire_timeout(timeout)
                    .after_connect(|session, _| Box::pin(read_only_mysql(session)))
                    .connect_lazy_with(mysql_options(settings, &host, password)),
            ),
        };
        let replaced = self
            .lock()
            .insert(integration_id.to_owned(), (fingerprint, pool.clone()));
        if let Some((_, old)) = replaced {
            tokio::spawn(async move { old.close().await });
        }
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Pool)>> {
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Pool {
    async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Mysql(pool) => pool.close().await,
        }
    }
}

/// The host to connect to: the name when TLS will check it, else the
/// address that was checked.
pub async fn checked_host(settings: &DatabaseSettings, targets: &TargetGuard, timeout: Duration) -> Result<String> {
    let address = checked_address(settings, targets, timeout).await?;
    Ok(match settings.tls {
        Tls::Verify => settings.host.clone(),
        Tls::Disable => address.ip().to_string(),
    })
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

fn postgres_options(settings: &DatabaseSettings, host: &str, password: &str) -> PgConnectOptions {
    let statement_timeout = STATEMENT_LIMIT.as_millis().to_string();
    PgConnectOptions::new()
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
        .disable_statement_logging()
}

/// A PostgreSQL session that can only read, each statement time-limited.
pub async fn open_postgres(
    settings: &DatabaseSettings,
    host: &str,
    password: &str,
) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect_with(&postgres_options(settings, host, password)).await
}

fn mysql_options(settings: &DatabaseSettings, host: &str, password: &str) -> MySqlConnectOptions {
    let options = MySqlConnectOptions::new()
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
    match password.is_empty() {
        true => options,
        false => options.password(password),
    }
}

/// A MySQL or MariaDB session that can only read, each statement
/// time-limited.
pub async fn open_mysql(
    settings: &DatabaseSettings,
    host: &str,
    password: &str,
) -> Result<MySqlConnection, sqlx::Error> {
    let mut session = MySqlConnection::connect_with(&mysql_options(settings, host, password)).await?;
    read_only_mysql(&mut session).await?;
    Ok(session)
}

/// Makes a MySQL or MariaDB session read-only and its statements
/// time-limited.
async fn read_only_mysql(session: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    session.execute("SET SESSION TRANSACTION READ ONLY").await?;
    // MariaDB bounds statements in seconds, MySQL in milliseconds.
    let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(&mut *session).await?;
    let limit = if version.contains("MariaDB") {
        format!("SET SESSION max_statement_time = {}", STATEMENT_LIMIT.as_secs())
    } else {
        format!("SET SESSION max_execution_time = {}", STATEMENT_LIMIT.as_millis())
    };
    session.execute(limit.as_str()).await?;
    Ok(())
}

/// What the database (or the network) said, for the workspace to act on;
/// the password is taken out should a server quote it.
pub fn refusal(error: &sqlx::Error, password: &str) -> String {
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
    use serde_json::json;

    use super::*;

    /// The machine's own servers, as deploy/test.sh starts them: PostgreSQL
    /// trusting loopback, MariaDB's root without a password.
    fn local(engine: Engine) -> DatabaseSettings {
        let (port, database, user) = match engine {
            Engine::Postgres => (5432, "postgres", "postgres"),
            Engine::Mysql => (3306, "mysql", "root"),
        };
        let settings = json!({"host": "127.0.0.1", "port": port, "database": database, "user": user, "tls": "disable"});
        DatabaseSettings::parse(engine, settings.as_object().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_connections_pool_holds_at_most_a_few_sessions_and_makes_them_read_only() {
        let pools = Pools::default();
        let loopback = TargetGuard::from_list("127.0.0.0/8").unwrap();
        let guard = (&loopback, Duration::from_secs(10));
        let Pool::Postgres(pool) = pools
            .pool("int_pool_test", &local(Engine::Postgres), "", guard)
            .await
            .unwrap()
        else {
            panic!("a PostgreSQL pool");
        };
        // Ten statements at once share the pool's few sessions.
        let marker = format!("pool-test-{}", std::process::id());
        let sleepers = (0..10).map(|_| {
            let pool = pool.clone();
            let sql = format!("SELECT pg_sleep(0.3)::text || '{marker}'");
            async move { sqlx::query_scalar::<_, String>(&sql).fetch_one(&pool).await }
        });
        let running = tokio::spawn(futures_util::future::join_all(sleepers));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut admin = open_postgres(&local(Engine::Postgres), "127.0.0.1", "").await.unwrap();
        let busy: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()")
                .bind(format!("%'{marker}'%"))
                .fetch_one(&mut admin)
                .await
                .unwrap();
        assert!((1..=i64::from(POOL_SIZE)).contains(&busy), "{busy} sessions at once");
        assert!(running.await.unwrap().iter().all(Result::is_ok));
        let write = sqlx::query("CREATE TABLE not_allowed (n int)")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(write.to_string().contains("read-only transaction"), "{write}");
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
