//! The buyer's pages: events list, event page, checkout, order confirmation (SPEC §8),
//! one module per page.
//!
//! They call the same use cases as the JSON API; this module has what they share: the
//! routes, the not-found page, cache control, and the form decoder.

mod checkout;
mod event;
mod events;
mod format;
mod order;

use axum::Router;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::{Asset, Template};
use crate::http::middleware;
use crate::request_id::RequestId;
use crate::state::AppState;

pub(crate) use format::{display_time, money};

/// This module's templates (under `templates/`).
pub const TEMPLATES: &[Template] = &[
    ("events.html", include_str!("../../../templates/events.html")),
    ("event.html", include_str!("../../../templates/event.html")),
    ("checkout.html", include_str!("../../../templates/checkout.html")),
    ("order.html", include_str!("../../../templates/order.html")),
];

/// This module's static assets (under `static/`).
pub const ASSETS: &[Asset] = &[
    (
        "checkout.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/checkout.js"),
    ),
    (
        "event.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/event.js"),
    ),
];

/// The buyer's routes: public, rate-limited per client address like the public API.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(events::events_list))
        .route("/events/{event_id}", get(event::event_page))
        .route("/events/{event_id}/reserve", post(event::reserve))
        .route("/checkout/{hold_id}", get(checkout::checkout))
        .route("/checkout/{hold_id}/pay", post(checkout::pay))
        .route("/checkout/{hold_id}/leave", post(checkout::leave))
        .route("/orders/{order_id}", get(order::order_page))
        .route_layer(axum::middleware::from_fn_with_state(state, middleware::rate_limit))
}

type RequestIdExt = Option<Extension<RequestId>>;

fn request_id(ext: &RequestIdExt) -> Option<&str> {
    ext.as_ref().map(|Extension(RequestId(id))| id.as_str())
}

fn not_found(state: &AppState, ext: &RequestIdExt, what: &str) -> Response {
    state.pages.error_page(
        StatusCode::NOT_FOUND,
        &format!("{what} not found"),
        "There is nothing at this address. The link may be mistyped, or it may have expired.",
        request_id(ext),
    )
}

fn with_status(mut response: Response, status: StatusCode) -> Response {
    *response.status_mut() = status;
    response
}

/// Pages about one buyer's hold or order: never stored by a cache (they carry the state
/// of a payment, and ticket codes).
fn private(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn see_other(location: &str) -> Response {
    private(Redirect::to(location).into_response())
}

/// The fields of an `application/x-www-form-urlencoded` body, in order (the same decoder
/// as the dashboard's forms; lenient as browsers are: a stray `%` stays as it is).
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_percent_escapes_and_plus() {
        let form = parse_form(b"qty_tt_1=2&customer_email=a%2Bb%40example.com&card_number=4242+4242&x=%zz&=&y");
        assert_eq!(
            form,
            vec![
                ("qty_tt_1".to_owned(), "2".to_owned()),
                ("customer_email".to_owned(), "a+b@example.com".to_owned()),
                ("card_number".to_owned(), "4242 4242".to_owned()),
                ("x".to_owned(), "%zz".to_owned()),
                (String::new(), String::new()),
                ("y".to_owned(), String::new()),
            ]
        );
        assert_eq!(parse_form(b"a=%4"), vec![("a".to_owned(), "%4".to_owned())]);
        assert_eq!(parse_form(b"a=%+4"), vec![("a".to_owned(), "% 4".to_owned())]);
        assert_eq!(parse_form(b"a=%41"), vec![("a".to_owned(), "A".to_owned())]);
    }
}
