//! `POST /v1/refunds`: refunds a succeeded Charge, named directly or through its
//! PaymentIntent, in full or in part, and emits `charge.refunded` and `refund.created`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::FakeStripe;
use super::api::{Outcome, RequestCtx};
use super::params::{check_params, form_body, parse_amount};
use super::state::{FakeState, new_id};
use crate::form::Form;
use crate::types::PaymentIntentStatus;
use crate::unix_now;

pub(super) async fn create_refund(State(fake): State<FakeStripe>, headers: HeaderMap, body: Bytes) -> Response {
    fake.api(
        &headers,
        "POST /v1/refunds".into(),
        form_body(&body),
        FakeState::create_refund,
    )
    .await
}

impl FakeState {
    fn create_refund(&mut self, params: &Form, ctx: &RequestCtx) -> Outcome {
        if let Err(outcome) = check_params(params, &["payment_intent", "charge", "amount", "reason", "metadata"]) {
            return outcome;
        }
        let charge_id = match (params.get("payment_intent"), params.get("charge")) {
            (Some(pi_id), _) => match self.payment_intents.get(pi_id) {
                None => return Outcome::missing("payment_intent", pi_id, "payment_intent"),
                Some(pi) => match (&pi.latest_charge, pi.status) {
                    (Some(charge), PaymentIntentStatus::Succeeded) => charge.clone(),
                    _ => {
                        return Outcome::invalid(
                            format!("This PaymentIntent ({pi_id}) does not have a successful charge to refund."),
                            "charge_not_refundable",
                            Some("payment_intent"),
                        );
                    }
                },
            },
            (None, Some(charge_id)) => charge_id.to_owned(),
            (None, None) => {
                return Outcome::invalid(
                    "One of the following params should be provided for this request: payment_intent or charge.",
                    "parameter_missing",
                    Some("payment_intent"),
                );
            }
        };
        let Some(charge) = self.charges.get_mut(&charge_id) else {
            return Outcome::missing("charge", &charge_id, "charge");
        };
        let remaining = charge.amount - charge.amount_refunded;
        if !charge.succeeded || remaining <= 0 {
            return Outcome {
                store: true,
                ..Outcome::invalid(
                    format!("Charge {charge_id} has already been refunded."),
                    "charge_already_refunded",
                    None,
                )
            };
        }
        let amount = match params.get("amount").map(|v| parse_amount(v, "amount")) {
            None => remaining,
            Some(Ok(amount)) if amount <= remaining => amount,
            Some(Ok(amount)) => {
                return Outcome::invalid(
                    format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})."),
                    "amount_too_large",
                    Some("amount"),
                );
            }
            Some(Err(outcome)) => return outcome,
        };
        charge.amount_refunded += amount;
        let charge_json = charge.to_json();
        let refund = json!({
            "id": new_id("re", 24),
            "object": "refund",
            "amount": amount,
            "balance_transaction": new_id("txn", 24),
            "charge": charge.id,
            "created": unix_now(),
            "currency": charge.currency,
            "destination_details": {
                "card": {
                    "reference": "123456789012",
                    "reference_status": "available",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            "metadata": params.map("metadata"),
            "payment_intent": charge.payment_intent,
            "reason": params.get("reason"),
            "receipt_number": null,
            "source_transfer_reversal": null,
            "status": "succeeded",
            "transfer_reversal": null,
        });
        self.emit("charge.refunded", charge_json, ctx);
        self.emit("refund.created", refund.clone(), ctx);
        Outcome::ok(refund)
    }
}
