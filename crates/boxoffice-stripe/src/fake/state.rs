//! The double's in-memory Stripe objects and the one store that holds them. Everything a
//! request reads or changes is in [`FakeState`], behind one lock taken for the whole
//! operation, so each operation is atomic as a Stripe API call is.
//!
//! The records keep only what the double decides on; `to_json` renders Stripe's full
//! documented shape, so that a client written against Stripe's reference finds here what
//! it would find there.

use std::collections::{BTreeMap, HashMap};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::delivery::Delivery;
use super::faults::Faults;
use super::idempotency::{IdempotencyEntry, IdempotencyScope};
use crate::types::PaymentIntentStatus;

#[derive(Default)]
pub(super) struct FakeState {
    pub(super) payment_intents: HashMap<String, PaymentIntentRecord>,
    /// Ids in creation order; lists read it backwards (newest first, as Stripe lists).
    pub(super) payment_intent_order: Vec<String>,
    pub(super) charges: HashMap<String, ChargeRecord>,
    /// Events in creation order.
    pub(super) events: Vec<Value>,
    pub(super) idempotency: HashMap<IdempotencyScope, IdempotencyEntry>,
    pub(super) faults: Faults,
    /// Events created by the current request, for delivery once it commits.
    pub(super) outbox: Vec<Delivery>,
    /// Deliveries held back by `reorder_webhooks`.
    pub(super) held: Vec<Delivery>,
    pub(super) worker: Option<mpsc::UnboundedSender<Delivery>>,
}

#[derive(Debug, Clone)]
pub(super) struct PaymentIntentRecord {
    pub(super) id: String,
    pub(super) amount: i64,
    pub(super) amount_received: i64,
    pub(super) currency: String,
    pub(super) description: Option<String>,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) status: PaymentIntentStatus,
    pub(super) client_secret: String,
    pub(super) created: i64,
    pub(super) latest_charge: Option<String>,
    pub(super) payment_method: Option<String>,
    pub(super) last_payment_error: Option<Value>,
}

#[derive(Debug, Clone)]
pub(super) struct ChargeRecord {
    pub(super) id: String,
    pub(super) amount: i64,
    pub(super) amount_refunded: i64,
    pub(super) currency: String,
    pub(super) succeeded: bool,
    pub(super) payment_intent: String,
    pub(super) payment_method: String,
    pub(super) created: i64,
}

/// A fresh Stripe-style id: `{prefix}_` and `len` random letters and digits.
pub(super) fn new_id(prefix: &str, len: usize) -> String {
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}_{suffix}")
}

impl PaymentIntentRecord {
    /// Stripe's full PaymentIntent shape (every key of the documented object), so that a
    /// client written against Stripe's reference finds what it expects here too.
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_details": { "tip": {} },
            "amount_received": self.amount_received,
            "application": null,
            "application_fee_amount": null,
            "automatic_payment_methods": { "enabled": true },
            "canceled_at": null,
            "cancellation_reason": null,
            "capture_method": "automatic",
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": null,
            "description": self.description,
            "last_payment_error": self.last_payment_error,
            "latest_charge": self.latest_charge,
            "livemode": false,
            "metadata": self.metadata,
            "next_action": null,
            "on_behalf_of": null,
            "payment_method": self.payment_method,
            "payment_method_options": {
                "card": {
                    "installments": null,
                    "mandate_options": null,
                    "network": null,
                    "request_three_d_secure": "automatic",
                },
                "link": { "persistent_token": null },
            },
            "payment_method_types": ["card", "link"],
            "processing": null,
            "receipt_email": null,
            "review": null,
            "setup_future_usage": null,
            "shipping": null,
            "source": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": self.status,
            "transfer_data": null,
            "transfer_group": null,
        })
    }
}

impl ChargeRecord {
    /// Stripe's documented Charge shape.
    pub(super) fn to_json(&self) -> Value {
        let (status, outcome, failure_code, failure_message) = if self.succeeded {
            (
                "succeeded",
                json!({
                    "network_status": "approved_by_network",
                    "reason": null,
                    "risk_level": "normal",
                    "risk_score": 32,
                    "seller_message": "Payment complete.",
                    "type": "authorized",
                }),
                None,
                None,
            )
        } else {
            (
                "failed",
                json!({
                    "network_status": "declined_by_network",
                    "reason": "generic_decline",
                    "risk_level": "normal",
                    "risk_score": 32,
                    "seller_message": "The bank did not return any further details with this decline.",
                    "type": "issuer_declined",
                }),
                Some("card_declined"),
                Some("Your card was declined."),
            )
        };
        json!({
            "id": self.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": if self.succeeded { self.amount } else { 0 },
            "amount_refunded": self.amount_refunded,
            "application": null,
            "application_fee": null,
            "application_fee_amount": null,
            "balance_transaction": if self.succeeded { Some(format!("txn_{}", &self.id[3..])) } else { None },
            "billing_details": {
                "address": {
                    "city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null,
                },
                "email": null,
                "name": null,
                "phone": null,
            },
            "calculated_statement_descriptor": "BOXOFFICE",
            "captured": self.succeeded,
            "created": self.created,
            "currency": self.currency,
            "customer": null,
            "description": null,
            "disputed": false,
            "failure_balance_transaction": null,
            "failure_code": failure_code,
            "failure_message": failure_message,
            "fraud_details": {},
            "livemode": false,
            "metadata": {},
            "on_behalf_of": null,
            "outcome": outcome,
            "paid": self.succeeded,
            "payment_intent": self.payment_intent,
            "payment_method": self.payment_method,
            "payment_method_details": {
                "card": {
                    "brand": "visa",
                    "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": null },
                    "country": "US",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "fingerprint": "Xt5EWLLDS7FJjR1c",
                    "funding": "credit",
                    "installments": null,
                    "last4": if self.succeeded { "4242" } else { "0002" },
                    "mandate": null,
                    "network": "visa",
                    "three_d_secure": null,
                    "wallet": null,
                },
                "type": "card",
            },
            "receipt_email": null,
            "receipt_number": null,
            "receipt_url": format!("https://pay.stripe.com/receipts/{}", self.id),
            "refunded": self.succeeded && self.amount_refunded >= self.amount,
            "review": null,
            "shipping": null,
            "source_transfer": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": status,
            "transfer_data": null,
            "transfer_group": null,
        })
    }
}
