//! OAuth client registration for workspace admins (`/api/v1/oauth/clients`):
//! create (a confidential client's secret is shown once), list, delete.
//! Redirect URIs are matched exactly at authorization time, so they are
//! validated strictly here.

use std::sync::Arc;

use axum::{
    extract::{Path, Request, State},
    response::Response,
};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use ids::OAuthClientId;
use service_runtime::rows;

use super::{hash_secret, random_secret};
use crate::{
    AppState,
    auth::{require_scope, scopes},
    json_body::read as read_json,
    list_params,
    problem::{Problem, ProblemContext, ProblemResponse},
    transcode::response::reply,
};

pub const SCOPE: &str = "manage:oauth-clients";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewClient {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    allowed_scopes: Vec<String>,
}

#[derive(sqlx::FromRow, serde::Serialize)]
struct ClientView {
    client_id: String,
    name: String,
    kind: String,
    redirect_uris: Vec<String>,
    allowed_scopes: Vec<String>,
    created_at: DateTime<Utc>,
}

type Outcome = Result<Response, ProblemResponse>;

pub async fn create(State(state): State<Arc<AppState>>, request: Request) -> Outcome {
    let ctx = ProblemContext::of_request(&request);
    let principal = require_scope(&request, &ctx, SCOPE)?;
    let input: NewClient = read_json(request, &ctx).await?;
    let fail = |p: Problem| ProblemResponse::new(p, ctx.clone());
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(fail(Problem::invalid_argument("name", "must be 1 to 100 characters")));
    }
    if !matches!(input.kind.as_str(), "confidential" | "public") {
        return Err(fail(Problem::invalid_argument(
            "kind",
            "must be confidential or public",
        )));
    }
    if input.redirect_uris.is_empty() || input.redirect_uris.len() > 10 {
        return Err(fail(Problem::invalid_argument(
            "redirect_uris",
            "must list 1 to 10 URIs",
        )));
    }
    if let Some(bad) = input.redirect_uris.iter().find(|u| !redirect_uri_allowed(u)) {
        return Err(fail(Problem::invalid_argument(
            "redirect_uris",
            format!("{bad:?} must be https://, http:// on loopback, or a private app scheme, with no fragment"),
        )));
    }
    let allowed =
        scopes::parse(&input.allowed_scopes).map_err(|r| fail(Problem::invalid_argument("allowed_scopes", r)))?;
    let client_id = OAuthClientId::generate();
    let secret = (input.kind == "confidential").then(random_secret);
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO oauth_clients (id, workspace_id, name, kind, secret_hash, redirect_uris, allowed_scopes)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at",
    )
    .bind(&client_id)
    .bind(&principal.workspace_id)
    .bind(name)
    .bind(&input.kind)
    .bind(secret.as_deref().map(hash_secret))
    .bind(&input.redirect_uris)
    .bind(&allowed)
    .fetch_one(&state.pool)
    .await
    .map_err(|e| fail(Problem::database(e)))?;
    let mut body = json!({"client": {
        "client_id": client_id, "name": name, "kind": input.kind,
        "redirect_uris": input.redirect_uris, "allowed_scopes": allowed, "created_at": created_at,
    }});
    if let Some(secret) = secret {
        body["client"]["client_secret"] = json!(secret);
    }
    Ok(reply(StatusCode::CREATED, body, ctx.format))
}

pub async fn list(State(state): State<Arc<AppState>>, request: Request) -> Outcome {
    let ctx = ProblemContext::of_request(&request);
    let principal = require_scope(&request, &ctx, SCOPE)?;
    let fail = |p: Problem| ProblemResponse::new(p, ctx.clone());
    let page = list_params::page(request.uri().query()).map_err(fail)?;
    let rows: Vec<ClientView> = page
        .fetch(
            &state.pool,
            "SELECT id AS client_id, name, kind, redirect_uris, allowed_scopes, created_at FROM oauth_clients",
            &principal.workspace_id,
        )
        .await
        .map_err(|e| fail(Problem::database(e)))?;
    let (rows, next_cursor) = page.finish(rows, |c| (c.created_at, &c.client_id));
    Ok(reply(
        StatusCode::OK,
        json!({"clients": rows, "next_cursor": next_cursor}),
        ctx.format,
    ))
}

pub async fn delete(State(state): State<Arc<AppState>>, Path(id): Path<String>, request: Request) -> Outcome {
    let ctx = ProblemContext::of_request(&request);
    let principal = require_scope(&request, &ctx, SCOPE)?;
    let fail = |p: Problem| ProblemResponse::new(p, ctx.clone());
    // Deleting a client cascades to its codes and refresh tokens; its
    // access tokens lapse within their short lifetime.
    if OAuthClientId::parse("client_id", &id).is_err() {
        return Err(fail(Problem::not_found(OAuthClientId::KIND, &id)));
    }
    let deleted = rows::delete_by_id(&state.pool, "oauth_clients", &principal.workspace_id, &id)
        .await
        .map_err(|e| fail(Problem::database(e)))?;
    if !deleted {
        return Err(fail(Problem::not_found(OAuthClientId::KIND, &id)));
    }
    Ok(reply(
        StatusCode::OK,
        json!({"client_id": id, "deleted": true}),
        ctx.format,
    ))
}

/// https anywhere; http only on loopback (RFC 8252 native apps); or a
/// private-use scheme in reverse-domain form (`com.example.app:/cb`).
pub fn redirect_uri_allowed(uri: &str) -> bool {
    if uri.contains('#') || uri.len() > 2000 || uri.contains(char::is_whitespace) {
        return false;
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    match scheme {
        "https" => rest.starts_with("//") && rest.len() > 2,
        "http" => {
            let host = rest
                .trim_start_matches("//")
                .split(['/', '?'])
                .next()
                .unwrap_or_default();
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            matches!(host, "127.0.0.1" | "localhost" | "[::1]")
        }
        s => s.contains('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)),
    }
}

#[cfg(test)]
mod tests {
    use super::redirect_uri_allowed;

    #[test]
    fn redirect_uris_must_be_safe_to_send_codes_to() {
        assert!(redirect_uri_allowed("https://app.example.com/callback"));
        assert!(redirect_uri_allowed("http://127.0.0.1:8765/cb"));
        assert!(redirect_uri_allowed("com.example.app:/oauth"));
        assert!(!redirect_uri_allowed("http://app.example.com/callback"));
        assert!(!redirect_uri_allowed("https://app.example.com/cb#frag"));
        assert!(!redirect_uri_allowed("javascript:alert(1)"));
        assert!(!redirect_uri_allowed("https:"));
    }
}
