//! Where a workspace's own database keeps its customers' orders: a table
//! and the columns of each field, or one `SELECT` the workspace writes
//! (for orders spread over several tables). Either way the customer's
//! email is bound, never spliced, and the statement runs in a read-only,
//! time-limited session. A written query must be one `SELECT` (or `WITH`)
//! statement; it is run as a subquery, which no second statement or
//! data-modifying command survives, and tried when it is saved.

use serde_json::{Map, Value, json};
use service_runtime::error::ServiceError;

use super::product_mapping::{Dialect, cast_types, identifier, quoted, timestamp_text};

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Where a written query takes the customer's email.
pub const EMAIL_PLACEHOLDER: &str = ":customer_email";
const MAX_QUERY_BYTES: usize = 4 * 1024;
const COLUMNS_FIELDS: &str = "table, id, customer_email, status, total, created_at, name, currency, tracking_number";
/// What a written query must return, by name (NULL where it has none).
pub const QUERY_COLUMNS: &str = "id, name, status, total, currency, tracking_number, created_at";

#[derive(Debug, Clone, PartialEq)]
pub enum OrderSource {
    Columns(OrderColumns),
    /// A `SELECT` naming `:customer_email` where the email goes.
    Query(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderColumns {
    pub table: String,
    pub id: String,
    pub customer_email: String,
    pub status: String,
    pub total: String,
    pub created_at: String,
    pub name: Option<String>,
    pub currency: Option<String>,
    pub tracking_number: Option<String>,
}

impl OrderSource {
    pub fn parse(value: &Value) -> Result<Self> {
        let Some(map) = value.as_object() else {
            return Err(ServiceError::invalid(
                "settings.orders",
                "must name the table and its columns, or give a query",
            ));
        };
        if let Some(query) = map.get("query") {
            if map.len() > 1 {
                return Err(ServiceError::invalid(
                    "settings.orders",
                    "takes a query or a table with its columns, not both",
                ));
            }
            return Ok(Self::Query(checked_query(query)?));
        }
        Ok(Self::Columns(OrderColumns::parse(map)?))
    }

    pub fn to_json(&self) -> Value {
        match self {
            Self::Query(query) => json!({ "query": query }),
            Self::Columns(columns) => columns.to_json(),
        }
    }

    /// The customer's orders, newest first, at most `limit`, with every
    /// field as text; and how many times the email must be bound.
    pub fn select(&self, engine: Dialect, limit: i64) -> (String, usize) {
        let q = |name: &str| quoted(engine, name);
        let (text, _) = cast_types(engine);
        let cast = |expr: String| format!("CAST({expr} AS {text})");
        match self {
            Self::Columns(c) => {
                let optional = |column: &Option<String>| match column {
                    Some(column) => cast(q(column)),
                    None => "NULL".to_owned(),
                };
                let email = match engine {
                    Dialect::Postgres => "lower($1)",
                    Dialect::Mysql => "lower(?)",
                };
                let sql = format!(
                    "SELECT {id} AS id, {name} AS name, {status} AS status, {total} AS total, {currency} AS currency, \
                     {tracking} AS tracking_number, {created} AS created_at FROM {table} \
                     WHERE lower({customer}) = {email} ORDER BY {created_column} DESC LIMIT {limit}",
                    id = cast(q(&c.id)),
                    name = optional(&c.name),
                    status = cast(q(&c.status)),
                    total = cast(q(&c.total)),
                    currency = optional(&c.currency),
                    tracking = optional(&c.tracking_number),
                    created = timestamp_text(engine, &q(&c.created_at)),
                    table = q(&c.table),
                    customer = q(&c.customer_email),
                    created_column = q(&c.created_at),
                );
                (sql, 1)
            }
            Self::Query(query) => {
                let marker = match engine {
                    Dialect::Postgres => "$1",
                    Dialect::Mysql => "?",
                };
                let binds = match engine {
                    Dialect::Postgres => 1,
                    Dialect::Mysql => query.matches(EMAIL_PLACEHOLDER).count(),
                };
                let inner = query.trim().trim_end_matches(';').replace(EMAIL_PLACEHOLDER, marker);
                let sql = format!(
                    "SELECT {id} AS id, {name} AS name, {status} AS status, {total} AS total, {currency} AS currency, \
                     {tracking} AS tracking_number, {created} AS created_at FROM ({inner}) AS customer_orders \
                     ORDER BY customer_orders.created_at DESC LIMIT {limit}",
                    id = cast("customer_orders.id".into()),
                    name = cast("customer_orders.name".into()),
                    status = cast("customer_orders.status".into()),
                    total = cast("customer_orders.total".into()),
                    currency = cast("customer_orders.currency".into()),
                    tracking = cast("customer_orders.tracking_number".into()),
                    created = timestamp_text(engine, "customer_orders.created_at"),
                );
                (sql, binds)
            }
        }
    }
}

impl OrderColumns {
    fn parse(map: &Map<String, Value>) -> Result<Self> {
        if let Some(unknown) = map
            .keys()
            .find(|k| !COLUMNS_FIELDS.split(", ").any(|f| f == k.as_str()))
        {
            return Err(ServiceError::invalid(
                "settings.orders",
                format!("{unknown:?} is not part of an order mapping ({COLUMNS_FIELDS}, or query)"),
            ));
        }
        let required = |key: &'static str, field: &'static str| {
            identifier(map, key, field)?.ok_or_else(|| ServiceError::invalid(field, "is required"))
        };
        let table = required("table", "settings.orders.table")?;
        if table.split('.').count() > 2 {
            return Err(ServiceError::invalid(
                "settings.orders.table",
                "must be a table or schema.table",
            ));
        }
        Ok(Self {
            table,
            id: required("id", "settings.orders.id")?,
            customer_email: required("customer_email", "settings.orders.customer_email")?,
            status: required("status", "settings.orders.status")?,
            total: required("total", "settings.orders.total")?,
            created_at: required("created_at", "settings.orders.created_at")?,
            name: identifier(map, "name", "settings.orders.name")?,
            currency: identifier(map, "currency", "settings.orders.currency")?,
            tracking_number: identifier(map, "tracking_number", "settings.orders.tracking_number")?,
        })
    }

    fn to_json(&self) -> Value {
        let mut json = json!({
            "table": self.table, "id": self.id, "customer_email": self.customer_email,
            "status": self.status, "total": self.total, "created_at": self.created_at,
        });
        for (key, value) in [
            ("name", &self.name),
            ("currency", &self.currency),
            ("tracking_number", &self.tracking_number),
        ] {
            if let Some(value) = value {
                json[key] = json!(value);
            }
        }
        json
    }
}

/// A written query: one `SELECT` or `WITH` statement that takes the
/// customer's email. The database has the last word (it is tried when
/// saved); this catches what can be said plainly before.
fn checked_query(value: &Value) -> Result<String> {
    let wrong = |reason: String| ServiceError::invalid("settings.orders.query", reason);
    let query = value.as_str().map(str::trim).unwrap_or_default();
    if query.is_empty() || query.len() > MAX_QUERY_BYTES {
        return Err(wrong(format!("must be a SELECT of at most {MAX_QUERY_BYTES} bytes")));
    }
    let first = query.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
    if first != "SELECT" && first != "WITH" {
        return Err(wrong("must be one SELECT (or WITH … SELECT) statement".into()));
    }
    if query.trim_end_matches(';').contains(';') {
        return Err(wrong("must be a single statement".into()));
    }
    if !query.contains(EMAIL_PLACEHOLDER) {
        return Err(wrong(format!(
            "must take the customer's email as {EMAIL_PLACEHOLDER} (it is bound, never spliced)"
        )));
    }
    Ok(query.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_columns_are_quoted_and_the_email_bound() {
        let source = OrderSource::parse(&json!({"table": "shop.orders", "id": "id", "customer_email": "email",
            "status": "state", "total": "amount", "created_at": "placed_at", "tracking_number": "tracking"}))
        .unwrap();
        let (sql, binds) = source.select(Dialect::Postgres, 5);
        assert!(
            sql.contains(r#"FROM "shop"."orders" WHERE lower("email") = lower($1)"#),
            "{sql}"
        );
        assert!(sql.contains("NULL AS currency") && sql.ends_with("LIMIT 5"), "{sql}");
        assert_eq!(binds, 1);
        assert!(source.select(Dialect::Mysql, 5).0.contains("lower(`email`) = lower(?)"));
    }

    #[test]
    fn a_written_query_is_one_select_taking_the_email() {
        let query = "SELECT o.id, o.ref AS name, o.status, o.total, 'EUR' AS currency, NULL AS tracking_number, \
                     o.created_at FROM orders o JOIN customers c ON c.id = o.customer_id \
                     WHERE c.email = :customer_email OR c.alt_email = :customer_email;";
        let source = OrderSource::parse(&json!({ "query": query })).unwrap();
        let (pg, binds) = source.select(Dialect::Postgres, 3);
        assert!(
            pg.contains("c.email = $1 OR c.alt_email = $1) AS customer_orders"),
            "{pg}"
        );
        assert_eq!(binds, 1);
        assert_eq!(source.select(Dialect::Mysql, 3).1, 2, "MySQL binds each ? on its own");
        for wrong in [
            "DELETE FROM orders WHERE email = :customer_email",
            "SELECT 1 FROM orders WHERE email = :customer_email; DROP TABLE orders",
            "SELECT * FROM orders WHERE email = 'x'",
            "",
        ] {
            assert!(OrderSource::parse(&json!({ "query": wrong })).is_err(), "{wrong}");
        }
        assert!(OrderSource::parse(&json!({"query": query, "table": "orders"})).is_err());
    }
}
