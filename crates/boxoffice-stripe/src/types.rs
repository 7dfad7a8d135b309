//! The Stripe objects boxoffice reads, as Stripe's API reference documents them (pinned to
//! [`crate::STRIPE_API_VERSION`]). Only the fields we use are typed; unknown fields are
//! ignored so that Stripe adding one never breaks us. Expandable references (`latest_charge`,
//! `payment_intent`, …) are read as ids whether Stripe sent the id or the expanded object.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// A page of a Stripe list endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    /// Always `"list"`.
    #[serde(default = "list_object")]
    pub object: String,
    pub data: Vec<T>,
    pub has_more: bool,
    #[serde(default)]
    pub url: String,
}

fn list_object() -> String {
    "list".to_owned()
}

/// Where a PaymentIntent is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
    /// A status added by Stripe after our pinned version; treat as "not final".
    #[serde(other)]
    Unknown,
}

impl PaymentIntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresConfirmation => "requires_confirmation",
            Self::RequiresAction => "requires_action",
            Self::Processing => "processing",
            Self::RequiresCapture => "requires_capture",
            Self::Canceled => "canceled",
            Self::Succeeded => "succeeded",
            Self::Unknown => "unknown",
        }
    }
}

/// A PaymentIntent (`pi_…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    /// Always `"payment_intent"`.
    pub object: String,
    /// In the currency's smallest unit.
    pub amount: i64,
    #[serde(default)]
    pub amount_received: i64,
    /// Lowercase ISO 4217.
    pub currency: String,
    pub status: PaymentIntentStatus,
    /// For the buyer's browser only; never log it.
    pub client_secret: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub latest_charge: Option<String>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub payment_method: Option<String>,
    /// The error of the last failed attempt, cleared when a new attempt starts.
    #[serde(default)]
    pub last_payment_error: Option<ApiErrorObject>,
    pub created: i64,
    pub livemode: bool,
}

/// A Charge (`ch_…`): what `charge.*` events carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    pub id: String,
    /// Always `"charge"`.
    pub object: String,
    pub amount: i64,
    #[serde(default)]
    pub amount_captured: i64,
    #[serde(default)]
    pub amount_refunded: i64,
    pub currency: String,
    #[serde(default)]
    pub paid: bool,
    /// True once fully refunded.
    #[serde(default)]
    pub refunded: bool,
    /// `succeeded`, `pending` or `failed`.
    pub status: String,
    #[serde(default, deserialize_with = "expandable_id")]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub failure_code: Option<String>,
    #[serde(default)]
    pub failure_message: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
    pub livemode: bool,
}

/// A Refund (`re_…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    /// Always `"refund"`.
    pub object: String,
    pub amount: i64,
    #[serde(default, deserialize_with = "expandable_id")]
    pub charge: Option<String>,
    pub currency: String,
    #[serde(default, deserialize_with = "expandable_id")]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
}

/// An Event (`evt_…`), as delivered by webhook and listed by `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    /// Always `"event"`.
    pub object: String,
    /// `payment_intent.succeeded`, `charge.refunded`, …
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub data: EventData,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub livemode: bool,
    #[serde(default)]
    pub pending_webhooks: i64,
    #[serde(default)]
    pub request: Option<EventRequest>,
}

/// The object an event is about, kept as JSON: its type depends on the event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_attributes: Option<serde_json::Value>,
}

/// The API request that caused an event, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRequest {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

impl Event {
    /// The `object` field of `data.object` (`payment_intent`, `charge`, `refund`, …).
    pub fn object_type(&self) -> Option<&str> {
        self.data.object.get("object").and_then(serde_json::Value::as_str)
    }

    /// `data.object` read as a PaymentIntent (for `payment_intent.*` events).
    pub fn payment_intent(&self) -> Result<PaymentIntent, EventObjectError> {
        self.typed_object("payment_intent")
    }

    /// `data.object` read as a Charge (for `charge.*` events, `charge.refunded` among them).
    pub fn charge(&self) -> Result<Charge, EventObjectError> {
        self.typed_object("charge")
    }

    /// `data.object` read as a Refund (for `refund.*` events).
    pub fn refund(&self) -> Result<Refund, EventObjectError> {
        self.typed_object("refund")
    }

    fn typed_object<T: serde::de::DeserializeOwned>(&self, expected: &'static str) -> Result<T, EventObjectError> {
        match self.object_type() {
            Some(found) if found == expected => {}
            found => {
                return Err(EventObjectError::WrongType {
                    expected,
                    found: found.unwrap_or("none").to_owned(),
                });
            }
        }
        T::deserialize(&self.data.object).map_err(EventObjectError::Invalid)
    }
}

/// Why `data.object` could not be read as the asked-for type.
#[derive(Debug, thiserror::Error)]
pub enum EventObjectError {
    #[error("event object is a {found}, not a {expected}")]
    WrongType { expected: &'static str, found: String },
    #[error("event object does not parse: {0}")]
    Invalid(#[source] serde_json::Error),
}

/// Stripe's error object: the `error` member of an error response, and a PaymentIntent's
/// `last_payment_error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorObject {
    /// `api_error`, `card_error`, `idempotency_error`, `invalid_request_error`, …
    #[serde(rename = "type")]
    pub error_type: String,
    #[serde(default)]
    pub code: Option<String>,
    /// For card errors: the issuer's reason (`generic_decline`, `insufficient_funds`, …).
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// The request parameter the error is about.
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub doc_url: Option<String>,
    #[serde(default, deserialize_with = "expandable_id")]
    pub charge: Option<String>,
    /// For errors on a PaymentIntent, its id (Stripe sends the whole object).
    #[serde(default, deserialize_with = "expandable_id", rename = "payment_intent")]
    pub payment_intent_id: Option<String>,
}

/// The body of every Stripe error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ApiErrorObject,
}

/// Reads an expandable field: `null`, an id string, or an expanded object with an `id`.
fn expandable_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Expandable {
        Id(String),
        Object { id: String },
    }
    Ok(Option::<Expandable>::deserialize(deserializer)?.map(|e| match e {
        Expandable::Id(id) | Expandable::Object { id } => id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expandable_fields_accept_ids_and_objects() {
        let json = serde_json::json!({
            "id": "re_1", "object": "refund", "amount": 100, "currency": "usd", "status": "succeeded",
            "created": 1, "charge": {"id": "ch_1", "object": "charge"}, "payment_intent": "pi_1"
        });
        let refund: Refund = serde_json::from_value(json).expect("parses");
        assert_eq!(refund.charge.as_deref(), Some("ch_1"));
        assert_eq!(refund.payment_intent.as_deref(), Some("pi_1"));
    }

    #[test]
    fn unknown_status_does_not_fail() {
        let status: PaymentIntentStatus = serde_json::from_str("\"requires_something_new\"").expect("parses");
        assert_eq!(status, PaymentIntentStatus::Unknown);
    }

    #[test]
    fn event_object_type_is_checked() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "id": "evt_1", "object": "event", "type": "refund.created", "created": 1,
            "data": {"object": {"id": "re_1", "object": "refund", "amount": 1, "currency": "usd",
                                "status": "succeeded", "created": 1}}
        }))
        .expect("parses");
        assert!(event.refund().is_ok());
        assert!(matches!(
            event.payment_intent(),
            Err(EventObjectError::WrongType { .. })
        ));
    }
}
