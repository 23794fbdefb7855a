//! Connecting a service to its own PostgreSQL schema and migrating it.
//!
//! Each service owns one schema (`chatbot`, `gateway`, …). Every pooled
//! connection gets `search_path` set to that schema, so the service's SQL
//! and its `_sqlx_migrations` table stay inside it and services sharing one
//! database never see each other's tables.

use std::time::Duration;

use crate::config::Migrations;
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    Url(#[source] sqlx::Error),
    #[error(
        "cannot reach PostgreSQL at {target}: {source}. Start it (e.g. `pg_ctlcluster 15 main start`) or set DATABASE_URL"
    )]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "database {database} does not exist on {target}. Create it (`createdb -h 127.0.0.1 -U postgres {database}`; deploy/up.sh does) or set DATABASE_URL"
    )]
    MissingDatabase { database: String, target: String },
    #[error("creating schema {schema}: {source}")]
    Schema {
        schema: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "schema {schema} lacks migrations {missing:?}: run the migrations Job (`<binary> migrate`, \
         k8s/base/migrations.yaml), or set DATABASE_MIGRATIONS=apply to migrate at start"
    )]
    Unmigrated { schema: String, missing: Vec<i64> },
    #[error("migrating schema {schema}: {source}")]
    Migrate {
        schema: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

impl crate::config::ServiceSettings {
    /// The service's pool on its own `schema`, migrated (or checked) first.
    pub async fn connect(&self, schema: &str, migrator: &Migrator) -> Result<PgPool, DatabaseError> {
        connect_and_migrate(
            &self.database_url,
            schema,
            self.max_db_connections,
            migrator,
            self.migrations,
        )
        .await
    }
}

/// Opens a pool on `url` confined to `schema`, creating the schema and
/// applying `migrator` first, or with [`Migrations::Verify`] checking that
/// it has been.
pub async fn connect_and_migrate(
    url: &str,
    schema: &str,
    max_connections: u32,
    migrator: &Migrator,
    migrations: Migrations,
) -> Result<PgPool, DatabaseError> {
    let pool = connect(url, schema, max_connections, &[]).await?;
    match migrations {
        Migrations::Apply => apply(&pool, schema, migrator).await?,
        Migrations::Verify => verify(&pool, schema, migrator).await?,
    }
    Ok(pool)
}

/// Whether the process was started as `<binary> migrate`.
pub fn migrate_requested() -> bool {
    std::env::args().nth(1).as_deref() == Some("migrate")
}

/// `<binary> migrate`: applies `schema`'s migrations on `DATABASE_URL`,
/// then returns, for the migrations Job.
pub async fn migrate_from_env(schema: &str, migrator: &Migrator) -> Result<(), DatabaseError> {
    let url = crate::config::string("DATABASE_URL", crate::config::DEFAULT_DATABASE_URL);
    migrate(&url, schema, migrator).await
}

/// Creates `schema` on `url` and applies `migrator` to it.
pub async fn migrate(url: &str, schema: &str, migrator: &Migrator) -> Result<(), DatabaseError> {
    let pool = connect(url, schema, 1, &[]).await?;
    apply(&pool, schema, migrator).await?;
    tracing::info!(schema, "migrations applied");
    pool.close().await;
    Ok(())
}

async fn apply(pool: &PgPool, schema: &str, migrator: &Migrator) -> Result<(), DatabaseError> {
    create_schema(pool, schema).await?;
    migrator.run(pool).await.map_err(|source| DatabaseError::Migrate {
        schema: schema.to_owned(),
        source,
    })
}

/// Fails with the versions `migrator` holds that the schema lacks.
async fn verify(pool: &PgPool, schema: &str, migrator: &Migrator) -> Result<(), DatabaseError> {
    let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool)
        .await
    {
        Ok(versions) => versions,
        // SQLSTATE 42P01, undefined_table: nothing was ever applied here.
        Err(error) if error.as_database_error().and_then(|e| e.code()).as_deref() == Some("42P01") => Vec::new(),
        Err(source) => return Err(schema_error(schema, source)),
    };
    let missing: Vec<i64> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| m.version)
        .collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(DatabaseError::Unmigrated {
            schema: schema.to_owned(),
            missing,
        }),
    }
}

/// A second pool on an already migrated `schema` whose commits do not wait
/// for the write-ahead log to reach disk. Only for writes whose loss in a
/// database crash is harmless because they are redone (leases, attempt
/// bookkeeping under at-least-once delivery): it spares each of them a
/// disk flush. Anything acknowledged to a client or a broker belongs on a
/// durable pool.
pub async fn connect_async_commit(url: &str, schema: &str, max_connections: u32) -> Result<PgPool, DatabaseError> {
    connect(url, schema, max_connections, &[("synchronous_commit", "off")]).await
}

async fn connect(
    url: &str,
    schema: &str,
    max_connections: u32,
    settings: &[(&str, &str)],
) -> Result<PgPool, DatabaseError> {
    debug_assert!(schema.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    let base: PgConnectOptions = url.parse().map_err(DatabaseError::Url)?;
    let target = format!("{}:{}", base.get_host(), base.get_port());
    let database = base.get_database().unwrap_or("postgres").to_owned();
    let options = base
        .options([("search_path", schema)])
        .options(settings.iter().copied());
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|source| connect_error(source, target, database))
}

fn connect_error(source: sqlx::Error, target: String, database: String) -> DatabaseError {
    // SQLSTATE 3D000: invalid_catalog_name, the database does not exist.
    let missing = source
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "3D000");
    if missing {
        DatabaseError::MissingDatabase { database, target }
    } else {
        DatabaseError::Connect { target, source }
    }
}

async fn create_schema(pool: &PgPool, schema: &str) -> Result<(), DatabaseError> {
    // Replicas starting together race on CREATE SCHEMA IF NOT EXISTS (it can
    // still fail with a unique violation); a transaction-scoped advisory lock
    // serialises them. The schema name is a compile-time constant of the
    // calling service, never user input, so formatting it in is safe.
    let mut tx = pool.begin().await.map_err(|source| schema_error(schema, source))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("schema:{schema}"))
        .execute(&mut *tx)
        .await
        .map_err(|source| schema_error(schema, source))?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut *tx)
        .await
        .map_err(|source| schema_error(schema, source))?;
    tx.commit().await.map_err(|source| schema_error(schema, source))
}

fn schema_error(schema: &str, source: sqlx::Error) -> DatabaseError {
    DatabaseError::Schema {
        schema: schema.to_owned(),
        source,
    }
}

/// A database failure as the caller sees it: logged here with its cause,
/// INTERNAL with no detail on the wire (causes can hold table names and
/// values).
pub fn internal_error(error: sqlx::Error) -> tonic::Status {
    tracing::error!(%error, "database error");
    tonic::Status::internal("internal error")
}
