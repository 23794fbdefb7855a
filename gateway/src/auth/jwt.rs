//! Bearer JWTs: HS256 with a shared secret, and asymmetric algorithms
//! (RS256, ES256, EdDSA, …) verified against a JWKS.
//!
//! The algorithm allow-list is explicit. HS256 is only ever checked with the
//! configured secret and asymmetric algorithms only with JWKS keys, so a
//! token cannot pick its own verification path (no `none`, no HS/RS
//! confusion with a public key used as an HMAC secret).

use std::{collections::HashSet, sync::Arc};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde::Deserialize;

use tokio_util::sync::CancellationToken;

use super::{
    Principal,
    jwks::{Jwks, JwksError},
    jwt_config::{DEFAULT_LEEWAY_SECONDS, DEFAULT_WORKSPACE_CLAIM, JwtConfig},
    scopes,
    signing_keys::SigningKeys,
};

pub struct JwtVerifier {
    /// The gateway's own access tokens (its OAuth server), chosen by `iss`.
    own: Option<OwnTokens>,
    hs256: Option<DecodingKey>,
    jwks: Option<Arc<Jwks>>,
    /// Asymmetric algorithms accepted with JWKS keys.
    asymmetric: Vec<Algorithm>,
    issuers: Vec<String>,
    audience: String,
    leeway_seconds: u64,
    workspace_claim: String,
}

/// Why a token was refused; the text goes into the 401 detail.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JwtError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    #[error("the token names no key id (kid)")]
    MissingKid,
    #[error("the token's key id is not in the key set")]
    UnknownKid,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    Issuer,
    #[error("the token's audience is not accepted")]
    Audience,
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
}

/// How the gateway's own access tokens are recognised and verified.
pub struct OwnTokens {
    pub issuer: String,
    pub audience: String,
    pub keys: Arc<SigningKeys>,
}

pub struct JwtSettings {
    pub own: Option<OwnTokens>,
    pub hs256_secret: Option<String>,
    pub jwks: Option<Arc<Jwks>>,
    pub asymmetric_algorithms: Vec<Algorithm>,
    pub issuers: Vec<String>,
    pub audience: String,
    pub leeway_seconds: u64,
    pub workspace_claim: String,
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    scope: Option<String>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl JwtVerifier {
    /// Verifies the gateway's own tokens and, when `config` is set, the
    /// identity provider's; a key set is loaded now and refreshed in the
    /// background until `shutdown`.
    pub async fn from_config(
        config: Option<&JwtConfig>,
        own: OwnTokens,
        shutdown: &CancellationToken,
    ) -> Result<Self, JwksError> {
        let Some(jwt) = config else {
            return Ok(Self::new(JwtSettings {
                own: Some(own),
                hs256_secret: None,
                jwks: None,
                asymmetric_algorithms: Vec::new(),
                issuers: Vec::new(),
                audience: String::new(),
                leeway_seconds: DEFAULT_LEEWAY_SECONDS,
                workspace_claim: DEFAULT_WORKSPACE_CLAIM.into(),
            }));
        };
        let jwks = match &jwt.jwks {
            Some(source) => {
                let jwks = Jwks::load(source.clone(), jwt.jwks_min_refresh).await?;
                jwks.spawn_refresh(jwt.jwks_refresh_every, shutdown.clone());
                Some(jwks)
            }
            None => None,
        };
        Ok(Self::new(JwtSettings {
            own: Some(own),
            hs256_secret: jwt.hs256_secret.clone(),
            jwks,
            asymmetric_algorithms: jwt.asymmetric_algorithms.clone(),
            issuers: jwt.issuers.clone(),
            audience: jwt.audience.clone(),
            leeway_seconds: jwt.leeway_seconds,
            workspace_claim: jwt.workspace_claim.clone(),
        }))
    }

    pub fn new(settings: JwtSettings) -> Self {
        Self {
            own: settings.own,
            hs256: settings.hs256_secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            jwks: settings.jwks,
            asymmetric: settings.asymmetric_algorithms,
            issuers: settings.issuers,
            audience: settings.audience,
            leeway_seconds: settings.leeway_seconds,
            workspace_claim: settings.workspace_claim,
        }
    }

    /// Verifies `token` and maps its claims to a principal.
    pub async fn verify(&self, token: &str) -> Result<Principal, JwtError> {
        let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
        // The unverified `iss` only picks which keys to try; the signature
        // and every claim are then checked against that issuer's rules.
        let claimed_issuer = jsonwebtoken::dangerous::insecure_decode_claims::<IssuerOnly>(token)
            .ok()
            .and_then(|c| c.iss);
        let (key, issuers, audience) = match &self.own {
            Some(own) if claimed_issuer.as_deref() == Some(own.issuer.as_str()) => (
                self.own_key(own, header.alg, header.kid.as_deref()).await?,
                vec![own.issuer.clone()],
                &own.audience,
            ),
            _ => (
                self.key_for(header.alg, header.kid.as_deref()).await?,
                self.issuers.clone(),
                &self.audience,
            ),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&issuers);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway_seconds;
        let data = decode::<Claims>(token, &key, &validation).map_err(|e| classify(e.into_kind()))?;
        self.principal(data.claims)
    }

    async fn own_key(&self, own: &OwnTokens, alg: Algorithm, kid: Option<&str>) -> Result<DecodingKey, JwtError> {
        if alg != Algorithm::ES256 {
            return Err(JwtError::Algorithm(alg));
        }
        own.keys
            .verifying_key(kid.ok_or(JwtError::MissingKid)?)
            .await
            .ok_or(JwtError::UnknownKid)
    }

    async fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Result<DecodingKey, JwtError> {
        if self.issuers.is_empty() {
            // No external identity provider is configured.
            return Err(JwtError::Issuer);
        }
        if alg == Algorithm::HS256 {
            return self.hs256.clone().ok_or(JwtError::Algorithm(alg));
        }
        if !self.asymmetric.contains(&alg) {
            return Err(JwtError::Algorithm(alg));
        }
        let jwks = self.jwks.as_ref().ok_or(JwtError::Algorithm(alg))?;
        let found = jwks
            .key(kid.ok_or(JwtError::MissingKid)?)
            .await
            .ok_or(JwtError::UnknownKid)?;
        if found.algorithm.is_some_and(|pinned| pinned != alg) {
            return Err(JwtError::Algorithm(alg));
        }
        Ok((*found.key).clone())
    }

    fn principal(&self, claims: Claims) -> Result<Principal, JwtError> {
        let sub = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| JwtError::MissingClaim("sub".into()))?;
        let workspace_id = claims
            .rest
            .get(&self.workspace_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| JwtError::MissingClaim(self.workspace_claim.clone()))?
            .to_owned();
        let granted: HashSet<&str> = claims
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .chain(claims.permissions.iter().map(String::as_str))
            .collect();
        // Only scopes this platform knows become part of the principal.
        let scopes = scopes::ALL
            .iter()
            .filter(|s| granted.contains(*s))
            .map(|s| (*s).to_owned())
            .collect();
        Ok(Principal {
            workspace_id,
            principal_id: format!("jwt:{sub}"),
            scopes,
            plan: crate::auth::workspace_plans::DEFAULT_PLAN.to_owned(),
        })
    }
}

fn classify(kind: ErrorKind) -> JwtError {
    match kind {
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::Issuer,
        ErrorKind::InvalidAudience => JwtError::Audience,
        ErrorKind::MissingRequiredClaim(claim) => JwtError::MissingClaim(claim),
        ErrorKind::InvalidSignature => JwtError::Signature,
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => JwtError::Malformed,
        _ => JwtError::Signature,
    }
}

/// How long a token that just verified stays valid (from its `exp`).
pub fn remaining_lifetime(token: &str) -> std::time::Duration {
    #[derive(Deserialize)]
    struct Expiry {
        exp: Option<i64>,
    }
    let exp = jsonwebtoken::dangerous::insecure_decode_claims::<Expiry>(token)
        .ok()
        .and_then(|c| c.exp);
    let left = exp.map_or(0, |exp| exp - chrono::Utc::now().timestamp());
    std::time::Duration::from_secs(left.max(0) as u64)
}

/// Whether a bearer token looks like a JWT (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "an-hs256-secret-that-is-long-enough-1234";

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(JwtSettings {
            own: None,
            hs256_secret: Some(SECRET.into()),
            jwks: None,
            asymmetric_algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
            issuers: vec!["https://idp.test".into()],
            audience: "chatbot-api".into(),
            leeway_seconds: 5,
            workspace_claim: "workspace_id".into(),
        })
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims() -> serde_json::Value {
        json!({"sub": "user-1", "iss": "https://idp.test", "aud": "chatbot-api", "exp": now() + 60,
               "workspace_id": "ws_1", "scope": "read:bots made:up"})
    }

    #[tokio::test]
    async fn a_valid_token_becomes_a_principal_with_known_scopes_only() {
        let principal = verifier().verify(&token(claims())).await.unwrap();
        assert_eq!(principal.workspace_id, "ws_1");
        assert_eq!(principal.principal_id, "jwt:user-1");
        assert_eq!(principal.scopes, vec!["read:bots".to_owned()]);
    }

    #[tokio::test]
    async fn each_bad_claim_is_refused_with_its_reason() {
        let v = verifier();
        let mut c = claims();
        c["exp"] = json!(now() - 60);
        assert_eq!(v.verify(&token(c)).await, Err(JwtError::Expired));
        let mut c = claims();
        c["nbf"] = json!(now() + 60);
        assert_eq!(v.verify(&token(c)).await, Err(JwtError::NotYetValid));
        let mut c = claims();
        c["iss"] = json!("https://evil.test");
        assert_eq!(v.verify(&token(c)).await, Err(JwtError::Issuer));
        let mut c = claims();
        c["aud"] = json!("another-api");
        assert_eq!(v.verify(&token(c)).await, Err(JwtError::Audience));
        let mut c = claims();
        c.as_object_mut().unwrap().remove("workspace_id");
        assert_eq!(
            v.verify(&token(c)).await,
            Err(JwtError::MissingClaim("workspace_id".into()))
        );
    }

    #[tokio::test]
    async fn tampering_and_algorithm_tricks_are_refused() {
        let v = verifier();
        let good = token(claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut forged = claims();
        forged["workspace_id"] = json!("ws_victim");
        let forged_payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&forged).unwrap(),
        );
        parts[1] = &forged_payload;
        assert_eq!(v.verify(&parts.join(".")).await, Err(JwtError::Signature));

        let none_header =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, br#"{"alg":"none"}"#);
        let unsigned = format!("{none_header}.{}.", good.split('.').nth(1).unwrap());
        assert!(v.verify(&unsigned).await.is_err(), "alg none is never accepted");

        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        );
        assert_eq!(
            v.verify(&hs384.unwrap()).await,
            Err(JwtError::Algorithm(Algorithm::HS384))
        );
    }
}
