//! `GET /`: the front page, the events soonest first.

use axum::extract::State;
use axum::response::Response;
use boxoffice_core::PageRequest;
use boxoffice_core::catalog::EventWithTicketTypes;
use serde::Serialize;

use super::format::{display_time, money};
use crate::http::api_error::ApiError;
use crate::state::AppState;

/// The events listed on the front page at most.
const EVENTS_LISTED: u32 = 100;

#[derive(Serialize)]
struct EventSummary {
    id: String,
    name: String,
    starts_at: String,
    starts_at_display: String,
    from_price: Option<String>,
    available: i64,
    sold_out: bool,
}

fn summary(event: &EventWithTicketTypes) -> EventSummary {
    let on_sale = || event.ticket_types.iter().filter(|tt| tt.on_sale);
    let available: i64 = on_sale().map(|tt| tt.available()).sum();
    EventSummary {
        id: event.event.id.to_string(),
        name: event.event.name.as_str().to_owned(),
        starts_at: event.event.starts_at.to_rfc3339(),
        starts_at_display: display_time(event.event.starts_at),
        from_price: on_sale()
            .map(|tt| tt.price)
            .min()
            .map(|price| money(price, event.event.currency)),
        available,
        sold_out: available == 0,
    }
}

pub(super) async fn events_list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let page = state
        .boxoffice
        .list_events(
            None,
            &PageRequest {
                limit: EVENTS_LISTED,
                starting_after: None,
            },
        )
        .await?;
    let mut events = page.data;
    // Soonest first: what a buyer looks for.
    events.sort_by_key(|event| event.event.starts_at);
    let events: Vec<EventSummary> = events.iter().map(summary).collect();
    Ok(state
        .pages
        .render("events.html", minijinja::context! { events, has_more => page.has_more }))
}
