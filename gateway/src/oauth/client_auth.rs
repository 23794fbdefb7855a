//! Authenticating the client at the token and revocation endpoints: HTTP
//! Basic or `client_id`/`client_secret` form fields (RFC 6749 section
//! 2.3.1), never both; public clients send only `client_id`.

use base64::{Engine, engine::general_purpose::STANDARD};
use http::HeaderMap;
use percent_encoding::percent_decode_str;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use super::{errors::OAuthError, form::Form, hash_secret};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Client {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub kind: String,
    pub redirect_uris: Vec<String>,
    pub allowed_scopes: Vec<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.kind == "public"
    }
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    #[sqlx(flatten)]
    client: Client,
    secret_hash: Option<Vec<u8>>,
}

const CLIENT_COLUMNS: &str = "id, workspace_id, name, kind, redirect_uris, allowed_scopes, secret_hash";

pub async fn find(pool: &PgPool, client_id: &str) -> Result<Option<Client>, sqlx::Error> {
    Ok(find_row(pool, client_id).await?.map(|r| r.client))
}

async fn find_row(pool: &PgPool, client_id: &str) -> Result<Option<ClientRow>, sqlx::Error> {
    // Text that cannot be one of our ids (one with a NUL, which PostgreSQL
    // refuses outright) names no client.
    if ids::OAuthClientId::parse("client_id", client_id).is_err() {
        return Ok(None);
    }
    sqlx::query_as(&format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1"))
        .bind(client_id)
        .fetch_optional(pool)
        .await
}

/// The authenticated client of a token or revocation request.
pub async fn authenticate(pool: &PgPool, headers: &HeaderMap, form: &Form) -> Result<Client, OAuthError> {
    let basic = basic_credentials(headers)?;
    let used_basic = basic.is_some();
    let (id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        (Some((id, secret)), form_id, None) => {
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the Basic credentials",
                ));
            }
            (id, Some(secret))
        }
        (None, Some(id), secret) => (id.to_owned(), secret.map(str::to_owned)),
        (None, None, _) => return Err(invalid_client("client authentication is required", false)),
    };
    let Some(row) = find_row(pool, &id).await? else {
        return Err(invalid_client("unknown client", used_basic));
    };
    match (&row.secret_hash, secret) {
        (Some(stored), Some(secret)) => {
            if bool::from(hash_secret(&secret).ct_eq(stored)) {
                Ok(row.client)
            } else {
                Err(invalid_client("client authentication failed", used_basic))
            }
        }
        (Some(_), None) => Err(invalid_client(
            "this client must authenticate with its secret",
            used_basic,
        )),
        (None, Some(_)) => Err(invalid_client("public clients have no secret", used_basic)),
        (None, None) => Ok(row.client),
    }
}

fn invalid_client(description: &str, basic: bool) -> OAuthError {
    OAuthError {
        basic_challenge: basic,
        ..OAuthError::new("invalid_client", description)
    }
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let malformed = || invalid_client("malformed Basic credentials", true);
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let unescape = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
    };
    Ok(Some((
        unescape(id).map_err(|_| malformed())?,
        unescape(secret).map_err(|_| malformed())?,
    )))
}
