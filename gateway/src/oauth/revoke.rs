//! `POST /oauth/revoke` (RFC 7009). Revoking a refresh token revokes its
//! whole grant. The answer is 200 whether or not the token was known, so
//! the endpoint tells an attacker nothing.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::StatusCode;

use super::{client_auth, errors::OAuthError, form::read_form, hash_secret, token};
use crate::AppState;

pub async fn revoke(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match revoke_token(&state, request).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn revoke_token(state: &AppState, request: Request) -> Result<(), OAuthError> {
    let (parts, form) = read_form(request).await?;
    let presented = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_owned();
    let client = client_auth::authenticate(&state.pool, &parts.headers, &form).await?;
    let mut tx = state.pool.begin().await?;
    let family: Option<String> =
        sqlx::query_scalar("SELECT family_id FROM oauth_refresh_tokens WHERE token_hash = $1 AND client_id = $2")
            .bind(hash_secret(&presented))
            .bind(&client.id)
            .fetch_optional(&mut *tx)
            .await?;
    // Access tokens are self-contained JWTs that expire within minutes;
    // there is nothing stored to revoke for them.
    if let Some(family) = family {
        token::revoke_family(&mut tx, &family).await?;
    }
    tx.commit().await?;
    Ok(())
}
