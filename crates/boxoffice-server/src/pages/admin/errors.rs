//! The error groups: the list (`GET /admin/errors`), one group with its latest
//! occurrences (`GET /admin/errors/{id}`), and resolving it
//! (`POST /admin/errors/{id}/resolve`).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use boxoffice_core::auth::Caller;
use boxoffice_core::error_store::reports::{ErrorGroup, GroupFilter, StoredError};
use boxoffice_core::failures::Severity;
use boxoffice_core::ids::ErrorGroupId;
use serde::{Deserialize, Serialize};

use super::{Form, LIST_ROWS, Layout, Session, When, refused, truncate, when};
use crate::http::api_error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::request_id::RequestId;
use crate::state::AppState;

#[derive(Serialize)]
struct GroupView {
    id: String,
    title: String,
    severity: &'static str,
    component: Option<String>,
    count: i64,
    first_seen: When,
    last_seen: When,
    resolved: bool,
    scope: String,
    fingerprint: String,
}

impl From<ErrorGroup> for GroupView {
    fn from(group: ErrorGroup) -> Self {
        Self {
            id: group.id.to_string(),
            title: group.title,
            severity: group.severity.as_str(),
            component: group.component,
            count: group.count,
            first_seen: when(group.first_seen),
            last_seen: when(group.last_seen),
            resolved: group.resolved,
            scope: group.scope,
            fingerprint: group.fingerprint,
        }
    }
}

#[derive(Serialize)]
struct EventView {
    id: String,
    severity: &'static str,
    message: String,
    request_id: Option<String>,
    release: Option<String>,
    environment: Option<String>,
    received_at: When,
    /// The scrubbed report, pretty-printed.
    payload: String,
}

impl From<StoredError> for EventView {
    fn from(event: StoredError) -> Self {
        let payload = serde_json::from_str::<serde_json::Value>(&event.payload)
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or(event.payload);
        Self {
            id: event.event_id,
            severity: event.severity.as_str(),
            message: event.message,
            request_id: event.request_id,
            release: event.release,
            environment: event.environment,
            received_at: when(event.received_at),
            payload,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct GroupsQuery {
    /// `open`, `resolved` or `all` (the default); anything else is `all`.
    status: Option<String>,
    /// A severity; anything else is every severity.
    severity: Option<String>,
}

#[derive(Serialize)]
struct GroupsPage {
    #[serde(flatten)]
    layout: Layout,
    groups: Vec<GroupView>,
    more: bool,
    status: &'static str,
    severity: &'static str,
    severities: &'static [&'static str],
}

/// `GET /admin/errors`: error groups, most recently seen first.
pub(super) async fn error_groups(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(query): ApiQuery<GroupsQuery>,
) -> Result<Response, ApiError> {
    let (status, resolved) = match query.status.as_deref() {
        Some("open") => ("open", Some(false)),
        Some("resolved") => ("resolved", Some(true)),
        _ => ("all", None),
    };
    let severity = query.severity.as_deref().and_then(Severity::parse);
    let filter = GroupFilter { severity, resolved };
    let groups = state
        .boxoffice
        .list_error_groups(&Caller::Operator, &filter, LIST_ROWS + 1)
        .await?;
    let (groups, more) = truncate(groups, LIST_ROWS);
    let page = GroupsPage {
        layout: session.layout("errors"),
        groups: groups.into_iter().map(Into::into).collect(),
        more,
        status,
        severity: severity.map_or("", Severity::as_str),
        severities: &["debug", "info", "warning", "error", "critical"],
    };
    Ok(state.pages.render("admin_errors.html", page))
}

#[derive(Serialize)]
struct GroupPage {
    #[serde(flatten)]
    layout: Layout,
    group: GroupView,
    events: Vec<EventView>,
}

fn parse_group_id(raw: &str) -> Result<ErrorGroupId, ApiError> {
    ErrorGroupId::parse(raw).map_err(|_| ApiError::not_found("error group"))
}

/// `GET /admin/errors/{id}`: a group with its latest occurrences.
pub(super) async fn error_group(
    State(state): State<AppState>,
    session: Session,
    ApiPath(group_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_group_id(&group_id)?;
    let (group, events) = state.boxoffice.get_error_group(&Caller::Operator, &id).await?;
    let page = GroupPage {
        layout: session.layout("errors"),
        group: group.into(),
        events: events.into_iter().map(Into::into).collect(),
    };
    Ok(state.pages.render("admin_error.html", page))
}

/// `POST /admin/errors/{id}/resolve` (`csrf_token`): marks the group resolved, then shows it.
pub(super) async fn resolve_group(
    State(state): State<AppState>,
    session: Session,
    ApiPath(group_id): ApiPath<String>,
    request_id: Option<axum::Extension<RequestId>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !Form::parse(&body).is_some_and(|form| session.accepts(&form)) {
        return Ok(refused(&state, &session, request_id));
    }
    let id = parse_group_id(&group_id)?;
    state.boxoffice.resolve_error_group(&Caller::Operator, &id).await?;
    Ok(Redirect::to(&format!("/admin/errors/{id}")).into_response())
}
