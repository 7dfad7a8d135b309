//! The PaymentIntent endpoints: create, retrieve, list, confirm. Confirming with a test
//! payment method creates the Charge and the event Stripe would (`pm_card_visa` succeeds,
//! `pm_card_chargeDeclined` is declined with Stripe's `card_error`).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::FakeStripe;
use super::api::{Outcome, RequestCtx, error_body};
use super::params::{check_params, form_body, paginate, parse_amount, query_params, required};
use super::state::{ChargeRecord, FakeState, PaymentIntentRecord, new_id};
use crate::form::Form;
use crate::types::PaymentIntentStatus;
use crate::unix_now;

pub(super) async fn create_payment_intent(State(fake): State<FakeStripe>, headers: HeaderMap, body: Bytes) -> Response {
    fake.api(
        &headers,
        "POST /v1/payment_intents".into(),
        form_body(&body),
        FakeState::create_payment_intent,
    )
    .await
}

pub(super) async fn retrieve_payment_intent(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    fake.api(
        &headers,
        format!("GET /v1/payment_intents/{id}"),
        query_params(query),
        |state, _, _| match state.payment_intents.get(&id) {
            Some(pi) => Outcome::ok(pi.to_json()),
            None => Outcome::missing("payment_intent", &id, "intent"),
        },
    )
    .await
}

pub(super) async fn list_payment_intents(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    fake.api(
        &headers,
        "GET /v1/payment_intents".into(),
        query_params(query),
        |state, params, _| {
            let newest_first: Vec<Value> = state
                .payment_intent_order
                .iter()
                .rev()
                .filter_map(|id| state.payment_intents.get(id))
                .map(PaymentIntentRecord::to_json)
                .collect();
            paginate(newest_first, params, "/v1/payment_intents")
        },
    )
    .await
}

pub(super) async fn confirm_payment_intent(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.api(
        &headers,
        format!("POST /v1/payment_intents/{id}/confirm"),
        form_body(&body),
        move |state, params, ctx| state.confirm_payment_intent(&id, params, ctx),
    )
    .await
}

impl FakeState {
    fn create_payment_intent(&mut self, params: &Form, _ctx: &RequestCtx) -> Outcome {
        let result = (|| {
            check_params(params, &["amount", "currency", "description", "metadata"])?;
            let amount = parse_amount(required(params, "amount")?, "amount")?;
            let currency = required(params, "currency")?.to_ascii_lowercase();
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(Outcome::invalid(
                    format!("Invalid currency: {currency}."),
                    "parameter_invalid_string",
                    Some("currency"),
                ));
            }
            let metadata = params.map("metadata");
            if metadata.len() > 50
                || metadata
                    .iter()
                    .any(|(k, v)| k.is_empty() || k.len() > 40 || v.len() > 500)
            {
                return Err(Outcome::invalid(
                    "Metadata allows at most 50 keys of up to 40 characters, values of up to 500.",
                    "parameter_invalid_string",
                    Some("metadata"),
                ));
            }
            Ok((amount, currency, metadata))
        })();
        let (amount, currency, metadata) = match result {
            Ok(parsed) => parsed,
            Err(outcome) => return outcome,
        };
        let id = new_id("pi", 24);
        let record = PaymentIntentRecord {
            client_secret: format!("{id}_secret_{}", new_id("", 25).trim_start_matches('_')),
            id: id.clone(),
            amount,
            amount_received: 0,
            currency,
            description: params.get("description").map(str::to_owned),
            metadata,
            status: PaymentIntentStatus::RequiresPaymentMethod,
            created: unix_now(),
            latest_charge: None,
            payment_method: None,
            last_payment_error: None,
        };
        let body = record.to_json();
        self.payment_intents.insert(id.clone(), record);
        self.payment_intent_order.push(id);
        Outcome::ok(body)
    }

    fn confirm_payment_intent(&mut self, id: &str, params: &Form, ctx: &RequestCtx) -> Outcome {
        if let Err(outcome) = check_params(params, &["payment_method", "return_url"]) {
            return outcome;
        }
        let payment_method = match required(params, "payment_method") {
            Ok(pm) => pm,
            Err(outcome) => return outcome,
        };
        let Some(pi) = self.payment_intents.get(id).cloned() else {
            return Outcome::missing("payment_intent", id, "intent");
        };
        if !matches!(
            pi.status,
            PaymentIntentStatus::RequiresPaymentMethod | PaymentIntentStatus::RequiresConfirmation
        ) {
            let mut body = error_body(
                "invalid_request_error",
                Some("payment_intent_unexpected_state"),
                &format!(
                    "You cannot confirm this PaymentIntent because it has a status of {}.",
                    pi.status.as_str()
                ),
                None,
            );
            body["error"]["payment_intent"] = pi.to_json();
            return Outcome {
                status: StatusCode::BAD_REQUEST,
                body,
                store: true,
            };
        }
        let succeeds = match payment_method {
            "pm_card_visa" => true,
            "pm_card_chargeDeclined" => false,
            other => return Outcome::missing("PaymentMethod", other, "payment_method"),
        };
        // Stripe turns a test token into a fresh PaymentMethod for each use.
        let pm_id = new_id("pm", 24);
        let charge = ChargeRecord {
            id: new_id("ch", 24),
            amount: pi.amount,
            amount_refunded: 0,
            currency: pi.currency.clone(),
            succeeded: succeeds,
            payment_intent: pi.id.clone(),
            payment_method: pm_id.clone(),
            created: unix_now(),
        };
        let mut pi = pi;
        pi.latest_charge = Some(charge.id.clone());
        let outcome = if succeeds {
            pi.status = PaymentIntentStatus::Succeeded;
            pi.amount_received = pi.amount;
            pi.payment_method = Some(pm_id);
            pi.last_payment_error = None;
            let body = pi.to_json();
            self.emit("payment_intent.succeeded", body.clone(), ctx);
            Outcome::ok(body)
        } else {
            let error = json!({
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "charge": charge.id,
                "param": "",
                "payment_method": {
                    "id": pm_id, "object": "payment_method", "type": "card", "created": charge.created,
                    "livemode": false, "metadata": {}, "customer": null,
                },
            });
            pi.status = PaymentIntentStatus::RequiresPaymentMethod;
            pi.payment_method = None;
            pi.last_payment_error = Some(error.clone());
            let pi_json = pi.to_json();
            self.emit("payment_intent.payment_failed", pi_json.clone(), ctx);
            let mut error = error;
            error["payment_intent"] = pi_json;
            error["request_log_url"] = json!(format!("https://dashboard.stripe.com/test/logs/{}", ctx.request_id));
            Outcome {
                status: StatusCode::PAYMENT_REQUIRED,
                body: json!({ "error": error }),
                store: true,
            }
        };
        self.charges.insert(charge.id.clone(), charge);
        self.payment_intents.insert(pi.id.clone(), pi);
        outcome
    }
}
