//! Cursor pagination shared by every List RPC: `limit` (default 20, max 100)
//! and an opaque `cursor` that encodes the sort key of the last row served.
//!
//! Cursors are keyset positions, not offsets, so rows inserted while a
//! client pages never cause gaps or repeats.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use tonic::Status;

use crate::field_error::invalid_argument;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// Validates a requested page size; 0 means the default.
pub fn page_limit(requested: i32) -> Result<i64, Status> {
    match i64::from(requested) {
        0 => Ok(DEFAULT_LIMIT),
        n if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(invalid_argument("limit", &format!("must be between 1 and {MAX_LIMIT}"))),
    }
}

/// Encodes a keyset position as an opaque cursor.
pub fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

/// Decodes a cursor made by [`encode_cursor`]; empty means the first page.
pub fn decode_cursor(cursor: &str) -> Result<Option<String>, Status> {
    if cursor.is_empty() {
        return Ok(None);
    }
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(Some)
        .ok_or_else(|| invalid_argument("cursor", "is not a cursor returned by this API"))
}

/// The position of a row in a newest-first list: its creation time, then
/// its id to break ties between rows created in the same microsecond.
pub fn newest_first_position(created_at: DateTime<Utc>, id: &str) -> String {
    format!("{}|{id}", created_at.timestamp_micros())
}

/// Decodes a newest-first cursor into the (created_at, id) to continue after.
pub fn newest_first_after(cursor: &str) -> Result<Option<(DateTime<Utc>, String)>, Status> {
    let Some(position) = decode_cursor(cursor)? else {
        return Ok(None);
    };
    position
        .split_once('|')
        .and_then(|(micros, id)| {
            let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
            (!id.is_empty() && id.len() <= 128).then(|| (at, id.to_owned()))
        })
        .map(Some)
        .ok_or_else(|| invalid_argument("cursor", "is not a cursor returned by this API"))
}

/// One page of a newest-first list: where to continue and how many rows.
///
/// Queries put [`NewestFirst::CLAUSE`] after their own `WHERE workspace_id
/// = $1 AND …` and bind with [`NewestFirst::bind`], so the keyset logic is
/// written once.
#[derive(Debug, Clone)]
pub struct NewestFirst {
    after: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

impl NewestFirst {
    /// Continues after the cursor's row; takes `$2`, `$3` and `$4`.
    pub const CLAUSE: &'static str = "($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC
         LIMIT $4";

    pub fn new(limit: i32, cursor: &str) -> Result<Self, Status> {
        Ok(Self {
            limit: page_limit(limit)?,
            after: newest_first_after(cursor)?,
        })
    }

    /// Binds `$2`..`$4` (the caller has bound `$1`, the workspace).
    pub fn bind<'q, O>(
        &'q self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        let (at, id) = match &self.after {
            Some((at, id)) => (Some(*at), Some(id.as_str())),
            None => (None, None),
        };
        query.bind(at).bind(id).bind(self.limit + 1)
    }

    /// This page of the workspace's rows that `select` reads (`SELECT …
    /// FROM table`): the whole query for lists with no filter of their own.
    pub async fn fetch<'e, T>(
        &self,
        db: impl sqlx::PgExecutor<'e>,
        select: &str,
        workspace_id: &str,
    ) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let sql = format!("{select} WHERE workspace_id = $1 AND {}", Self::CLAUSE);
        self.bind(sqlx::query_as(&sql).bind(workspace_id)).fetch_all(db).await
    }

    /// Trims the probe row and makes the next cursor.
    pub fn finish<T>(&self, rows: Vec<T>, key: impl Fn(&T) -> (DateTime<Utc>, &str)) -> (Vec<T>, String) {
        finish_page(rows, self.limit, |row| {
            let (at, id) = key(row);
            newest_first_position(at, id)
        })
    }
}

/// A page of `rows` fetched with `limit + 1`: trims the probe row and returns
/// the cursor for the next page, built from the last row kept.
pub fn finish_page<T>(mut rows: Vec<T>, limit: i64, position: impl Fn(&T) -> String) -> (Vec<T>, String) {
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = match rows.last() {
        Some(last) if has_more => encode_cursor(&position(last)),
        _ => String::new(),
    };
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_its_position() {
        let cursor = encode_cursor("1700000000000000|conv_abc");
        assert_eq!(
            decode_cursor(&cursor).unwrap().as_deref(),
            Some("1700000000000000|conv_abc")
        );
    }

    #[test]
    fn a_forged_cursor_is_an_invalid_argument_naming_cursor() {
        let err = decode_cursor("%%%").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with("cursor:"));
    }

    #[test]
    fn limits_outside_one_to_a_hundred_are_rejected() {
        assert_eq!(page_limit(0).unwrap(), 20);
        assert_eq!(page_limit(100).unwrap(), 100);
        assert!(page_limit(101).is_err());
        assert!(page_limit(-1).is_err());
    }

    #[test]
    fn a_newest_first_cursor_round_trips() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let cursor = encode_cursor(&newest_first_position(at, "bot_x"));
        assert_eq!(newest_first_after(&cursor).unwrap(), Some((at, "bot_x".to_owned())));
        assert!(newest_first_after(&encode_cursor("12")).is_err());
        assert_eq!(newest_first_after("").unwrap(), None);
    }

    #[test]
    fn the_last_page_has_no_next_cursor() {
        let (rows, next) = finish_page(vec![1, 2, 3], 3, |n| n.to_string());
        assert_eq!(rows, vec![1, 2, 3]);
        assert!(next.is_empty());
        let (rows, next) = finish_page(vec![1, 2, 3, 4], 3, |n| n.to_string());
        assert_eq!(rows, vec![1, 2, 3]);
        assert_eq!(decode_cursor(&next).unwrap().as_deref(), Some("3"));
    }
}
