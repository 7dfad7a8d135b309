//! Extractors whose rejections use the API's error body, and the parsing helpers that
//! turn raw request values into domain newtypes.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use boxoffice_core::PageRequest;
use serde::Deserialize;

use super::api_error::ApiError;

/// JSON body; malformed bodies answer with the API error body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query string; malformed queries answer with the API error body.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters; malformed paths answer with the API error body.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// The most items one list request may ask for.
pub const MAX_LIMIT: u32 = 500;
/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 20;

/// `limit` and `starting_after`, as Stripe's lists take them.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// 1 to 500; default 20.
    pub limit: Option<i64>,
    /// Return items older than this id.
    pub starting_after: Option<String>,
}

impl ListParams {
    /// Parses into a page request, with cursor ids parsed by `parse_id`.
    pub fn page<C>(&self, parse_id: impl Fn(&str) -> Option<C>) -> Result<PageRequest<C>, ApiError> {
        Ok(PageRequest {
            limit: parse_limit(self.limit)?,
            starting_after: match &self.starting_after {
                None => None,
                Some(raw) => Some(parse_id(raw).ok_or_else(|| ApiError::not_found("starting_after"))?),
            },
        })
    }
}

/// Parses an optional `limit` (1..=500, default 20).
pub fn parse_limit(raw: Option<i64>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=i64::from(MAX_LIMIT)).contains(&n) => Ok(n as u32),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))),
    }
}
