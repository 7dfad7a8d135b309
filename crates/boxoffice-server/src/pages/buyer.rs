//! The buyer's pages: events list, event page, checkout, order confirmation (SPEC §8).
//!
//! They call the same use cases as the JSON API. Paying happens server-side: with Stripe in
//! test mode (the built-in double, or an `sk_test_` key) the checkout form takes a test card
//! number, which the server maps to Stripe's test payment method and confirms the hold's
//! PaymentIntent with; one PaymentIntent per hold, so a retry after a declined card, a
//! double submit or a replay never pays twice. The order page then waits for the webhook.
//!
//! The checkout page releases the hold when the buyer leaves it (`pagehide` +
//! `navigator.sendBeacon` to `POST /checkout/{hold_id}/leave`), never while a payment is
//! under way: the page sends no beacon once "Pay" was pressed, and the server keeps the
//! hold whenever a payment was started and may be under way or have succeeded.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use boxoffice_core::catalog::EventWithTicketTypes;
use boxoffice_core::holds::{EmailAddress, Hold, HoldRequest, HoldStatus, Quantity};
use boxoffice_core::ids::{EventId, HoldId, OrderId, TicketTypeId};
use boxoffice_core::money::{Cents, Currency};
use boxoffice_core::payments::{Order, OrderStatus};
use boxoffice_core::service::checkout::{CheckoutPayment, CheckoutStart, LeaveCheckout};
use boxoffice_core::service::{self, error_chain};
use boxoffice_core::{PageRequest, Timestamp};
use boxoffice_stripe::PaymentIntentStatus;
use serde::Serialize;

use super::{Asset, Template};
use crate::http::api_error::{ApiError, InternalError};
use crate::http::middleware;
use crate::request_id::RequestId;
use crate::state::AppState;

/// This module's templates (under `templates/`).
pub const TEMPLATES: &[Template] = &[
    ("events.html", include_str!("../../templates/events.html")),
    ("event.html", include_str!("../../templates/event.html")),
    ("checkout.html", include_str!("../../templates/checkout.html")),
    ("order.html", include_str!("../../templates/order.html")),
];

/// This module's static assets (under `static/`).
pub const ASSETS: &[Asset] = &[
    (
        "checkout.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/checkout.js"),
    ),
    (
        "event.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/event.js"),
    ),
];

/// The events listed on the front page at most.
const EVENTS_LISTED: u32 = 100;

/// The test card that succeeds, as the buyer types it.
const TEST_CARD_SUCCEEDS: &str = "4242424242424242";

/// The test card that is declined.
const TEST_CARD_DECLINED: &str = "4000000000000002";

/// The buyer's routes: public, rate-limited per client address like the public API.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(events_list))
        .route("/events/{event_id}", get(event_page))
        .route("/events/{event_id}/reserve", post(reserve))
        .route("/checkout/{hold_id}", get(checkout))
        .route("/checkout/{hold_id}/pay", post(pay))
        .route("/checkout/{hold_id}/leave", post(leave))
        .route("/orders/{order_id}", get(order_page))
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

// ----- formatting -------------------------------------------------------------------------

/// Digits after the decimal point of a currency's minor unit (ISO 4217, as Stripe uses).
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "MGA" | "PYG" | "RWF" | "UGX" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount for people: `€25.00`, `$9.50`, `1,000 JPY`-style (`1000 JPY`).
pub(crate) fn money(amount: Cents, currency: Currency) -> String {
    let code = currency.as_str();
    let digits = minor_digits(code);
    let cents = amount.get();
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let number = if digits == 0 {
        cents.to_string()
    } else {
        let scale = 10u64.pow(digits);
        format!("{}.{:0width$}", cents / scale, cents % scale, width = digits as usize)
    };
    match code {
        "EUR" => format!("{sign}€{number}"),
        "USD" => format!("{sign}${number}"),
        "GBP" => format!("{sign}£{number}"),
        _ => format!("{sign}{number} {code}"),
    }
}

/// An instant for people, in UTC: `Sat 1 June 2030, 19:30 UTC`.
pub(crate) fn display_time(at: Timestamp) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short] [day padding:none] [month repr:long] [year], [hour]:[minute] UTC"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.as_millis()) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| at.to_rfc3339())
}

/// A message from the use cases as a sentence.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `m:ss` for a countdown.
fn minutes_seconds(seconds: i64) -> String {
    let seconds = seconds.max(0);
    format!("{}:{:02}", seconds / 60, seconds % 60)
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

/// The fields of an `application/x-www-form-urlencoded` body, in order (the same decoder
/// as the dashboard's forms; lenient as browsers are: a stray `%` stays as it is).
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

// ----- events list --------------------------------------------------------------------------

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

async fn events_list(State(state): State<AppState>) -> Result<Response, ApiError> {
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

// ----- event page and reserving ---------------------------------------------------------------

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

async fn event_page(
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

async fn reserve(
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

// ----- checkout ---------------------------------------------------------------------------------

#[derive(Serialize)]
struct ItemView {
    name: String,
    quantity: u32,
    unit_price: String,
    amount: String,
}

/// What the checkout page shows besides the hold.
#[derive(Default)]
struct CheckoutNotes {
    /// The card was declined, or could not be used (`data-testid="payment-error"`).
    payment_error: Option<String>,
    /// Anything else worth saying.
    message: Option<String>,
}

async fn render_checkout(state: &AppState, hold: &Hold, notes: CheckoutNotes, status: StatusCode) -> Response {
    let now = state.boxoffice.now();
    let event = state.boxoffice.get_event(&hold.event_id).await.ok();
    let type_name = |id: &TicketTypeId| {
        event
            .as_ref()
            .and_then(|event| event.ticket_types.iter().find(|tt| &tt.id == id))
            .map_or_else(|| "Tickets".to_owned(), |tt| tt.name.as_str().to_owned())
    };
    let items: Vec<ItemView> = hold
        .items
        .iter()
        .map(|item| ItemView {
            name: type_name(&item.ticket_type_id),
            quantity: item.quantity.get(),
            unit_price: money(item.unit_price, hold.currency),
            amount: money(item.unit_price.times(item.quantity.get()), hold.currency),
        })
        .collect();
    let hold_status = hold.status_at(now);
    let context = minijinja::context! {
        hold => minijinja::context! {
            id => hold.id.to_string(),
            status => hold_status.as_str(),
            expires_at => hold.expires_at.to_rfc3339(),
            remaining => minutes_seconds(hold.seconds_remaining(now)),
            amount => money(hold.amount, hold.currency),
            items,
        },
        server_now_ms => now.as_millis(),
        event => minijinja::context! {
            id => hold.event_id.to_string(),
            name => event.as_ref().map(|event| event.event.name.as_str().to_owned()),
        },
        test_mode => state.stripe_test_mode,
        payment_error => notes.payment_error,
        message => notes.message,
    };
    private(with_status(state.pages.render("checkout.html", context), status))
}

/// Loads a hold for the checkout pages; `None` for an unknown or malformed id.
async fn load_hold(state: &AppState, raw_id: &str) -> Result<Option<Hold>, ApiError> {
    let Ok(id) = HoldId::parse(raw_id) else {
        return Ok(None);
    };
    match state.boxoffice.get_hold(&id).await {
        Ok(hold) => Ok(Some(hold)),
        Err(service::Error::NotFound(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The PaymentIntent's status at the provider; `None` when it cannot be read now.
async fn intent_status(state: &AppState, payment_intent_id: &str) -> Option<PaymentIntentStatus> {
    match state.stripe.retrieve_payment_intent(payment_intent_id).await {
        Ok(intent) => Some(intent.status),
        Err(err) => {
            tracing::warn!(payment_intent_id, error = %error_chain(&err), "could not read a PaymentIntent");
            None
        }
    }
}

/// A PaymentIntent in one of these states has been paid, or is being paid.
fn paying_or_paid(status: PaymentIntentStatus) -> bool {
    matches!(
        status,
        PaymentIntentStatus::Succeeded | PaymentIntentStatus::Processing | PaymentIntentStatus::RequiresCapture
    )
}

/// The order of a hold whose payment went through (paid, refunded) or is going through at
/// the provider (the webhook has not arrived yet): the buyer belongs on its order page.
async fn settled_order(state: &AppState, hold: &HoldId) -> Result<Option<OrderId>, ApiError> {
    let CheckoutPayment::Created(order) = state.boxoffice.checkout_payment(hold).await? else {
        return Ok(None);
    };
    let settled = match (order.status, &order.payment_intent_id) {
        (OrderStatus::Pending | OrderStatus::Failed, Some(pi)) => {
            intent_status(state, pi).await.is_some_and(paying_or_paid)
        }
        (OrderStatus::Pending | OrderStatus::Failed, None) => false,
        (OrderStatus::Paid | OrderStatus::Refunded | OrderStatus::Cancelled, _) => true,
    };
    Ok(settled.then_some(order.id))
}

async fn checkout(
    State(state): State<AppState>,
    ext: RequestIdExt,
    Path(hold_id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(hold) = load_hold(&state, &hold_id).await? else {
        return Ok(not_found(&state, &ext, "Reservation"));
    };
    if let Some(order) = settled_order(&state, &hold.id).await? {
        return Ok(see_other(&format!("/orders/{order}")));
    }
    let notes = match hold.status_at(state.boxoffice.now()) {
        HoldStatus::Completed => CheckoutNotes {
            message: Some("This reservation is already paid.".into()),
            ..CheckoutNotes::default()
        },
        _ => CheckoutNotes::default(),
    };
    Ok(render_checkout(&state, &hold, notes, StatusCode::OK).await)
}

/// Stripe's test payment method for a test card number (spaces and dashes allowed).
fn test_payment_method(card_number: &str) -> Option<&'static str> {
    let digits: String = card_number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    match digits.as_str() {
        TEST_CARD_SUCCEEDS => Some("pm_card_visa"),
        TEST_CARD_DECLINED => Some("pm_card_chargeDeclined"),
        _ => None,
    }
}

/// Holds whose payment this process is confirming at the provider right now: a leave
/// beacon (from another tab) never releases them meanwhile.
static CONFIRMING: LazyLock<Mutex<HashSet<HoldId>>> = LazyLock::new(Mutex::default);

/// Marks a hold as being confirmed until dropped.
struct Confirming(HoldId);

impl Confirming {
    fn start(hold: &HoldId) -> Self {
        CONFIRMING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(hold.clone());
        Self(hold.clone())
    }

    fn is_under_way(hold: &HoldId) -> bool {
        CONFIRMING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(hold)
    }
}

impl Drop for Confirming {
    fn drop(&mut self) {
        CONFIRMING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.0);
    }
}

fn declined(text: &str) -> CheckoutNotes {
    CheckoutNotes {
        payment_error: Some(text.to_owned()),
        message: None,
    }
}

/// A provider failure, shown to the buyer as a payment error and recorded as a 5xx.
fn provider_trouble(mut response: Response, detail: String) -> Response {
    response.extensions_mut().insert(InternalError(detail));
    response
}

const PROVIDER_TROUBLE: &str = "The payment service did not answer. Please try again: you will never be charged twice.";

async fn pay(
    State(state): State<AppState>,
    ext: RequestIdExt,
    Path(hold_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(hold) = load_hold(&state, &hold_id).await? else {
        return Ok(not_found(&state, &ext, "Reservation"));
    };
    if let Some(order) = settled_order(&state, &hold.id).await? {
        return Ok(see_other(&format!("/orders/{order}")));
    }
    if !state.stripe_test_mode {
        let notes = declined(
            "Card payments with live Stripe need Stripe.js and a publishable key, which this server does not \
             have configured. No payment was made.",
        );
        return Ok(render_checkout(&state, &hold, notes, StatusCode::UNPROCESSABLE_ENTITY).await);
    }
    if hold.status_at(state.boxoffice.now()) != HoldStatus::Active {
        return Ok(render_checkout(&state, &hold, CheckoutNotes::default(), StatusCode::CONFLICT).await);
    }
    let fields = parse_form(&body);
    let Some(payment_method) = field(&fields, "card_number").and_then(test_payment_method) else {
        let notes = declined(
            "This is a test box office: use a test card: 4242 4242 4242 4242 (succeeds) or \
             4000 0000 0000 0002 (is declined).",
        );
        return Ok(render_checkout(&state, &hold, notes, StatusCode::UNPROCESSABLE_ENTITY).await);
    };
    let (order_id, payment_intent_id) = match state.boxoffice.start_checkout_payment(&hold.id).await {
        Ok(CheckoutStart::Ready {
            order_id,
            payment_intent_id,
        }) => (order_id, payment_intent_id),
        Ok(CheckoutStart::Refused { code, message }) => {
            // The hold ended (or was paid) meanwhile: the page shows its state.
            let hold = state.boxoffice.get_hold(&hold.id).await?;
            let notes = if code == "invalid_request" {
                declined(&format!("The payment could not be created: {message}"))
            } else {
                CheckoutNotes::default()
            };
            let status = if code == "invalid_request" {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::CONFLICT
            };
            return Ok(render_checkout(&state, &hold, notes, status).await);
        }
        Err(service::Error::KeyInUse { .. }) => {
            let notes = CheckoutNotes {
                message: Some("Your payment is already being processed. Wait a moment, then reload this page.".into()),
                ..CheckoutNotes::default()
            };
            return Ok(render_checkout(&state, &hold, notes, StatusCode::CONFLICT).await);
        }
        Err(service::Error::ProviderUnavailable(detail)) => {
            let page = render_checkout(&state, &hold, declined(PROVIDER_TROUBLE), StatusCode::BAD_GATEWAY).await;
            return Ok(provider_trouble(
                page,
                format!("checkout: creating the payment: {detail}"),
            ));
        }
        Err(err) => return Err(err.into()),
    };

    // Confirm the one PaymentIntent of this hold. Each attempt has its own provider key
    // (an attempt after a decline must reach Stripe again); a PaymentIntent succeeds at most
    // once, so no sequence of attempts can pay twice.
    let confirming = Confirming::start(&hold.id);
    let attempt_key = format!("checkout-{}-confirm-{}", hold.id, boxoffice_core::ids::random_hex());
    let confirmed = state
        .stripe
        .confirm_payment_intent(&payment_intent_id, payment_method, &attempt_key)
        .await;
    drop(confirming);
    let order_page = format!("/orders/{order_id}");
    match confirmed {
        Ok(intent) if paying_or_paid(intent.status) => Ok(see_other(&order_page)),
        Ok(intent) => {
            let notes = declined(&format!(
                "The payment did not go through (it is {}). Please try again.",
                intent.status.as_str().replace('_', " ")
            ));
            Ok(render_checkout(&state, &hold, notes, StatusCode::PAYMENT_REQUIRED).await)
        }
        Err(err) if err.card_error().is_some() => {
            let notes = declined(
                "Your card was declined. No money was taken. You can try again with another card while your \
                 tickets are held.",
            );
            Ok(render_checkout(&state, &hold, notes, StatusCode::PAYMENT_REQUIRED).await)
        }
        Err(err) => {
            // Paid already (a double submit, another tab)? Then the order page is the answer.
            if intent_status(&state, &payment_intent_id)
                .await
                .is_some_and(paying_or_paid)
            {
                return Ok(see_other(&order_page));
            }
            let page = render_checkout(&state, &hold, declined(PROVIDER_TROUBLE), StatusCode::BAD_GATEWAY).await;
            Ok(provider_trouble(
                page,
                format!("checkout: confirming {payment_intent_id}: {}", error_chain(&err)),
            ))
        }
    }
}

/// The `sendBeacon` target of a buyer leaving checkout: releases the hold unless a payment
/// is under way or may have succeeded. Always 204 for a known hold (a beacon reads nothing).
async fn leave(State(state): State<AppState>, Path(hold_id): Path<String>) -> Result<Response, ApiError> {
    let Ok(id) = HoldId::parse(&hold_id) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if Confirming::is_under_way(&id) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let outcome = match state.boxoffice.leave_checkout(&id).await {
        Ok(outcome) => outcome,
        Err(service::Error::NotFound(_)) => return Ok(StatusCode::NOT_FOUND.into_response()),
        Err(err) => return Err(err.into()),
    };
    if let LeaveCheckout::AskProvider { payment_intent_id } = outcome {
        // Released only when the PaymentIntent is known to await a payment method: after a
        // declined card, nothing is under way. Unknown (provider down) keeps the hold.
        let idle = matches!(
            intent_status(&state, &payment_intent_id).await,
            Some(PaymentIntentStatus::RequiresPaymentMethod | PaymentIntentStatus::Canceled)
        );
        if idle && !Confirming::is_under_way(&id) {
            state.boxoffice.release_after_failed_payment(&id).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- order confirmation -----------------------------------------------------------------------

#[derive(Serialize)]
struct TicketView {
    code: String,
    type_name: String,
    qr: Option<minijinja::Value>,
}

async fn order_page(
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

    #[test]
    fn only_the_two_test_cards_are_taken() {
        assert_eq!(test_payment_method("4242 4242 4242 4242"), Some("pm_card_visa"));
        assert_eq!(test_payment_method("4242-4242-4242-4242"), Some("pm_card_visa"));
        assert_eq!(test_payment_method("4000000000000002"), Some("pm_card_chargeDeclined"));
        assert_eq!(test_payment_method("4000 0000 0000 0077"), None);
        assert_eq!(test_payment_method(""), None);
    }

    #[test]
    fn money_uses_the_currency_minor_unit() {
        let eur = Currency::parse("EUR").expect("valid");
        let jpy = Currency::parse("JPY").expect("valid");
        let chf = Currency::parse("CHF").expect("valid");
        assert_eq!(money(Cents::from_trusted(2_505), eur), "€25.05");
        assert_eq!(money(Cents::from_trusted(1_000), jpy), "1000 JPY");
        assert_eq!(money(Cents::from_trusted(7), chf), "0.07 CHF");
    }

    #[test]
    fn countdowns_read_minutes_and_seconds() {
        assert_eq!(minutes_seconds(0), "0:00");
        assert_eq!(minutes_seconds(65), "1:05");
        assert_eq!(minutes_seconds(900), "15:00");
        assert_eq!(minutes_seconds(-3), "0:00");
    }

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
