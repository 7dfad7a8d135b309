//! Organizations and their API keys (SPEC §3).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_core::ids::OrganizationId;
use boxoffice_core::organizations::{Name, Organization};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};

#[derive(Deserialize, ToSchema)]
pub struct CreateOrganization {
    /// Display name, 1–200 characters.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationResponse {
    pub id: String,
    pub name: String,
    /// The Sentry-compatible DSN for reporting errors to boxoffice (arrives with the error store).
    pub error_dsn: Option<String>,
    pub created_at: String,
}

impl From<Organization> for OrganizationResponse {
    fn from(org: Organization) -> Self {
        Self {
            id: org.id.to_string(),
            name: org.name.as_str().to_owned(),
            error_dsn: None,
            created_at: org.created_at.to_rfc3339(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyResponse {
    pub id: String,
    pub organization_id: String,
    /// The full key. Shown only in this answer; boxoffice keeps only its hash.
    pub key: String,
}

fn parse_organization_id(raw: &str) -> Result<OrganizationId, ApiError> {
    OrganizationId::parse(raw).map_err(|_| ApiError::not_found("organization"))
}

/// Create an organization (operator only).
#[utoipa::path(post, path = "/api/v1/organizations", tag = "organizations",
    request_body = CreateOrganization,
    security(("bearer" = [])),
    responses(
        (status = 201, body = OrganizationResponse),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<CreateOrganization>,
) -> Result<(StatusCode, Json<OrganizationResponse>), ApiError> {
    let name = Name::parse(&body.name).map_err(|err| ApiError::unprocessable(format!("name: {err}")))?;
    let org = state.boxoffice.create_organization(&caller, name).await?;
    Ok((StatusCode::CREATED, Json(org.into())))
}

/// Read an organization (the operator, or the organization's own key).
#[utoipa::path(get, path = "/api/v1/organizations/{org_id}", tag = "organizations",
    params(("org_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OrganizationResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(org_id): ApiPath<String>,
) -> Result<Json<OrganizationResponse>, ApiError> {
    let id = parse_organization_id(&org_id)?;
    Ok(Json(state.boxoffice.get_organization(&caller, &id).await?.into()))
}

/// Create an API key for an organization (operator only). The key is shown once.
#[utoipa::path(post, path = "/api/v1/organizations/{org_id}/api-keys", tag = "organizations",
    params(("org_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 201, body = ApiKeyResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(org_id): ApiPath<String>,
) -> Result<(StatusCode, Json<ApiKeyResponse>), ApiError> {
    let id = parse_organization_id(&org_id)?;
    let minted = state.boxoffice.create_api_key(&caller, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyResponse {
            id: minted.id.to_string(),
            organization_id: id.to_string(),
            key: minted.key.expose().to_owned(),
        }),
    ))
}
