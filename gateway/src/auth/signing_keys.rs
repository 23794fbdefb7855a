//! The gateway's own ES256 keys for the access tokens it issues.
//!
//! Keys live in the database so every replica signs and verifies with the
//! same set. Rotating makes a new key active and retires the old one, which
//! stays in the JWKS (and keeps verifying) until every token it signed has
//! expired. Replicas reload the set periodically and on an unknown `kid`.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::{elliptic_curve::sec1::ToEncodedPoint, pkcs8::EncodePrivateKey};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("signing key {kid} is unusable: {reason}")]
    Corrupt { kid: String, reason: String },
    #[error("no active signing key")]
    NoActiveKey,
    #[error("signing: {0}")]
    Sign(String),
}

struct KeySet {
    active: Option<(String, EncodingKey)>,
    verifying: HashMap<String, DecodingKey>,
    public: Vec<Value>,
}

pub struct SigningKeys {
    pool: PgPool,
    /// How long a retired key keeps verifying: the access token lifetime.
    grace: Duration,
    set: RwLock<KeySet>,
    last_reload: Mutex<Instant>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    private_key_der: Vec<u8>,
    public_jwk: Value,
    retired_at: Option<chrono::DateTime<chrono::Utc>>,
}

const RELOAD_FLOOR: Duration = Duration::from_secs(5);

impl SigningKeys {
    /// Loads the key set, creating the first key if there is none.
    pub async fn load(pool: PgPool, grace: Duration) -> Result<Arc<Self>, KeyError> {
        let keys = Arc::new(Self {
            pool,
            grace,
            set: RwLock::new(KeySet {
                active: None,
                verifying: HashMap::new(),
                public: Vec::new(),
            }),
            last_reload: Mutex::new(Instant::now()),
        });
        keys.reload().await?;
        if keys.set.read().map(|s| s.active.is_none()).unwrap_or(true) {
            keys.create_first().await?;
            keys.reload().await?;
        }
        Ok(keys)
    }

    /// Makes a new key active and retires the current one. Returns its kid.
    pub async fn rotate(&self) -> Result<String, KeyError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE oauth_signing_keys SET retired_at = now() WHERE retired_at IS NULL")
            .execute(&mut *tx)
            .await?;
        let kid = insert_new_key(&mut tx).await?;
        tx.commit().await?;
        self.reload().await?;
        Ok(kid)
    }

    /// Signs `claims` with the active key.
    pub fn sign(&self, claims: &Value) -> Result<String, KeyError> {
        let set = self.set.read().map_err(|_| KeyError::NoActiveKey)?;
        let (kid, key) = set.active.as_ref().ok_or(KeyError::NoActiveKey)?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// The key that verifies tokens signed as `kid`, reloading the set (at
    /// most every few seconds) when another replica rotated.
    pub async fn verifying_key(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        {
            let mut last = self.last_reload.lock().await;
            if last.elapsed() < RELOAD_FLOOR {
                return None;
            }
            *last = Instant::now();
        }
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, "reloading signing keys");
        }
        self.cached(kid)
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.set.read().ok()?.verifying.get(kid).cloned()
    }

    /// The public keys, as a JWKS document.
    pub fn jwks(&self) -> Value {
        let keys = self.set.read().map(|s| s.public.clone()).unwrap_or_default();
        json!({ "keys": keys })
    }

    pub fn spawn_reload(self: &Arc<Self>, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        let keys = Arc::clone(self);
        service_runtime::shutdown::spawn_periodic(every, shutdown, move || {
            let keys = Arc::clone(&keys);
            async move {
                if let Err(error) = keys.reload().await {
                    tracing::warn!(%error, "reloading signing keys");
                }
            }
        });
    }

    async fn reload(&self) -> Result<(), KeyError> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT kid, private_key_der, public_jwk, retired_at FROM oauth_signing_keys
             WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1)
             ORDER BY created_at DESC",
        )
        .bind(self.grace.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut set = KeySet {
            active: None,
            verifying: HashMap::new(),
            public: Vec::new(),
        };
        for row in rows {
            let corrupt = |reason: &str| KeyError::Corrupt {
                kid: row.kid.clone(),
                reason: reason.to_owned(),
            };
            let x = row.public_jwk["x"].as_str().ok_or_else(|| corrupt("no x"))?;
            let y = row.public_jwk["y"].as_str().ok_or_else(|| corrupt("no y"))?;
            let verifying = DecodingKey::from_ec_components(x, y).map_err(|e| corrupt(&e.to_string()))?;
            if row.retired_at.is_none() && set.active.is_none() {
                set.active = Some((row.kid.clone(), EncodingKey::from_ec_der(&row.private_key_der)));
            }
            set.verifying.insert(row.kid.clone(), verifying);
            set.public.push(row.public_jwk);
        }
        if let Ok(mut slot) = self.set.write() {
            *slot = set;
        }
        Ok(())
    }

    async fn create_first(&self) -> Result<(), KeyError> {
        // Replicas starting together must not each create a first key.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('oauth_signing_keys'))")
            .execute(&mut *tx)
            .await?;
        let active: Option<String> =
            sqlx::query_scalar("SELECT kid FROM oauth_signing_keys WHERE retired_at IS NULL LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        if active.is_none() {
            insert_new_key(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_new_key(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<String, KeyError> {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let der = secret
        .to_pkcs8_der()
        .map_err(|e| KeyError::Sign(format!("encoding a new key: {e}")))?;
    let point = secret.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(KeyError::Sign("a new key has no affine coordinates".into()));
    };
    let kid = format!("gw-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
    let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                     "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)});
    sqlx::query("INSERT INTO oauth_signing_keys (kid, private_key_der, public_jwk) VALUES ($1, $2, $3)")
        .bind(&kid)
        .bind(der.as_bytes())
        .bind(&jwk)
        .execute(&mut **tx)
        .await?;
    Ok(kid)
}
