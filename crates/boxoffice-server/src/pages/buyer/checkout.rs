//! Checkout (`GET /checkout/{hold_id}`), paying (`POST /checkout/{hold_id}/pay`) and
//! leaving (`POST /checkout/{hold_id}/leave`).
//!
//! Paying happens server-side: with Stripe in test mode (the built-in double, or an
//! `sk_test_` key) the checkout form takes a test card number, which the server maps to
//! Stripe's test payment method and confirms the hold's PaymentIntent with; one
//! PaymentIntent per hold, so a retry after a declined card, a double submit or a replay
//! never pays twice. The order page then waits for the webhook.
//!
//! The checkout page releases the hold when the buyer leaves it (`pagehide` +
//! `navigator.sendBeacon` to `POST /checkout/{hold_id}/leave`), never while a payment is
//! under way: the page sends no beacon once "Pay" was pressed, and the server keeps the
//! hold whenever a payment was started and may be under way or have succeeded.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use boxoffice_core::holds::{Hold, HoldStatus};
use boxoffice_core::ids::{HoldId, OrderId, TicketTypeId};
use boxoffice_core::payments::OrderStatus;
use boxoffice_core::service::checkout::{CheckoutPayment, CheckoutStart, LeaveCheckout};
use boxoffice_core::service::{self, error_chain};
use boxoffice_stripe::PaymentIntentStatus;
use serde::Serialize;

use super::format::{minutes_seconds, money};
use super::{RequestIdExt, field, not_found, parse_form, private, see_other, with_status};
use crate::http::api_error::{ApiError, InternalError};
use crate::state::AppState;

/// The test card that succeeds, as the buyer types it.
const TEST_CARD_SUCCEEDS: &str = "4242424242424242";

/// The test card that is declined.
const TEST_CARD_DECLINED: &str = "4000000000000002";

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
pub(super) async fn intent_status(state: &AppState, payment_intent_id: &str) -> Option<PaymentIntentStatus> {
    match state.stripe.retrieve_payment_intent(payment_intent_id).await {
        Ok(intent) => Some(intent.status),
        Err(err) => {
            tracing::warn!(payment_intent_id, error = %error_chain(&err), "could not read a PaymentIntent");
            None
        }
    }
}

/// A PaymentIntent in one of these states has been paid, or is being paid.
pub(super) fn paying_or_paid(status: PaymentIntentStatus) -> bool {
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

pub(super) async fn checkout(
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

pub(super) async fn pay(
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
    // Meanwhile a leave beacon (another tab; any instance) must not release the hold: the
    // mark is in the database, and runs out by itself should this process die.
    state.boxoffice.begin_confirming(&order_id).await?;
    let attempt_key = format!("checkout-{}-confirm-{}", hold.id, boxoffice_core::ids::random_hex());
    let confirmed = state
        .stripe
        .confirm_payment_intent(&payment_intent_id, payment_method, &attempt_key)
        .await;
    if let Err(err) = state.boxoffice.end_confirming(&order_id).await {
        // Harmless: the mark runs out within CONFIRMING_WINDOW, keeping the hold till then.
        tracing::warn!(order_id = %order_id, error = %err, "could not clear the confirming mark");
    }
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
pub(super) async fn leave(State(state): State<AppState>, Path(hold_id): Path<String>) -> Result<Response, ApiError> {
    let Ok(id) = HoldId::parse(&hold_id) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
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
        if idle {
            state.boxoffice.release_after_failed_payment(&id).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_test_cards_are_taken() {
        assert_eq!(test_payment_method("4242 4242 4242 4242"), Some("pm_card_visa"));
        assert_eq!(test_payment_method("4242-4242-4242-4242"), Some("pm_card_visa"));
        assert_eq!(test_payment_method("4000000000000002"), Some("pm_card_chargeDeclined"));
        assert_eq!(test_payment_method("4000 0000 0000 0077"), None);
        assert_eq!(test_payment_method(""), None);
    }
}
