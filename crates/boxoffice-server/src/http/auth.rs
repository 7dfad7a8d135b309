//! Bearer authentication: the `Caller` of an authenticated route.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use boxoffice_core::auth::{Caller, SecretToken};

use super::api_error::ApiError;
use crate::state::AppState;

/// The authenticated caller. Extracting it answers 401 when the token is missing or unknown.
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty() && token.len() <= 512)
            .ok_or_else(ApiError::unauthorized)?;
        let caller = state
            .boxoffice
            .authenticate(&state.operator_token_hash, &SecretToken::new(token))
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(Authenticated(caller))
    }
}
