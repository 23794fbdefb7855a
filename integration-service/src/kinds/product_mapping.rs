//! Where a workspace's own database keeps its products: a table and the
//! columns that hold each field, named in the connection's settings. The
//! names are checked as plain identifiers and quoted for the engine, so
//! they can only ever name a column; the values the platform passes (the
//! cursor) are always bound, never spliced.

use serde_json::{Map, Value, json};
use service_runtime::error::ServiceError;

/// The SQL dialect a query is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Rows one poll reads at most.
pub const PAGE: i64 = 500;
/// Ids one page of a sweep reads.
pub const ID_PAGE: i64 = 10_000;
const FIELDS: &str = "table, id, title, description, price, stock, updated_at";

#[derive(Debug, Clone, PartialEq)]
pub struct ProductMapping {
    /// `products` or `schema.products`.
    pub table: String,
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub price: Option<String>,
    pub stock: String,
    /// When a row last changed: the polling cursor.
    pub updated_at: String,
}

impl ProductMapping {
    pub fn parse(value: &Value) -> Result<Self> {
        let Some(map) = value.as_object() else {
            return Err(ServiceError::invalid(
                "settings.products",
                "must name the table and its columns",
            ));
        };
        if let Some(unknown) = map.keys().find(|k| !FIELDS.split(", ").any(|f| f == k.as_str())) {
            return Err(ServiceError::invalid(
                "settings.products",
                format!("{unknown:?} is not part of a product mapping ({FIELDS})"),
            ));
        }
        let required = |key: &'static str, field: &'static str| {
            identifier(map, key, field)?.ok_or_else(|| ServiceError::invalid(field, "is required"))
        };
        let table = required("table", "settings.products.table")?;
        if table.split('.').count() > 2 {
            return Err(ServiceError::invalid(
                "settings.products.table",
                "must be a table or schema.table",
            ));
        }
        Ok(Self {
            table,
            id: required("id", "settings.products.id")?,
            title: required("title", "settings.products.title")?,
            description: identifier(map, "description", "settings.products.description")?,
            price: identifier(map, "price", "settings.products.price")?,
            stock: required("stock", "settings.products.stock")?,
            updated_at: required("updated_at", "settings.products.updated_at")?,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut json = json!({
            "table": self.table, "id": self.id, "title": self.title,
            "stock": self.stock, "updated_at": self.updated_at,
        });
        if let Some(description) = &self.description {
            json["description"] = json!(description);
        }
        if let Some(price) = &self.price {
            json["price"] = json!(price);
        }
        json
    }

    /// The rows changed after the cursor (`$1`/`?`: the change time as
    /// text, `$2`/`?`: the id as text), oldest change first, with every
    /// field as the type the platform reads.
    pub fn select(&self, engine: Dialect) -> String {
        let q = |name: &str| quoted(engine, name);
        let (text, bigint) = cast_types(engine);
        let changed = timestamp_text(engine, &q(&self.updated_at));
        let optional = |column: &Option<String>| match column {
            Some(column) => format!("CAST({} AS {text})", q(column)),
            None => "NULL".to_owned(),
        };
        let (first, second) = match engine {
            Dialect::Postgres => ("$1", "$2"),
            Dialect::Mysql => ("?", "?"),
        };
        format!(
            "SELECT CAST({id} AS {text}) AS id, CAST({title} AS {text}) AS title, {description} AS description, \
             {price} AS price, CAST({stock} AS {bigint}) AS stock, {changed} AS changed \
             FROM {table} WHERE ({changed}, CAST({id} AS {text})) > ({first}, {second}) \
             ORDER BY 6, 1 LIMIT {PAGE}",
            id = q(&self.id),
            title = q(&self.title),
            description = optional(&self.description),
            price = optional(&self.price),
            stock = q(&self.stock),
            table = q(&self.table),
        )
    }

    /// Every id after `$1`/`?` (as text), in order, one page: what a sweep
    /// reads to find rows deleted since they were read.
    pub fn ids(&self, engine: Dialect) -> String {
        let (text, _) = cast_types(engine);
        let id = format!("CAST({} AS {text})", quoted(engine, &self.id));
        let after = match engine {
            Dialect::Postgres => "$1",
            Dialect::Mysql => "?",
        };
        format!(
            "SELECT {id} AS id FROM {table} WHERE {id} > {after} ORDER BY 1 LIMIT {ID_PAGE}",
            table = quoted(engine, &self.table),
        )
    }
}

/// A timestamp column as sortable text, to the microsecond.
pub fn timestamp_text(engine: Dialect, column: &str) -> String {
    match engine {
        Dialect::Postgres => format!(r#"to_char({column}, 'YYYY-MM-DD"T"HH24:MI:SS.US')"#),
        Dialect::Mysql => format!("DATE_FORMAT({column}, '%Y-%m-%dT%H:%i:%s.%f')"),
    }
}

/// The type names a value is cast to for the platform to read it: text
/// and a 64-bit integer.
pub fn cast_types(engine: Dialect) -> (&'static str, &'static str) {
    match engine {
        Dialect::Postgres => ("TEXT", "BIGINT"),
        Dialect::Mysql => ("CHAR", "SIGNED"),
    }
}

/// An optional identifier setting, checked.
pub fn identifier(map: &Map<String, Value>, key: &str, field: &'static str) -> Result<Option<String>> {
    let Some(value) = map.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let text = value.as_str().unwrap_or_default().trim();
    let plain = |part: &str| {
        !part.is_empty()
            && part.len() <= 63
            && part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if !text.split('.').all(plain) {
        return Err(ServiceError::invalid(
            field,
            "must be a plain name: letters, digits and underscores",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// A checked identifier (or `schema.name`) quoted for the engine.
pub fn quoted(engine: Dialect, name: &str) -> String {
    let quote = match engine {
        Dialect::Postgres => '"',
        Dialect::Mysql => '`',
    };
    name.split('.')
        .map(|part| format!("{quote}{part}{quote}"))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_taken_and_values_are_bound() {
        let mapping = ProductMapping::parse(&json!({"table": "shop.items", "id": "sku", "title": "name",
            "stock": "qty", "updated_at": "changed_at"}))
        .unwrap();
        let sql = mapping.select(Dialect::Postgres);
        assert!(sql.contains(r#"FROM "shop"."items""#), "{sql}");
        assert!(sql.contains("> ($1, $2)"), "{sql}");
        assert!(mapping.select(Dialect::Mysql).contains("FROM `shop`.`items`"));
        for wrong in ["items; DROP TABLE x", "a.b.c", "na\"me", ""] {
            let mapping = json!({"table": wrong, "id": "sku", "title": "name", "stock": "qty", "updated_at": "t"});
            assert!(ProductMapping::parse(&mapping).is_err(), "{wrong}");
        }
    }
}
