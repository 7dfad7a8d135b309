//! An event's page (`GET /events/{event_id}`) and reserving from it
//! (`POST /events/{event_id}/reserve`): the form becomes a hold, and the buyer goes on to
//! checkout; a refusal shows the page again with what is left and what went wrong.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use boxoffice_core::catalog::EventWithTicketTypes;
use boxoffice_core::holds::{EmailAddress, HoldRequest, Quantity};
use boxoffice_core::ids::{EventId, TicketTypeId};
use boxoffice_core::service;
use serde::Serialize;

use super::format::{capitalized, display_time, money};
use super::{RequestIdExt, field, not_found, parse_form, see_other, with_status};
use crate::http::api_error::ApiError;
use crate::state::AppState;

#[derive(Serialize)]
struct TicketTypeView {
    id: String,
    name: String,
    price: String,
    available: i64,
    /// The most the buyer may choose: what is left, capped by the per-order maximum.
    max: i64,
    max_per_order: u32,
    on_sale: bool,
    sold_out: bool,
    /// The quantity in the form (what the buyer entered, when the page is shown again).
    qty: String,
}

/// What the buyer sent, to show again with a message.
#[derive(Default)]
struct ReserveForm {
    quantities: HashMap<String, String>,
    customer_email: String,
}

#[derive(Serialize)]
struct Message {
    kind: &'static str,
    text: String,
}

fn render_event(
    state: &AppState,
    event: &EventWithTicketTypes,
    form: &ReserveForm,
    message: Option<Message>,
    status: StatusCode,
) -> Response {
    let ticket_types: Vec<TicketTypeView> = event
        .ticket_types
        .iter()
        .map(|tt| {
            let id = tt.id.to_string();
            let available = tt.available();
            TicketTypeView {
                qty: form.quantities.get(&id).cloned().unwrap_or_else(|| "0".to_owned()),
                name: tt.name.as_str().to_owned(),
                price: money(tt.price, event.event.currency),
                max: available.min(i64::from(tt.max_per_order.get())),
                max_per_order: tt.max_per_order.get(),
                on_sale: tt.on_sale,
                sold_out: available == 0,
                available,
                id,
            }
        })
        .collect();
    let bookable = ticket_types.iter().any(|tt| tt.on_sale && tt.available > 0);
    let context = minijinja::context! {
        event => minijinja::context! {
            id => event.event.id.to_string(),
            name => event.event.name.as_str(),
            starts_at => event.event.starts_at.to_rfc3339(),
            starts_at_display => display_time(event.event.starts_at),
        },
        ticket_types,
        bookable,
        customer_email => form.customer_email.as_str(),
        message,
    };
    with_status(state.pages.render("event.html", context), status)
}

async fn load_event(state: &AppState, raw_id: &str) -> Result<Option<EventWithTicketTypes>, ApiError> {
    let Ok(id) = EventId::parse(raw_id) else {
        return Ok(None);
    };
    match state.boxoffice.get_event(&id).await {
        Ok(event) => Ok(Some(event)),
        Err(service::Error::NotFound(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

pub(super) async fn event_page(
    State(state): State<AppState>,
    ext: RequestIdExt,
    Path(event_id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(event) = load_event(&state, &event_id).await? else {
        return Ok(not_found(&state, &ext, "Event"));
    };
    Ok(render_event(
        &state,
        &event,
        &ReserveForm::default(),
        None,
        StatusCode::OK,
    ))
}

/// Why a reserve form cannot become a hold request (shown to the buyer, 422).
fn hold_request(event: &EventWithTicketTypes, form: &[(String, String)]) -> Result<HoldRequest, String> {
    let name_of = |id: &str| {
        event
            .ticket_types
            .iter()
            .find(|tt| tt.id.as_str() == id)
            .map(|tt| tt.name.as_str().to_owned())
    };
    let mut items = Vec::new();
    for (name, value) in form {
        let Some(raw_id) = name.strip_prefix("qty_") else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let Some(type_name) = name_of(raw_id) else {
            return Err("One of the chosen ticket types is not part of this event. Please choose again.".into());
        };
        let quantity: i64 = value
            .parse()
            .map_err(|_| format!("Enter a whole number of tickets for {type_name}."))?;
        if quantity == 0 {
            continue;
        }
        let quantity = Quantity::parse(quantity)
            .map_err(|_| format!("Enter a number of tickets between 0 and the maximum for {type_name}."))?;
        let id = TicketTypeId::parse(raw_id).map_err(|_| "Unknown ticket type.".to_owned())?;
        items.push((id, quantity));
    }
    if items.is_empty() {
        return Err("Choose at least one ticket.".into());
    }
    let customer_email = match field(form, "customer_email").map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(
            EmailAddress::parse(raw)
                .map_err(|_| "Enter a valid e-mail address, or leave the field empty.".to_owned())?,
        ),
    };
    HoldRequest::new(event.event.id.clone(), items, customer_email).map_err(|err| match err {
        boxoffice_core::holds::InvalidHoldRequest::DuplicateTicketType(_) => {
            "Each ticket type may appear only once.".to_owned()
        }
        other => other.to_string(),
    })
}

pub(super) async fn reserve(
    State(state): State<AppState>,
    ext: RequestIdExt,
    Path(event_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(event) = load_event(&state, &event_id).await? else {
        return Ok(not_found(&state, &ext, "Event"));
    };
    let fields = parse_form(&body);
    let form = ReserveForm {
        quantities: fields
            .iter()
            .filter_map(|(name, value)| name.strip_prefix("qty_").map(|id| (id.to_owned(), value.clone())))
            .collect(),
        customer_email: field(&fields, "customer_email").unwrap_or_default().to_owned(),
    };
    let error = |kind: &'static str, text: String| Some(Message { kind, text });
    let request = match hold_request(&event, &fields) {
        Ok(request) => request,
        Err(text) => {
            return Ok(render_event(
                &state,
                &event,
                &form,
                error("error", text),
                StatusCode::UNPROCESSABLE_ENTITY,
            ));
        }
    };
    let failure = match state.boxoffice.place_hold(request).await {
        Ok(hold) => {
            state.metrics.hold_created();
            return Ok(see_other(&format!("/checkout/{}", hold.id)));
        }
        Err(err) => err,
    };
    // Nothing was held: show the page again, with what is left now.
    let (status, text) = match failure {
        service::Error::SoldOut(name) => {
            state.metrics.hold_sold_out();
            (
                StatusCode::CONFLICT,
                format!(
                    "Sorry, there are not enough {name} tickets left for your choice. Nothing was reserved; \
                     please choose again."
                ),
            )
        }
        service::Error::Invalid(message) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}. Nothing was reserved.", capitalized(&message)),
        ),
        service::Error::NotFound(_) => return Ok(not_found(&state, &ext, "Event")),
        other => return Err(other.into()),
    };
    let event = load_event(&state, &event_id).await?.unwrap_or(event);
    Ok(render_event(&state, &event, &form, error("error", text), status))
}
