//! API keys: generation, storage as hashes, and verification.
//!
//! A key reads `cbk_<lookup id><secret>`: the 12-character lookup id finds
//! the row, then the SHA-256 of the whole key is compared in constant time.
//! The database never holds a usable key, and a wrong key costs the same
//! time whether or not its lookup id exists.

use chrono::{DateTime, Utc};
use rand::{Rng, distributions::Alphanumeric};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use super::Principal;

const KEY_PREFIX: &str = "cbk_";
const LOOKUP_LEN: usize = 12;
const SECRET_LEN: usize = 40;

/// A freshly created key; `key` is shown to its owner once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedKey {
    pub id: String,
    pub key: String,
    pub prefix: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// Key material: letters of both cases and digits.
fn random_text(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Splits a presented key into its lookup id, or `None` if malformed.
fn lookup_id(key: &str) -> Option<&str> {
    let body = key.strip_prefix(KEY_PREFIX)?;
    (body.len() == LOOKUP_LEN + SECRET_LEN && body.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| &body[..LOOKUP_LEN])
}

/// Creates a key for `workspace_id` inside `executor`'s transaction or pool.
pub async fn issue<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    workspace_id: &str,
    name: &str,
    scopes: Vec<String>,
) -> Result<IssuedKey, sqlx::Error> {
    let lookup = random_text(LOOKUP_LEN);
    let key = format!("{KEY_PREFIX}{lookup}{}", random_text(SECRET_LEN));
    let id = ids::ApiKeyId::generate().into_string();
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO api_keys (id, workspace_id, lookup_id, secret_hash, name, scopes)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING created_at",
    )
    .bind(&id)
    .bind(workspace_id)
    .bind(&lookup)
    .bind(hash(&key).as_slice())
    .bind(name)
    .bind(&scopes)
    .fetch_one(executor)
    .await?;
    Ok(IssuedKey {
        id,
        prefix: format!("{KEY_PREFIX}{lookup}"),
        key,
        name: name.to_owned(),
        scopes,
        created_at,
    })
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    workspace_id: String,
    secret_hash: Vec<u8>,
    scopes: Vec<String>,
    last_used_at: Option<DateTime<Utc>>,
    plan: String,
}

/// `last_used_at` is kept to this precision, so a busy key costs one write a
/// minute rather than one per request.
const LAST_USED_PRECISION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// The principal a presented key stands for, or `None` for a wrong,
/// malformed or revoked key.
pub async fn verify(pool: &PgPool, presented: &str) -> Result<Option<Principal>, sqlx::Error> {
    let presented_hash = hash(presented);
    let Some(lookup) = lookup_id(presented) else {
        return Ok(None);
    };
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT k.id, k.workspace_id, k.secret_hash, k.scopes, k.last_used_at, w.plan
         FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id
         WHERE k.lookup_id = $1 AND k.revoked_at IS NULL",
    )
    .bind(lookup)
    .fetch_optional(pool)
    .await?;
    // Compare against a dummy hash when no row exists, so both paths do the
    // same work.
    let stored = row.as_ref().map_or([0u8; 32].as_slice(), |r| r.secret_hash.as_slice());
    let matches: bool = presented_hash.as_slice().ct_eq(stored).into();
    let row = row.filter(|_| matches);
    if let Some(row) = &row
        && row.last_used_at.is_none_or(|at| Utc::now() - at > LAST_USED_PRECISION)
    {
        touch(pool.clone(), row.id.clone());
    }
    Ok(row.map(|row| Principal {
        workspace_id: row.workspace_id,
        principal_id: row.id,
        scopes: row.scopes,
        plan: row.plan,
    }))
}

/// Records use off the request path; a lost update only makes
/// `last_used_at` a minute staler.
fn touch(pool: PgPool, id: String) {
    tokio::spawn(async move {
        let result = sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1")
            .bind(&id)
            .execute(&pool)
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "recording API key use");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_a_lookup_id_and_malformed_ones_do_not() {
        let key = format!("{KEY_PREFIX}{}{}", random_text(LOOKUP_LEN), random_text(SECRET_LEN));
        assert_eq!(lookup_id(&key), Some(&key[4..16]));
        assert_eq!(lookup_id("cbk_short"), None);
        assert_eq!(lookup_id(&key.replace("cbk_", "xxx_")), None);
        assert_eq!(lookup_id(&format!("{key}!")), None);
    }

    #[test]
    fn the_stored_hash_is_not_the_key() {
        let key = "cbk_abcdefghijkl0123456789012345678901234567890123456789";
        assert_ne!(hash(key).as_slice(), key.as_bytes());
        assert_eq!(hash(key), hash(key));
    }
}
