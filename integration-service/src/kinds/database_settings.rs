//! What connecting to a workspace's own PostgreSQL or MySQL/MariaDB
//! database takes, as a workspace gives it and as it is stored and shown:
//! where it is, how it is secured, what is read from it and how often,
//! and which bots learn its products.

use std::time::Duration;

use serde_json::{Map, Value, json};
use service_runtime::error::ServiceError;

use super::{
    knowledge_links,
    order_mapping::OrderSource,
    product_mapping::{Dialect, ProductMapping},
};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

const MAX_NAME_LEN: usize = 255;

/// Which engine the database runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mysql,
}

impl Engine {
    /// The engine a connection `kind` names (`postgres` or `mysql`).
    pub fn of_kind(kind: &str) -> Option<Self> {
        match kind {
            "postgres" => Some(Self::Postgres),
            "mysql" => Some(Self::Mysql),
            _ => None,
        }
    }

    /// The connection kind that names it.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }

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
}
