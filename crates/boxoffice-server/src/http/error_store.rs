//! The error store's HTTP API (SPEC §7): reporting an error, and the operator's view of
//! groups. Everything is scrubbed before it is stored (`boxoffice_core::error_store`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_core::error_store::reports::{ErrorGroup, GroupFilter, StoredError};
use boxoffice_core::failures::Severity;
use boxoffice_core::ids::ErrorGroupId;
use boxoffice_core::service::ErrorInput;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_error::{ApiError, ErrorBody};
use super::auth::Authenticated;
use super::extract::{ApiJson, ApiPath, ApiQuery, parse_limit};
use crate::request_id::RequestId;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct ReportError {
    /// `debug`, `info`, `warning`, `error` or `critical`.
    pub severity: String,
    pub message: String,
    pub stack_trace: Option<String>,
    /// Which part of your system (`checkout`, `payments`).
    pub component: Option<String>,
    /// Anything else; scrubbed of personal data before it is stored.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    /// Group by these strings instead of the message (`{{ default }}` stands for the default).
    pub fingerprint: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ReportedError {
    /// The stored event's id.
    pub id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorGroupResponse {
    pub id: String,
    /// `server` for boxoffice's own errors, `org:<id>` for an organization's.
    pub scope: String,
    pub title: String,
    pub severity: &'static str,
    pub component: Option<String>,
    pub count: i64,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved: bool,
    pub fingerprint: String,
    pub grouping_version: i64,
}

impl From<ErrorGroup> for ErrorGroupResponse {
    fn from(group: ErrorGroup) -> Self {
        Self {
            id: group.id.to_string(),
            scope: group.scope,
            title: group.title,
            severity: group.severity.as_str(),
            component: group.component,
            count: group.count,
            first_seen: group.first_seen.to_rfc3339(),
            last_seen: group.last_seen.to_rfc3339(),
            resolved: group.resolved,
            fingerprint: group.fingerprint,
            grouping_version: group.grouping_version,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ErrorEventResponse {
    pub id: String,
    pub severity: &'static str,
    pub message: String,
    pub request_id: Option<String>,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub received_at: String,
    /// The whole report as stored (scrubbed).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<StoredError> for ErrorEventResponse {
    fn from(event: StoredError) -> Self {
        Self {
            id: event.event_id,
            severity: event.severity.as_str(),
            message: event.message,
            request_id: event.request_id,
            release: event.release,
            environment: event.environment,
            received_at: event.received_at.to_rfc3339(),
            payload: serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ErrorGroupDetail {
    #[serde(flatten)]
    pub group: ErrorGroupResponse,
    /// The latest occurrences, newest first.
    pub events: Vec<ErrorEventResponse>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorGroupList {
    pub data: Vec<ErrorGroupResponse>,
    pub has_more: bool,
}

#[derive(Deserialize, IntoParams)]
pub struct ErrorGroupsParams {
    /// Only groups of this severity.
    pub severity: Option<String>,
    /// Only resolved (`true`) or open (`false`) groups.
    pub resolved: Option<bool>,
    /// 1 to 500; default 20.
    pub limit: Option<i64>,
}

fn parse_group_id(raw: &str) -> Result<ErrorGroupId, ApiError> {
    ErrorGroupId::parse(raw).map_err(|_| ApiError::not_found("error group"))
}

/// Report an error (an organization key or the operator token).
#[utoipa::path(post, path = "/api/v1/errors", tag = "errors",
    request_body = ReportError,
    security(("bearer" = [])),
    responses(
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),(status = 202, body = ReportedError), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn report(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<ReportError>,
) -> Result<(StatusCode, Json<ReportedError>), ApiError> {
    let severity = Severity::parse(&body.severity)
        .ok_or_else(|| ApiError::unprocessable("severity must be one of debug, info, warning, error, critical"))?;
    let input = ErrorInput {
        severity: Some(severity),
        message: body.message,
        stack_trace: body.stack_trace,
        component: body.component,
        context: body.context,
        fingerprint: body.fingerprint,
        request_id: request_id.map(|axum::Extension(RequestId(id))| id),
    };
    let report = state.boxoffice.prepare_error(&caller, input)?;
    let id = report.event_id.clone();
    state.metrics.errors_received("api", 1);
    state.errors.submit(report).await?;
    Ok((StatusCode::ACCEPTED, Json(ReportedError { id })))
}

/// Error groups, most recently seen first (operator).
#[utoipa::path(get, path = "/api/v1/admin/errors", tag = "errors",
    params(ErrorGroupsParams),
    security(("bearer" = [])),
    responses((status = 200, body = ErrorGroupList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_groups(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(params): ApiQuery<ErrorGroupsParams>,
) -> Result<Json<ErrorGroupList>, ApiError> {
    let severity = match params.severity.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(Severity::parse(raw).ok_or_else(|| ApiError::bad_request("unknown severity"))?),
    };
    let limit = parse_limit(params.limit)?;
    let filter = GroupFilter {
        severity,
        resolved: params.resolved,
    };
    let mut groups = state.boxoffice.list_error_groups(&caller, &filter, limit + 1).await?;
    let has_more = groups.len() > limit as usize;
    groups.truncate(limit as usize);
    Ok(Json(ErrorGroupList {
        data: groups.into_iter().map(Into::into).collect(),
        has_more,
    }))
}

/// A group with its latest occurrences (operator).
#[utoipa::path(get, path = "/api/v1/admin/errors/{group_id}", tag = "errors",
    params(("group_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ErrorGroupDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_group(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(group_id): ApiPath<String>,
) -> Result<Json<ErrorGroupDetail>, ApiError> {
    let id = parse_group_id(&group_id)?;
    let (group, events) = state.boxoffice.get_error_group(&caller, &id).await?;
    Ok(Json(ErrorGroupDetail {
        group: group.into(),
        events: events.into_iter().map(Into::into).collect(),
    }))
}

/// Mark a group resolved (operator); a new occurrence reopens it.
#[utoipa::path(post, path = "/api/v1/admin/errors/{group_id}/resolve", tag = "errors",
    params(("group_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ErrorGroupResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resolve_group(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(group_id): ApiPath<String>,
) -> Result<Json<ErrorGroupResponse>, ApiError> {
    let id = parse_group_id(&group_id)?;
    Ok(Json(state.boxoffice.resolve_error_group(&caller, &id).await?.into()))
}
