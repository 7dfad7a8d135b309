//! Provider webhooks applied exactly once (SPEC §6).
//!
//! An event is stored before it is acknowledged. Applying it and recording that it was
//! applied commit in one transaction, so a crash or an error while applying loses nothing:
//! the event stays `pending` (or `failed`, with the error) and is applied on redelivery or
//! by the webhook worker. Effects are guarded by the state of the order, so redeliveries,
//! reordering and two distinct events for one change take effect once.

use crate::clock::Timestamp;
use crate::ids::OrderId;

/// Event ids are kept at least this long, so a redelivery (Stripe resends for three days;
/// an operator may resend up to 30 days later) is recognised.
pub const EVENT_RETENTION: std::time::Duration = std::time::Duration::from_secs(45 * 24 * 60 * 60);

/// What an event asks boxoffice to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `payment_intent.succeeded`: the order is paid, tickets are issued.
    PaymentSucceeded,
    /// `payment_intent.payment_failed`: the order failed; the hold stays for a retry.
    PaymentFailed,
    /// `charge.refunded`: the order is refunded, its tickets void, its capacity released.
    Refunded,
    /// Any other type: stored and acknowledged, nothing to do.
    Nothing,
}

/// A provider event, as much of it as boxoffice needs, parsed from the signed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    /// `evt_…`, unique per event.
    pub id: String,
    /// `payment_intent.succeeded`, …
    pub event_type: String,
    /// What it asks for.
    pub effect: Effect,
    /// The PaymentIntent concerned (for a charge, the charge's `payment_intent`).
    pub payment_intent_id: Option<String>,
    /// The order named in the PaymentIntent's metadata, if any.
    pub order_hint: Option<OrderId>,
    /// The raw payload, kept as received.
    pub payload: String,
}

/// The payload is not a provider event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Stripe event: {0}")]
pub struct InvalidEvent(pub String);

impl StripeEvent {
    /// Parses a Stripe event payload.
    pub fn parse(payload: &[u8]) -> Result<Self, InvalidEvent> {
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|err| InvalidEvent(format!("malformed JSON: {err}")))?;
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let id = text(&value["id"])
            .filter(|id| !id.is_empty() && id.len() <= 255)
            .ok_or_else(|| InvalidEvent("no event id".into()))?;
        let event_type = text(&value["type"]).ok_or_else(|| InvalidEvent("no event type".into()))?;
        let object = &value["data"]["object"];
        let effect = match event_type.as_str() {
            "payment_intent.succeeded" => Effect::PaymentSucceeded,
            "payment_intent.payment_failed" => Effect::PaymentFailed,
            "charge.refunded" => Effect::Refunded,
            _ => Effect::Nothing,
        };
        let payment_intent_id = match effect {
            Effect::PaymentSucceeded | Effect::PaymentFailed => text(&object["id"]),
            // A charge names its PaymentIntent as an id or, expanded, as an object.
            Effect::Refunded => text(&object["payment_intent"]).or_else(|| text(&object["payment_intent"]["id"])),
            Effect::Nothing => None,
        };
        if effect != Effect::Nothing && payment_intent_id.is_none() {
            return Err(InvalidEvent(format!("{event_type} without a PaymentIntent")));
        }
        let order_hint = text(&object["metadata"]["order_id"]).and_then(|raw| OrderId::parse(&raw).ok());
        Ok(Self {
            id,
            event_type,
            effect,
            payment_intent_id,
            order_hint,
            payload: String::from_utf8_lossy(payload).into_owned(),
        })
    }
}

/// Where a stored event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Stored, not applied yet.
    Pending,
    /// Its effect took place (or the state said it already had).
    Applied,
    /// Nothing to do: an unknown type, or a PaymentIntent that is not ours.
    Ignored,
    /// Applying failed; the worker retries.
    Failed,
}

impl EventStatus {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Applied => "applied",
            EventStatus::Ignored => "ignored",
            EventStatus::Failed => "failed",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(EventStatus::Pending),
            "applied" => Some(EventStatus::Applied),
            "ignored" => Some(EventStatus::Ignored),
            "failed" => Some(EventStatus::Failed),
            _ => None,
        }
    }

    /// Whether nothing more will happen to the event.
    pub fn is_final(self) -> bool {
        matches!(self, EventStatus::Applied | EventStatus::Ignored)
    }
}

/// A stored event, for the admin listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStripeEvent {
    /// `evt_…`.
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// Where it is.
    pub status: EventStatus,
    /// What applying it did (or why it was ignored).
    pub outcome: Option<String>,
    /// The last error while applying.
    pub last_error: Option<String>,
    /// Deliveries received (0 when only the reconciliation job found it).
    pub delivery_count: i64,
    /// Apply attempts.
    pub attempts: i64,
    /// First received.
    pub received_at: Timestamp,
    /// Applied.
    pub applied_at: Option<Timestamp>,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Done now or earlier; the text says what happened.
    Applied(String),
    /// Nothing to do; the text says why.
    Ignored(String),
    /// Paid after the hold ran out and the tickets are gone: the payment must be refunded
    /// (the decision is stored on the order, so it is never reversed). The event stays
    /// pending until the refund is recorded.
    RefundNeeded {
        /// The order to refund.
        order_id: OrderId,
        /// Its PaymentIntent.
        payment_intent_id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_and_charge_events_name_their_payment_intent() {
        let succeeded = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","metadata":{"order_id":"ord_0123456789abcdef0123456789abcdef"}}}}"#;
        let event = StripeEvent::parse(succeeded).expect("valid");
        assert_eq!(
            (event.effect, event.payment_intent_id.as_deref()),
            (Effect::PaymentSucceeded, Some("pi_1"))
        );
        assert!(event.order_hint.is_some());
        let refunded =
            br#"{"id":"evt_2","type":"charge.refunded","data":{"object":{"id":"ch_1","payment_intent":"pi_1"}}}"#;
        assert_eq!(
            StripeEvent::parse(refunded)
                .expect("valid")
                .payment_intent_id
                .as_deref(),
            Some("pi_1")
        );
        let other = br#"{"id":"evt_3","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
        assert_eq!(StripeEvent::parse(other).expect("valid").effect, Effect::Nothing);
    }

    #[test]
    fn malformed_events_are_refused() {
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"id":"evt_1"}"#,
            br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{}}"#,
        ] {
            assert!(StripeEvent::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
