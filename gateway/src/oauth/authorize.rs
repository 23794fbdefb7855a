//! `/oauth/authorize`: the authorization code flow with PKCE.
//!
//! An authenticated workspace principal approves a client's request:
//! `GET` describes what would be granted, `POST` with `decision=approve` (or
//! `deny`) answers with a redirect carrying the code or the error. Errors
//! go back to the client's redirect URI as RFC 6749 section 4.1.2.1 says,
//! except when the client or its redirect URI is itself bad: then nothing
//! is redirected (that would make the gateway an open redirector) and the
//! error is shown directly.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::{
    client_auth::{self, Client},
    errors::OAuthError,
    form::{Form, read_form},
    hash_secret, pkce, random_secret, scope_list,
};
use crate::{
    AppState,
    auth::Principal,
    problem::{Problem, ProblemContext},
    transcode::response::reply,
};

/// A validated request, ready to be approved.
struct Authorization {
    client: Client,
    redirect_uri: String,
    scopes: Vec<String>,
    state: Option<String>,
    code_challenge: Option<String>,
}

enum Failure {
    /// Shown to the user agent: the redirect target cannot be trusted.
    Direct(Problem),
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        error: OAuthError,
        state: Option<String>,
    },
}

pub async fn show(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let ctx = ProblemContext::of_request(&request);
    let params = Form::parse(request.uri().query().unwrap_or_default().as_bytes());
    let principal = request.extensions().get::<Principal>().cloned();
    let outcome = match inputs(params, principal) {
        Ok((params, principal)) => validate(&state, &principal, &params).await,
        Err(failure) => Err(failure),
    };
    match outcome {
        Ok(auth) => reply(
            StatusCode::OK,
            json!({
                "client": {"client_id": auth.client.id, "name": auth.client.name},
                "redirect_uri": auth.redirect_uri,
                "scopes": auth.scopes,
                "decision": "POST the same parameters to /oauth/authorize with decision=approve or decision=deny",
            }),
            ctx.format,
        ),
        Err(failure) => fail(failure, &ctx),
    }
}

pub async fn decide(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let ctx = ProblemContext::of_request(&request);
    let principal = request.extensions().get::<Principal>().cloned();
    // The request's parameters may come in the query (the URL the client
    // built) and the decision in the form body; a parameter in both is an
    // error, as a repeated one is.
    let query = request.uri().query().unwrap_or_default().to_owned();
    let params = match read_form(request).await {
        Ok((_, form)) => Form::parse(query.as_bytes()).and_then(|q| q.merge(form)),
        Err(_) => Form::parse(query.as_bytes()),
    };
    let outcome = match inputs(params, principal) {
        Ok((params, principal)) => approve(&state, &principal, &params).await,
        Err(failure) => Err(failure),
    };
    match outcome {
        Ok(location) => redirect(&location),
        Err(failure) => fail(failure, &ctx),
    }
}

/// The parameters and the approving principal, or why there are none.
fn inputs(params: Result<Form, OAuthError>, principal: Option<Principal>) -> Result<(Form, Principal), Failure> {
    match (params, principal) {
        (Ok(params), Some(principal)) => Ok((params, principal)),
        (Err(error), _) => Err(Failure::Direct(Problem::bad_request(
            "invalid-request",
            "Invalid request",
            error.description,
        ))),
        // The route sits behind authentication; no principal is a bug.
        (_, None) => Err(Failure::Direct(Problem::internal())),
    }
}

async fn approve(state: &AppState, principal: &Principal, params: &Form) -> Result<String, Failure> {
    let auth = validate(state, principal, params).await?;
    let back = |error: OAuthError| Failure::Redirect {
        redirect_uri: auth.redirect_uri.clone(),
        error,
        state: auth.state.clone(),
    };
    match params.get("decision") {
        Some("approve") => {}
        Some("deny") => return Err(back(OAuthError::new("access_denied", "the request was denied"))),
        _ => return Err(back(OAuthError::invalid_request("decision must be approve or deny"))),
    }
    let code = random_secret();
    let expires_at = Utc::now() + state.oauth.config.code_ttl;
    sqlx::query(
        "INSERT INTO oauth_codes (code_hash, client_id, workspace_id, principal_id, redirect_uri, scopes, code_challenge, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(hash_secret(&code))
    .bind(&auth.client.id)
    .bind(&principal.workspace_id)
    .bind(&principal.principal_id)
    .bind(&auth.redirect_uri)
    .bind(&auth.scopes)
    .bind(&auth.code_challenge)
    .bind(expires_at)
    .execute(&state.pool)
    .await
    .map_err(|e| back(OAuthError::from(e)))?;
    let mut params = vec![("code", code)];
    if let Some(s) = &auth.state {
        params.push(("state", s.clone()));
    }
    Ok(with_query(&auth.redirect_uri, &params))
}

async fn validate(state: &AppState, principal: &Principal, params: &Form) -> Result<Authorization, Failure> {
    let direct = |detail: &str| {
        Failure::Direct(Problem::bad_request(
            "invalid-authorization-request",
            "Invalid authorization request",
            detail,
        ))
    };
    let client_id = params.get("client_id").ok_or_else(|| direct("client_id is required"))?;
    let client = client_auth::find(&state.pool, client_id)
        .await
        .map_err(|e| Failure::Direct(Problem::database(e)))?
        .ok_or_else(|| direct("unknown client_id"))?;
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
        Some(_) => return Err(direct("redirect_uri is not registered for this client")),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return Err(direct("redirect_uri is required: the client registered several")),
    };
    let client_state = params.get("state").map(str::to_owned);
    let back = |error: OAuthError| Failure::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        state: client_state.clone(),
    };
    if params.get("response_type") != Some("code") {
        return Err(back(OAuthError::new(
            "unsupported_response_type",
            "only response_type=code is supported",
        )));
    }
    let scopes = match params.get("scope") {
        Some(asked) => scope_list(asked),
        None => client.allowed_scopes.clone(),
    };
    if let Some(bad) = scopes.iter().find(|s| !client.allowed_scopes.contains(s)) {
        return Err(back(OAuthError::new(
            "invalid_scope",
            format!("scope {bad} is not allowed for this client"),
        )));
    }
    if let Some(missing) = scopes.iter().find(|s| !principal.has_scope(s)) {
        return Err(back(OAuthError::new(
            "invalid_scope",
            format!("the approving principal does not hold {missing}"),
        )));
    }
    let code_challenge = match (params.get("code_challenge"), params.get("code_challenge_method")) {
        (None, _) if client.is_public() => {
            return Err(back(OAuthError::invalid_request(
                "public clients must use PKCE with S256",
            )));
        }
        (None, _) => None,
        (Some(challenge), Some("S256")) if pkce::valid_challenge(challenge) => Some(challenge.to_owned()),
        (Some(_), Some("S256")) => return Err(back(OAuthError::invalid_request("code_challenge is malformed"))),
        (Some(_), _) => return Err(back(OAuthError::invalid_request("code_challenge_method must be S256"))),
    };
    Ok(Authorization {
        client,
        redirect_uri,
        scopes,
        state: client_state,
        code_challenge,
    })
}

fn fail(failure: Failure, ctx: &ProblemContext) -> Response {
    match failure {
        Failure::Direct(problem) => problem.render(ctx),
        Failure::Redirect {
            redirect_uri,
            error,
            state,
        } => {
            let mut params = vec![
                ("error", error.error.to_owned()),
                ("error_description", error.description),
            ];
            if let Some(state) = state {
                params.push(("state", state));
            }
            redirect(&with_query(&redirect_uri, &params))
        }
    }
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `uri` with `params` added to its query (keeping any it already has).
fn with_query(uri: &str, params: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        query.append_pair(key, value);
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::with_query;

    #[test]
    fn redirect_parameters_are_encoded_and_keep_the_existing_query() {
        assert_eq!(
            with_query("https://app/cb", &[("code", "a b".into()), ("state", "x&y".into())]),
            "https://app/cb?code=a+b&state=x%26y"
        );
        assert_eq!(
            with_query("https://app/cb?tenant=1", &[("code", "c".into())]),
            "https://app/cb?tenant=1&code=c"
        );
    }
}
