//! A test identity provider: signing keys it makes itself (Ed25519, P-256),
//! a JWKS endpoint on loopback whose content and health a test controls,
//! and tokens minted with any claims or header a test wants.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "chatbot-api";
pub const HS256_SECRET: &str = "test-hs256-secret-0123456789abcdefghij";

/// One signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    pub fn ed25519(kid: &str) -> Self {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = key.to_pkcs8_der().expect("Ed25519 key encodes as PKCS#8");
        Self {
            kid: kid.into(),
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
                        "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes())}),
        }
    }

    pub fn p256(kid: &str) -> Self {
        let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).expect("P-256 key encodes as PKCS#8");
        let point = key.public_key().to_encoded_point(false);
        Self {
            kid: kid.into(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                        "x": URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed point has x")),
                        "y": URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed point has y"))}),
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).expect("signing a test token")
    }
}

/// HS256 with the shared test secret.
pub fn sign_hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS256_SECRET.as_bytes()),
    )
    .expect("signing a test token")
}

/// Standard claims for `workspace_id` with `scope`, valid for a minute.
pub fn claims(workspace_id: &str, scope: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": "user-7", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60,
           "workspace_id": workspace_id, "scope": scope})
}

#[derive(Clone, Default)]
struct Published {
    body: Arc<Mutex<(u16, String)>>,
    fetches: Arc<AtomicUsize>,
}

/// A JWKS endpoint on loopback.
pub struct JwksServer {
    pub url: String,
    published: Published,
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let published = Published::default();
        let server = Self {
            url: String::new(),
            published: published.clone(),
        };
        server.publish(keys);
        let app = Router::new().route("/jwks.json", get(serve)).with_state(published);
        let (addr, _) = crate::local_server::serve(app, "the JWKS server").await;
        Self {
            url: format!("http://{addr}/jwks.json"),
            ..server
        }
    }

    /// Serves exactly these keys from now on.
    pub fn publish(&self, keys: &[&SigningKey]) {
        let body = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string();
        *self.published.body.lock().expect("lock") = (200, body);
    }

    /// Answers 500 from now on, as an identity provider having a bad day.
    pub fn fail(&self) {
        self.published.body.lock().expect("lock").0 = 500;
    }

    pub fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }

    /// Gateway settings verifying against this endpoint.
    pub fn gateway_config(&self, min_refresh: Duration) -> gateway::config::JwtConfig {
        gateway::config::JwtConfig {
            hs256_secret: Some(HS256_SECRET.into()),
            jwks: Some(gateway::auth::jwks::JwksSource::Url(self.url.clone())),
            asymmetric_algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
            issuers: vec![ISSUER.into()],
            audience: AUDIENCE.into(),
            leeway_seconds: 5,
            workspace_claim: "workspace_id".into(),
            jwks_min_refresh: min_refresh,
            jwks_refresh_every: Duration::from_secs(3600),
        }
    }
}

async fn serve(State(published): State<Published>) -> (StatusCode, String) {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    let (status, body) = published.body.lock().expect("lock").clone();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}
