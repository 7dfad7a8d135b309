//! The order confirmation (`GET /orders/{order_id}`): the order's state while the
//! webhook is awaited, then the tickets with their QR codes.

use axum::extract::{Path, State};
use axum::response::Response;
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use boxoffice_core::holds::HoldStatus;
use boxoffice_core::ids::OrderId;
use boxoffice_core::payments::{Order, OrderStatus};
use boxoffice_core::service;
use serde::Serialize;

use super::checkout::{intent_status, paying_or_paid};
use super::format::{display_time, money};
use super::{RequestIdExt, not_found, private};
use crate::http::api_error::ApiError;
use crate::state::AppState;

#[derive(Serialize)]
struct TicketView {
    code: String,
    type_name: String,
    qr: Option<minijinja::Value>,
}

pub(super) async fn order_page(
    State(state): State<AppState>,
    ext: RequestIdExt,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let Ok(id) = OrderId::parse(&order_id) else {
        return Ok(not_found(&state, &ext, "Order"));
    };
    let order: Order = match state.boxoffice.get_order(&id).await {
        Ok(order) => order,
        Err(service::Error::NotFound(_)) => return Ok(not_found(&state, &ext, "Order")),
        Err(err) => return Err(err.into()),
    };
    let hold = state.boxoffice.get_hold(&order.hold_id).await?;
    let event = state.boxoffice.get_event(&hold.event_id).await.ok();
    let hold_active = hold.status_at(state.boxoffice.now()) == HoldStatus::Active;
    // A failed order whose PaymentIntent was paid since (a retry after a declined card) is
    // waiting for its webhook, like a pending one.
    let status = match (order.status, &order.payment_intent_id) {
        (OrderStatus::Failed, Some(pi)) if intent_status(&state, pi).await.is_some_and(paying_or_paid) => {
            OrderStatus::Pending
        }
        (status, _) => status,
    };
    let tickets: Vec<TicketView> = if status == OrderStatus::Paid {
        state
            .boxoffice
            .order_tickets(&id)
            .await?
            .into_iter()
            .filter(|ticket| ticket.status == "valid")
            .map(|ticket| TicketView {
                qr: qr_data_uri(&ticket.code).map(minijinja::Value::from_safe_string),
                type_name: event
                    .as_ref()
                    .and_then(|event| event.ticket_types.iter().find(|tt| tt.id == ticket.ticket_type_id))
                    .map_or_else(|| "Ticket".to_owned(), |tt| tt.name.as_str().to_owned()),
                code: ticket.code,
            })
            .collect()
    } else {
        Vec::new()
    };
    let context = minijinja::context! {
        order => minijinja::context! {
            id => order.id.to_string(),
            status => status.as_str(),
            amount => money(order.amount, order.currency),
            hold_id => order.hold_id.to_string(),
        },
        event => minijinja::context! {
            id => hold.event_id.to_string(),
            name => event.as_ref().map(|event| event.event.name.as_str().to_owned()),
            starts_at => event.as_ref().map(|event| event.event.starts_at.to_rfc3339()),
            starts_at_display => event.as_ref().map(|event| display_time(event.event.starts_at)),
        },
        tickets,
        hold_active,
    };
    Ok(private(state.pages.render("order.html", context)))
}

/// A QR code of `text` as an SVG `data:` URI (CSP: `img-src 'self' data:`). The URI is
/// made of a fixed prefix and base64 only, so it is safe in an attribute as it is.
fn qr_data_uri(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        BASE64_STANDARD.encode(svg.as_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_are_svg_data_uris() {
        let uri = qr_data_uri("tkt_0123456789abcdef").expect("encodable");
        assert!(uri.starts_with("data:image/svg+xml;base64,"));
        assert!(
            uri.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=:;,-".contains(&b))
        );
    }
}
