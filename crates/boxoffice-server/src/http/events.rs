//! Events and ticket types (SPEC §3). Reads are public; changes need the operator or the
//! owning organization's key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_core::auth::Caller;
use boxoffice_core::catalog::{
    Capacity, EventWithTicketTypes, HoldSeconds, MaxPerOrder, TicketType, TicketTypeChanges,
};
use boxoffice_core::ids::{EventId, OrganizationId, TicketTypeId};
use boxoffice_core::money::{Cents, Currency};
use boxoffice_core::organizations::Name;
use boxoffice_core::service::{NewEvent, NewTicketType};
use boxoffice_core::{Page, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_error::{ApiError, ErrorBody};
use super::auth::Authenticated;
use super::extract::{ApiJson, ApiPath, ApiQuery, ListParams};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct CreateEvent {
    /// Required for the operator; implied by an organization key.
    pub organization_id: Option<String>,
    pub name: String,
    /// RFC 3339.
    pub starts_at: String,
    /// ISO 4217, e.g. `EUR`.
    pub currency: String,
    /// Hold length for this event, overriding the server's `--hold-duration`.
    pub hold_seconds: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateTicketType {
    pub name: String,
    pub price_cents: i64,
    pub capacity: i64,
    /// Most tickets of this type in one reservation (1–100, default 10).
    pub max_per_order: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateTicketType {
    pub name: Option<String>,
    pub price_cents: Option<i64>,
    /// Refused below sold + held.
    pub capacity: Option<i64>,
    pub max_per_order: Option<i64>,
    pub on_sale: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct TicketTypeResponse {
    pub id: String,
    pub event_id: String,
    pub name: String,
    pub price_cents: i64,
    pub capacity: i64,
    pub max_per_order: u32,
    pub on_sale: bool,
    /// Tickets paid.
    pub sold: i64,
    /// Tickets in unexpired holds, exact at the instant of the request.
    pub held: i64,
    /// `capacity - sold - held`.
    pub available: i64,
    pub created_at: String,
}

impl From<TicketType> for TicketTypeResponse {
    fn from(tt: TicketType) -> Self {
        Self {
            available: tt.available(),
            id: tt.id.to_string(),
            event_id: tt.event_id.to_string(),
            name: tt.name.as_str().to_owned(),
            price_cents: tt.price.get(),
            capacity: tt.capacity.get(),
            max_per_order: tt.max_per_order.get(),
            on_sale: tt.on_sale,
            sold: tt.sold,
            held: tt.held,
            created_at: tt.created_at.to_rfc3339(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventResponse {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub starts_at: String,
    pub currency: String,
    pub hold_seconds: Option<u32>,
    pub created_at: String,
    pub ticket_types: Vec<TicketTypeResponse>,
}

impl From<EventWithTicketTypes> for EventResponse {
    fn from(EventWithTicketTypes { event, ticket_types }: EventWithTicketTypes) -> Self {
        Self {
            id: event.id.to_string(),
            organization_id: event.organization_id.to_string(),
            name: event.name.as_str().to_owned(),
            starts_at: event.starts_at.to_rfc3339(),
            currency: event.currency.to_string(),
            hold_seconds: event.hold_seconds.map(HoldSeconds::get),
            created_at: event.created_at.to_rfc3339(),
            ticket_types: ticket_types.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub data: Vec<EventResponse>,
    pub has_more: bool,
}

#[derive(Deserialize, IntoParams)]
pub struct ListEventsParams {
    /// 1 to 500; default 20.
    pub limit: Option<i64>,
    /// Return events older than this one.
    pub starting_after: Option<String>,
    /// Only events of this organization.
    pub organization_id: Option<String>,
}

fn field<T, E: std::fmt::Display>(name: &str, parsed: Result<T, E>) -> Result<T, ApiError> {
    parsed.map_err(|err| ApiError::unprocessable(format!("{name}: {err}")))
}

fn optional<R, T, E: std::fmt::Display>(
    name: &str,
    raw: Option<R>,
    parse: impl FnOnce(R) -> Result<T, E>,
) -> Result<Option<T>, ApiError> {
    raw.map(|raw| field(name, parse(raw))).transpose()
}

pub(crate) fn parse_event_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(|_| ApiError::not_found("event"))
}

/// Create an event.
#[utoipa::path(post, path = "/api/v1/events", tag = "events",
    request_body = CreateEvent,
    security(("bearer" = [])),
    responses(
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 201, body = EventResponse),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<CreateEvent>,
) -> Result<(StatusCode, Json<EventResponse>), ApiError> {
    let organization_id = match (&caller, body.organization_id.as_deref()) {
        (Caller::Organization { organization_id, .. }, None) => organization_id.clone(),
        (_, Some(raw)) => OrganizationId::parse(raw).map_err(|_| ApiError::not_found("organization"))?,
        (Caller::Operator, None) => {
            return Err(ApiError::unprocessable(
                "organization_id is required when using the operator token",
            ));
        }
    };
    let new = NewEvent {
        organization_id,
        name: field("name", Name::parse(&body.name))?,
        starts_at: field("starts_at", Timestamp::parse_rfc3339(&body.starts_at))?,
        currency: field("currency", Currency::parse(&body.currency))?,
        hold_seconds: optional("hold_seconds", body.hold_seconds, HoldSeconds::parse)?,
    };
    let event = state.boxoffice.create_event(&caller, new).await?;
    Ok((StatusCode::CREATED, Json(event.into())))
}

/// List events, newest first (public).
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(ListEventsParams),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListEventsParams>,
) -> Result<Json<EventList>, ApiError> {
    // Not flattened into the struct above: serde's flatten loses the number types of query strings.
    let list = ListParams {
        limit: params.limit,
        starting_after: params.starting_after,
    };
    let page = list.page(|raw| EventId::parse(raw).ok())?;
    let organization = match params.organization_id.as_deref() {
        None => None,
        Some(raw) => Some(OrganizationId::parse(raw).map_err(|_| ApiError::not_found("organization"))?),
    };
    let Page { data, has_more } = state.boxoffice.list_events(organization.as_ref(), &page).await?;
    Ok(Json(EventList {
        data: data.into_iter().map(Into::into).collect(),
        has_more,
    }))
}

/// Read an event with its ticket types and their availability (public).
#[utoipa::path(get, path = "/api/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path)),
    responses((status = 200, body = EventResponse), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<EventResponse>, ApiError> {
    let id = parse_event_id(&event_id)?;
    Ok(Json(state.boxoffice.get_event(&id).await?.into()))
}

/// Add a ticket type to an event.
#[utoipa::path(post, path = "/api/v1/events/{event_id}/ticket-types", tag = "events",
    params(("event_id" = String, Path)),
    request_body = CreateTicketType,
    security(("bearer" = [])),
    responses(
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 201, body = TicketTypeResponse),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn create_ticket_type(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(event_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateTicketType>,
) -> Result<(StatusCode, Json<TicketTypeResponse>), ApiError> {
    let event_id = parse_event_id(&event_id)?;
    let new = NewTicketType {
        name: field("name", Name::parse(&body.name))?,
        price: field("price_cents", Cents::parse_price(body.price_cents))?,
        capacity: field("capacity", Capacity::parse(body.capacity))?,
        max_per_order: optional("max_per_order", body.max_per_order, MaxPerOrder::parse)?.unwrap_or_default(),
    };
    let ticket_type = state.boxoffice.create_ticket_type(&caller, &event_id, new).await?;
    Ok((StatusCode::CREATED, Json(ticket_type.into())))
}

/// Change a ticket type: name, price, capacity (never below sold + held), per-order limit, on sale.
#[utoipa::path(patch, path = "/api/v1/ticket-types/{ticket_type_id}", tag = "events",
    params(("ticket_type_id" = String, Path)),
    request_body = UpdateTicketType,
    security(("bearer" = [])),
    responses(
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 200, body = TicketTypeResponse),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn update_ticket_type(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(ticket_type_id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateTicketType>,
) -> Result<Json<TicketTypeResponse>, ApiError> {
    let id = TicketTypeId::parse(&ticket_type_id).map_err(|_| ApiError::not_found("ticket type"))?;
    let changes = TicketTypeChanges {
        name: optional("name", body.name.as_deref(), Name::parse)?,
        price: optional("price_cents", body.price_cents, Cents::parse_price)?,
        capacity: optional("capacity", body.capacity, Capacity::parse)?,
        max_per_order: optional("max_per_order", body.max_per_order, MaxPerOrder::parse)?,
        on_sale: body.on_sale,
    };
    Ok(Json(
        state.boxoffice.update_ticket_type(&caller, &id, &changes).await?.into(),
    ))
}
