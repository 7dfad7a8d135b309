//! Reservations (holds), the public buyer endpoints (SPEC §4).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_core::holds::{EmailAddress, Hold, HoldRequest, Quantity};
use boxoffice_core::ids::{HoldId, TicketTypeId};
use boxoffice_core::{Timestamp, service};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api_error::{ApiError, ErrorBody};
use super::events::parse_event_id;
use super::extract::{ApiJson, ApiPath};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct CreateReservation {
    pub event_id: String,
    /// 1–20 items with distinct ticket types.
    pub items: Vec<ReservationItemRequest>,
    /// Where tickets will be sent.
    pub customer_email: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ReservationItemRequest {
    pub ticket_type_id: String,
    /// 1 to the ticket type's `max_per_order`.
    pub quantity: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ReservationResponse {
    pub id: String,
    /// `active`, `expired`, `completed` or `cancelled`; a hold past `expires_at` reads
    /// `expired` even before the sweeper has marked it.
    pub status: &'static str,
    pub event_id: String,
    pub expires_at: String,
    pub seconds_remaining: i64,
    pub items: Vec<ReservationItem>,
    pub amount_cents: i64,
    pub currency: String,
    pub customer_email: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReservationItem {
    pub ticket_type_id: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
    pub amount_cents: i64,
}

impl ReservationResponse {
    fn new(hold: Hold, now: Timestamp) -> Self {
        Self {
            status: hold.status_at(now).as_str(),
            seconds_remaining: hold.seconds_remaining(now),
            id: hold.id.to_string(),
            event_id: hold.event_id.to_string(),
            expires_at: hold.expires_at.to_rfc3339(),
            items: hold
                .items
                .iter()
                .map(|item| ReservationItem {
                    ticket_type_id: item.ticket_type_id.to_string(),
                    quantity: item.quantity.get(),
                    unit_price_cents: item.unit_price.get(),
                    amount_cents: item.unit_price.times(item.quantity.get()).get(),
                })
                .collect(),
            amount_cents: hold.amount.get(),
            currency: hold.currency.to_string(),
            customer_email: hold.customer_email.as_ref().map(|email| email.as_str().to_owned()),
            created_at: hold.created_at.to_rfc3339(),
        }
    }
}

fn parse_hold_id(raw: &str) -> Result<HoldId, ApiError> {
    HoldId::parse(raw).map_err(|_| ApiError::not_found("reservation"))
}

/// The checks of a reservation body that need no database. Public for the fuzz targets.
#[doc(hidden)]
pub fn parse_request(body: CreateReservation) -> Result<HoldRequest, ApiError> {
    let event_id = parse_event_id(&body.event_id)?;
    let mut items = Vec::with_capacity(body.items.len());
    for (index, item) in body.items.iter().enumerate() {
        let ticket_type_id = TicketTypeId::parse(&item.ticket_type_id).map_err(|_| {
            ApiError::unprocessable(format!(
                "items[{index}].ticket_type_id: {} is not a ticket type of event {event_id}",
                item.ticket_type_id
            ))
        })?;
        let quantity = Quantity::parse(item.quantity)
            .map_err(|err| ApiError::unprocessable(format!("items[{index}].quantity: {err}")))?;
        items.push((ticket_type_id, quantity));
    }
    let customer_email = body
        .customer_email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()
        .map_err(|err| ApiError::unprocessable(err.to_string()))?;
    HoldRequest::new(event_id, items, customer_email).map_err(|err| ApiError::unprocessable(err.to_string()))
}

/// Hold tickets: every item or none. `409 sold_out` names the ticket type that lacks capacity.
#[utoipa::path(post, path = "/api/v1/reservations", tag = "reservations",
    request_body = CreateReservation,
    responses(
        (status = 201, body = ReservationResponse),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateReservation>,
) -> Result<(StatusCode, Json<ReservationResponse>), ApiError> {
    let request = parse_request(body)?;
    match state.boxoffice.place_hold(request).await {
        Ok(hold) => {
            state.metrics.hold_created();
            Ok((
                StatusCode::CREATED,
                Json(ReservationResponse::new(hold, state.boxoffice.now())),
            ))
        }
        Err(err) => {
            if matches!(err, service::Error::SoldOut(_)) {
                state.metrics.hold_sold_out();
            }
            Err(err.into())
        }
    }
}

/// Read a reservation; `seconds_remaining` counts down to `expires_at`.
#[utoipa::path(get, path = "/api/v1/reservations/{reservation_id}", tag = "reservations",
    params(("reservation_id" = String, Path)),
    responses((status = 200, body = ReservationResponse), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(reservation_id): ApiPath<String>,
) -> Result<Json<ReservationResponse>, ApiError> {
    let id = parse_hold_id(&reservation_id)?;
    let hold = state.boxoffice.get_hold(&id).await?;
    Ok(Json(ReservationResponse::new(hold, state.boxoffice.now())))
}

/// Cancel a reservation and release its tickets. Repeating it is harmless; a paid
/// reservation answers `409 hold_completed`.
#[utoipa::path(delete, path = "/api/v1/reservations/{reservation_id}", tag = "reservations",
    params(("reservation_id" = String, Path)),
    responses(
        (status = 200, body = ReservationResponse),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    ApiPath(reservation_id): ApiPath<String>,
) -> Result<Json<ReservationResponse>, ApiError> {
    let id = parse_hold_id(&reservation_id)?;
    let hold = state.boxoffice.cancel_hold(&id).await?;
    Ok(Json(ReservationResponse::new(hold, state.boxoffice.now())))
}
