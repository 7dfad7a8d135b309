//! Organizations and their API keys (SPEC §3).

use axum::Json;
use axum::extract::State;
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode};
use boxoffice_core::error_store::reports::ErrorProject;
use boxoffice_core::ids::OrganizationId;
use boxoffice_core::organizations::{Name, Organization};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api_error::{ApiError, ErrorBody};
use super::auth::Authenticated;
use super::extract::{ApiJson, ApiPath};
use crate::sentry::dsn;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct CreateOrganization {
    /// Display name, 1–200 characters.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationResponse {
    pub id: String,
    pub name: String,
    /// The Sentry-compatible DSN (`http://<public_key>@<host>/<project_id>`): give it to a
    /// Sentry SDK and its errors are stored here, under this organization.
    pub error_dsn: String,
    pub created_at: String,
}

impl OrganizationResponse {
    fn new(org: Organization, project: &ErrorProject, host: &str) -> Self {
        Self {
            id: org.id.to_string(),
            name: org.name.as_str().to_owned(),
            error_dsn: dsn(
                &project.public_key,
                host,
                u64::try_from(project.project_id).unwrap_or_default(),
            ),
            created_at: org.created_at.to_rfc3339(),
        }
    }
}

/// The host the client reached us by (so the DSN works from where it asked), else the
/// address the server listens on.
fn request_host(headers: &HeaderMap, state: &AppState) -> String {
    headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'@'))
        .map_or_else(|| state.public_host.to_string(), str::to_owned)
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
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 201, body = OrganizationResponse),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateOrganization>,
) -> Result<(StatusCode, Json<OrganizationResponse>), ApiError> {
    let name = Name::parse(&body.name).map_err(|err| ApiError::unprocessable(format!("name: {err}")))?;
    let (org, project) = state.boxoffice.create_organization(&caller, name).await?;
    let host = request_host(&headers, &state);
    Ok((
        StatusCode::CREATED,
        Json(OrganizationResponse::new(org, &project, &host)),
    ))
}

/// Read an organization (the operator, or the organization's own key).
#[utoipa::path(get, path = "/api/v1/organizations/{org_id}", tag = "organizations",
    params(("org_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OrganizationResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    ApiPath(org_id): ApiPath<String>,
) -> Result<Json<OrganizationResponse>, ApiError> {
    let id = parse_organization_id(&org_id)?;
    let (org, project) = state.boxoffice.get_organization(&caller, &id).await?;
    let host = request_host(&headers, &state);
    Ok(Json(OrganizationResponse::new(org, &project, &host)))
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
