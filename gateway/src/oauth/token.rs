//! `POST /oauth/token`: the authorization code, refresh token and client
//! credentials grants.
//!
//! Codes are single-use: a replayed code fails and revokes the tokens it
//! produced. Refresh tokens rotate on every use; presenting a rotated one
//! again means it leaked, so the whole family is revoked.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use http::{HeaderValue, header};
use ids::GrantFamilyId;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{
    OAuth,
    client_auth::{self, Client},
    errors::OAuthError,
    form::{Form, read_form},
    hash_secret, pkce, random_secret, scope_list,
};
use crate::AppState;

pub async fn token(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match grant(&state, request).await {
        Ok(body) => {
            let mut response = Json(body).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
                .headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn grant(state: &AppState, request: Request) -> Result<Value, OAuthError> {
    let (parts, form) = read_form(request).await?;
    let grant_type = form.require("grant_type")?.to_owned();
    let client = client_auth::authenticate(&state.pool, &parts.headers, &form).await?;
    let oauth = &state.oauth;
    match grant_type.as_str() {
        "authorization_code" => authorization_code(&state.pool, oauth, &client, &form).await,
        "refresh_token" => refresh(&state.pool, oauth, &client, &form).await,
        "client_credentials" => client_credentials(oauth, &client, &form),
        other => Err(OAuthError::new(
            "unsupported_grant_type",
            format!("grant_type {other:?} is not supported"),
        )),
    }
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    client_id: String,
    workspace_id: String,
    principal_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    code_challenge: Option<String>,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    family_id: Option<String>,
}

async fn authorization_code(pool: &PgPool, oauth: &OAuth, client: &Client, form: &Form) -> Result<Value, OAuthError> {
    let code = form.require("code")?;
    let mut tx = pool.begin().await?;
    let row: Option<CodeRow> = sqlx::query_as(
        "SELECT client_id, workspace_id, principal_id, redirect_uri, scopes, code_challenge, expires_at, used_at, family_id
         FROM oauth_codes WHERE code_hash = $1 FOR UPDATE",
    )
    .bind(hash_secret(code))
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or_else(|| OAuthError::invalid_grant("the authorization code is invalid"))?;
    if row.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if row.used_at.is_some() {
        if let Some(family) = &row.family_id {
            revoke_family(&mut tx, family).await?;
            tx.commit().await?;
        }
        return Err(OAuthError::invalid_grant(
            "the authorization code was already used; its tokens are revoked",
        ));
    }
    if row.expires_at < Utc::now() {
        return Err(OAuthError::invalid_grant("the authorization code has expired"));
    }
    if form.get("redirect_uri") != Some(row.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&row.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if pkce::verifies(verifier, challenge) => {}
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code challenge",
            ));
        }
        (Some(_), None) => return Err(OAuthError::invalid_request("code_verifier is required")),
        (None, Some(_)) => return Err(OAuthError::invalid_grant("no code challenge was sent for this code")),
        (None, None) => {}
    }
    let family = GrantFamilyId::generate().into_string();
    sqlx::query("UPDATE oauth_codes SET used_at = now(), family_id = $2 WHERE code_hash = $1")
        .bind(hash_secret(code))
        .bind(&family)
        .execute(&mut *tx)
        .await?;
    let grant = Grant {
        workspace_id: row.workspace_id,
        subject: row.principal_id,
        scopes: row.scopes,
    };
    let refresh_token = store_refresh(&mut tx, oauth, client, &grant, &family).await?;
    tx.commit().await?;
    issue(oauth, client, &grant, Some(refresh_token))
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    family_id: String,
    client_id: String,
    workspace_id: String,
    principal_id: String,
    scopes: Vec<String>,
    expires_at: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

async fn refresh(pool: &PgPool, oauth: &OAuth, client: &Client, form: &Form) -> Result<Value, OAuthError> {
    let presented = form.require("refresh_token")?;
    let mut tx = pool.begin().await?;
    let row: Option<RefreshRow> = sqlx::query_as(
        "SELECT family_id, client_id, workspace_id, principal_id, scopes, expires_at, rotated_at, revoked_at
         FROM oauth_refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash_secret(presented))
    .fetch_optional(&mut *tx)
    .await?;
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    let row = row.filter(|r| r.client_id == client.id).ok_or_else(invalid)?;
    if row.revoked_at.is_some() || row.expires_at < Utc::now() {
        return Err(invalid());
    }
    if row.rotated_at.is_some() {
        // A rotated token came back: someone holds a copy. Revoke every
        // token of the family, the legitimate holder's included.
        revoke_family(&mut tx, &row.family_id).await?;
        tx.commit().await?;
        tracing::warn!(client = %client.id, "refresh token reuse detected; family revoked");
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used; the grant is revoked",
        ));
    }
    let scopes = match form.get("scope") {
        None => row.scopes.clone(),
        Some(asked) => {
            let asked = scope_list(asked);
            if asked.iter().any(|s| !row.scopes.contains(s)) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    "a refresh cannot widen the granted scopes",
                ));
            }
            asked
        }
    };
    sqlx::query("UPDATE oauth_refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
        .bind(hash_secret(presented))
        .execute(&mut *tx)
        .await?;
    let grant = Grant {
        workspace_id: row.workspace_id,
        subject: row.principal_id,
        scopes,
    };
    let next = store_refresh(&mut tx, oauth, client, &grant, &row.family_id).await?;
    tx.commit().await?;
    issue(oauth, client, &grant, Some(next))
}

fn client_credentials(oauth: &OAuth, client: &Client, form: &Form) -> Result<Value, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::new(
            "unauthorized_client",
            "public clients cannot use client_credentials",
        ));
    }
    let scopes = match form.get("scope") {
        None => client.allowed_scopes.clone(),
        Some(asked) => {
            let asked = scope_list(asked);
            if let Some(bad) = asked.iter().find(|s| !client.allowed_scopes.contains(s)) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    format!("scope {bad} is not allowed for this client"),
                ));
            }
            asked
        }
    };
    let grant = Grant {
        workspace_id: client.workspace_id.clone(),
        subject: client.id.clone(),
        scopes,
    };
    issue(oauth, client, &grant, None)
}

/// Who a token acts for, and with which scopes.
struct Grant {
    workspace_id: String,
    subject: String,
    scopes: Vec<String>,
}

fn issue(oauth: &OAuth, client: &Client, grant: &Grant, refresh_token: Option<String>) -> Result<Value, OAuthError> {
    let now = Utc::now().timestamp();
    let ttl = oauth.config.access_ttl.as_secs();
    let scope = grant.scopes.join(" ");
    let claims = json!({
        "iss": oauth.config.issuer,
        "aud": oauth.config.audience,
        "sub": grant.subject,
        "workspace_id": grant.workspace_id,
        "client_id": client.id,
        "scope": scope,
        "iat": now,
        "exp": now + ttl as i64,
        "jti": random_secret(),
    });
    let access_token = oauth.keys.sign(&claims).map_err(|error| {
        tracing::error!(%error, "signing an access token");
        OAuthError::server_error()
    })?;
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scope,
    });
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    Ok(body)
}

async fn store_refresh(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    oauth: &OAuth,
    client: &Client,
    grant: &Grant,
    family: &str,
) -> Result<String, OAuthError> {
    let token = random_secret();
    let expires_at = Utc::now() + oauth.config.refresh_ttl;
    sqlx::query(
        "INSERT INTO oauth_refresh_tokens (token_hash, family_id, client_id, workspace_id, principal_id, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hash_secret(&token))
    .bind(family)
    .bind(&client.id)
    .bind(&grant.workspace_id)
    .bind(&grant.subject)
    .bind(&grant.scopes)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(token)
}

pub async fn revoke_family(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, family: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oauth_refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
        .bind(family)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
