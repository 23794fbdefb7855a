//! A customer's own database, made for one test on the machine's
//! PostgreSQL or MariaDB: a database of its own, a user whose password only
//! the test knows, and a table of rows to read. [`CustomerDb::remove`]
//! drops them.

use rand::{Rng, distributions::Alphanumeric};
use serde_json::{Value, json};
use sqlx::{Connection as _, Executor as _, MySqlConnection, PgConnection};

use crate::infra::POSTGRES_ADMIN_URL;

pub const MARIADB_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mariadb,
}

pub struct CustomerDb {
    pub engine: Engine,
    /// The database's name, which is also its user's.
    pub name: String,
    pub password: String,
}

impl CustomerDb {
    pub async fn create(engine: Engine) -> Self {
        let suffix: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(10)
            .map(|c| char::from(c).to_ascii_lowercase())
            .collect();
        let db = Self {
            engine,
            name: format!("customer_{suffix}"),
            password: format!("pw-{}", rand::thread_rng().r#gen::<u64>()),
        };
        let (name, password) = (&db.name, &db.password);
        match engine {
            Engine::Postgres => {
                let mut admin = admin_postgres().await;
                // CREATE DATABASE cannot share a statement string (and so a
                // transaction) with anything else.
                for statement in [
                    format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"),
                    format!("CREATE DATABASE {name} OWNER {name}"),
                ] {
                    admin
                        .execute(statement.as_str())
                        .await
                        .expect("creating a customer database on PostgreSQL");
                }
            }
            Engine::Mariadb => {
                admin_mariadb()
                    .await
                    .execute(
                        format!(
                            "CREATE DATABASE {name};
                             CREATE USER '{name}'@'%' IDENTIFIED BY '{password}';
                             GRANT SELECT ON {name}.* TO '{name}'@'%';"
                        )
                        .as_str(),
                    )
                    .await
                    .expect("creating a customer database on MariaDB");
            }
        }
        db
    }

    /// The `kind` an integration of it has.
    pub fn kind(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => "postgres",
            Engine::Mariadb => "mysql",
        }
    }

    /// The settings of an integration of it, over plain TCP on loopback.
    pub fn settings(&self) -> Value {
        let port = match self.engine {
            Engine::Postgres => 5432,
            Engine::Mariadb => 3306,
        };
        json!({"host": "127.0.0.1", "port": port, "database": self.name, "user": self.name, "tls": "disable"})
    }

    /// The body that connects it: `password` as given.
    pub fn connect_request(&self, password: &str) -> Value {
        json!({
            "kind": self.kind(),
            "name": format!("{} of the shop", self.kind()),
            "settings": self.settings(),
            "credentials": {"password": password},
        })
    }

    /// Runs `sql` in this database as the administrator (who owns what it
    /// creates; the customer's user may read it).
    pub async fn execute(&self, sql: &str) {
        match self.engine {
            Engine::Postgres => {
                let url = format!("{}/{}", POSTGRES_ADMIN_URL.trim_end_matches("/postgres"), self.name);
                let mut admin = PgConnection::connect(&url).await.expect("the customer database");
                admin.execute(sql).await.expect("running SQL in the customer database");
                admin
                    .execute(format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}", self.name).as_str())
                    .await
                    .expect("letting the customer's user read");
            }
            Engine::Mariadb => {
                let mut admin = admin_mariadb().await;
                admin
                    .execute(format!("USE {}; {sql}", self.name).as_str())
                    .await
                    .expect("running SQL in the customer database");
            }
        }
    }

    /// The rows `select` returns, each as a JSON object (PostgreSQL only).
    pub async fn json_rows(&self, select: &str) -> Vec<Value> {
        assert!(
            matches!(self.engine, Engine::Postgres),
            "json_rows reads PostgreSQL only"
        );
        let url = format!("{}/{}", POSTGRES_ADMIN_URL.trim_end_matches("/postgres"), self.name);
        let mut admin = PgConnection::connect(&url).await.expect("the customer database");
        let rows: Value = sqlx::query_scalar(&format!("SELECT coalesce(jsonb_agg(t), '[]') FROM ({select}) t"))
            .fetch_one(&mut admin)
            .await
            .expect("reading the customer database");
        rows.as_array().cloned().unwrap_or_default()
    }

    pub async fn remove(self) {
        let name = &self.name;
        let dropped = match self.engine {
            Engine::Postgres => {
                let mut admin = admin_postgres().await;
                let database = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                match admin.execute(database.as_str()).await {
                    Ok(_) => admin
                        .execute(format!("DROP ROLE IF EXISTS {name}").as_str())
                        .await
                        .map(|_| ()),
                    Err(error) => Err(error),
                }
            }
            Engine::Mariadb => admin_mariadb()
                .await
                .execute(format!("DROP DATABASE IF EXISTS {name}; DROP USER IF EXISTS '{name}'@'%';").as_str())
                .await
                .map(|_| ()),
        };
        if let Err(error) = dropped {
            eprintln!("warning: removing customer database {name}: {error}");
        }
    }
}

async fn admin_postgres() -> PgConnection {
    PgConnection::connect(POSTGRES_ADMIN_URL)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at 127.0.0.1:5432 as postgres ({e})"))
}

async fn admin_mariadb() -> MySqlConnection {
    MySqlConnection::connect(MARIADB_ADMIN_URL).await.unwrap_or_else(|e| {
        panic!(
            "MariaDB is not reachable at 127.0.0.1:3306 as root without a password ({e}). \
             Start it with `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd` \
             or run deploy/test.sh, which starts it."
        )
    })
}
