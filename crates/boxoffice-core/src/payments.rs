//! Orders and idempotent, crash-safe payment creation (SPEC §5).
//!
//! Creating a PaymentIntent is split into atomic phases separated by recovery points,
//! after Brandur Leach's "Implementing Stripe-like Idempotency Keys in Postgres":
//!
//! 1. `started`: the client's key is recorded and locked (one transaction). A second
//!    request with the key waits its turn (409), replays a finished answer, or is refused
//!    (422) when it is a different request.
//! 2. `order_created`: the order exists (one per reservation) and the hold got its payment
//!    grace (one transaction). From here the provider call is safe to repeat: its
//!    idempotency key is derived from the order, never from the client's key and never
//!    random, so every attempt — a retry, a second client key, the completer after a
//!    crash — lands on the same PaymentIntent.
//! 3. the provider call (no transaction open);
//! 4. `finished`: the PaymentIntent is recorded on the order and the answer is stored for
//!    replay (one transaction).
//!
//! Indeterminate provider failures store nothing: the lock is released and the caller
//! answers 502, so a retry resumes at `order_created`. A process that dies anywhere leaves a
//! record that the next request with the key, or the completer job, drives to the end.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::holds::HoldStatus;
use crate::ids::{HoldId, OrderId};
use crate::money::{Cents, Currency};

/// How long Stripe is sure to remember an idempotency key (it keeps them 24 hours). A
/// record older than this is never re-driven by calling the provider again; the
/// PaymentIntent is looked up by the order instead.
pub const PROVIDER_KEY_SAFE_AGE: Duration = Duration::from_secs(23 * 60 * 60);

/// The state of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Waiting for payment.
    Pending,
    /// Paid; tickets issued.
    Paid,
    /// The last payment attempt failed; the buyer may try again while the hold lasts.
    Failed,
    /// Paid and refunded.
    Refunded,
    /// Abandoned.
    Cancelled,
}

impl OrderStatus {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Failed => "failed",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(OrderStatus::Pending),
            "paid" => Some(OrderStatus::Paid),
            "failed" => Some(OrderStatus::Failed),
            "refunded" => Some(OrderStatus::Refunded),
            "cancelled" => Some(OrderStatus::Cancelled),
            _ => None,
        }
    }
}

/// An order: what a reservation costs, and the PaymentIntent that pays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its id; unguessable, like a hold's.
    pub id: OrderId,
    /// The reservation it pays for (one order per reservation).
    pub hold_id: HoldId,
    /// Its state.
    pub status: OrderStatus,
    /// The amount, computed from the ticket types when the hold was placed.
    pub amount: Cents,
    /// The currency.
    pub currency: Currency,
    /// The provider's PaymentIntent, once created.
    pub payment_intent_id: Option<String>,
    /// The PaymentIntent's client secret, for the buyer's browser.
    pub client_secret: Option<String>,
    /// Until when the checkout page may still be confirming its PaymentIntent at the
    /// provider (see [`Order::is_confirming`]); `None` when no confirmation is under way.
    pub confirming_until: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
}

impl Order {
    /// Whether a confirmation of its PaymentIntent may be under way at `now`: the buyer's
    /// leaving the page must not release its hold meanwhile, whichever instance hears it.
    pub fn is_confirming(&self, now: Timestamp) -> bool {
        self.confirming_until.is_some_and(|until| until > now)
    }

    /// The provider idempotency key of this order's PaymentIntent: derived from our own
    /// stored record, so every attempt for the order reaches the same PaymentIntent.
    pub fn provider_idempotency_key(&self) -> String {
        format!("boxoffice-{}-payment-intent", self.id)
    }

    /// The provider idempotency key of this order's automatic refund.
    pub fn refund_idempotency_key(order: &OrderId) -> String {
        format!("boxoffice-{order}-refund")
    }
}

/// Where an idempotent request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPoint {
    /// The key is recorded; nothing else happened.
    Started,
    /// The order exists; the provider call may or may not have happened.
    OrderCreated,
    /// The answer is stored.
    Finished,
}

impl RecoveryPoint {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryPoint::Started => "started",
            RecoveryPoint::OrderCreated => "order_created",
            RecoveryPoint::Finished => "finished",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "started" => Some(RecoveryPoint::Started),
            "order_created" => Some(RecoveryPoint::OrderCreated),
            "finished" => Some(RecoveryPoint::Finished),
            _ => None,
        }
    }
}

/// A stored answer, replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
}

/// An idempotency record, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Whose key: see [`crate::idempotency::scope_of`].
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// The reservation the request is about.
    pub hold_id: HoldId,
    /// A digest of the request (method, path, body): the same key with another request is refused.
    pub fingerprint: String,
    /// Where it stopped.
    pub recovery_point: RecoveryPoint,
    /// The order, from `order_created` on.
    pub order_id: Option<OrderId>,
    /// The answer, once finished.
    pub response: Option<StoredResponse>,
    /// When it was first seen.
    pub created_at: Timestamp,
}

/// What a store answers when a request with a key begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// This request now holds the key's lock and must drive the record on.
    Proceed(IdempotencyRecord),
    /// Finished earlier: replay this.
    Replay(StoredResponse),
    /// Another request with the key is in flight; its lock expires at this instant.
    InUse {
        /// When the other request's lock runs out.
        locked_until: Timestamp,
    },
    /// The key was used for a different request.
    Mismatch,
}

/// What happened when the order phase ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderPhase {
    /// The order exists (created now, or earlier by another key) and the record moved to
    /// `order_created`.
    Ready(Order),
    /// The hold is no longer active (expired, cancelled or completed): nothing was created.
    HoldNotActive(HoldStatus),
}

/// A PaymentIntent as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIntent {
    /// `pi_…`.
    pub id: String,
    /// For the buyer's browser.
    pub client_secret: String,
    /// The provider's status (`requires_payment_method`, `succeeded`, …).
    pub status: String,
    /// Amount in minor units.
    pub amount: i64,
    /// Lower-case currency, as Stripe reports it.
    pub currency: String,
}

/// What can go wrong at the payment provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered and refused; repeating the call changes nothing.
    #[error("the payment provider refused: {0}")]
    Refused(String),
    /// The outcome is unknown (timeout, cut connection, 5xx, 409, 429): the call may or may
    /// not have taken effect, and repeating it with the same key is safe.
    #[error("the payment provider did not answer definitively: {0}")]
    Indeterminate(String),
}

/// A PaymentIntent to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentRequest {
    /// Amount in minor units.
    pub amount: Cents,
    /// Currency.
    pub currency: Currency,
    /// Attached to the PaymentIntent, so it can be found from the order and vice versa.
    pub metadata: BTreeMap<String, String>,
}

/// The payment provider, as the use cases need it. Implemented over the Stripe HTTP client
/// (pointed at Stripe or at the built-in test double); there is no in-process fake.
#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Creates a PaymentIntent, idempotently under `idempotency_key`.
    async fn create_payment_intent(
        &self,
        request: &IntentRequest,
        idempotency_key: &str,
    ) -> Result<ProviderIntent, ProviderError>;

    /// Finds the PaymentIntent created for an order (by its metadata), for records too old
    /// to re-drive with the provider's idempotency key.
    async fn find_payment_intent_for_order(&self, order: &OrderId) -> Result<Option<ProviderIntent>, ProviderError>;

    /// Refunds a PaymentIntent in full, idempotently under `idempotency_key`.
    async fn refund(&self, payment_intent_id: &str, idempotency_key: &str) -> Result<(), ProviderError>;

    /// The provider's events created at or after `since` (Unix seconds), as raw JSON
    /// payloads, for reconciliation of webhooks that never arrived.
    async fn recent_events(&self, since_unix: i64) -> Result<Vec<String>, ProviderError>;
}

/// The answer to a successful payment-intent request (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PaymentIntentCreated {
    /// The order.
    pub order_id: String,
    /// The provider's PaymentIntent.
    pub payment_intent_id: String,
    /// For the buyer's browser (Stripe.js, or the test double's confirm).
    pub client_secret: String,
    /// From the ticket types, never from the client.
    pub amount_cents: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    /// The PaymentIntent's status when it was created.
    pub status: String,
}

impl fmt::Display for PaymentIntentCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for order {}", self.payment_intent_id, self.order_id)
    }
}

/// Phase 1's rule for a key that is recorded already (`existing`, whose lock runs until
/// `locked_until`), asked again for a request with `fingerprint` at `now`: a different
/// request is a mismatch, a finished one is replayed, one still locked by another request
/// is in use, and otherwise this request takes the lock over and drives the record on.
pub fn on_repeated_key(
    existing: IdempotencyRecord,
    locked_until: Option<Timestamp>,
    fingerprint: &str,
    now: Timestamp,
) -> Begun {
    if existing.fingerprint != fingerprint {
        return Begun::Mismatch;
    }
    if let Some(response) = existing.response {
        return Begun::Replay(response);
    }
    match locked_until {
        Some(locked_until) if locked_until > now => Begun::InUse { locked_until },
        _ => Begun::Proceed(existing),
    }
}

/// When a hold whose payment starts at `now` expires: at least `grace` from now, never
/// earlier than it would have (SPEC §5). Applied once per hold; the store guards the once.
pub fn expiry_with_payment_grace(hold_expires_at: Timestamp, now: Timestamp, grace: std::time::Duration) -> Timestamp {
    hold_expires_at.max(now.plus(grace))
}

#[cfg(test)]
mod phase_tests {
    use super::*;

    fn record(fingerprint: &str, response: Option<StoredResponse>) -> IdempotencyRecord {
        IdempotencyRecord {
            scope: "anonymous".into(),
            key: "k".into(),
            hold_id: HoldId::generate(),
            fingerprint: fingerprint.into(),
            recovery_point: RecoveryPoint::Started,
            order_id: None,
            response,
            created_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn a_repeated_key_is_replayed_refused_or_taken_over() {
        let now = Timestamp::from_millis(10_000);
        assert_eq!(on_repeated_key(record("a", None), None, "b", now), Begun::Mismatch);
        let answer = StoredResponse {
            status: 201,
            body: "{}".into(),
        };
        assert_eq!(
            on_repeated_key(record("a", Some(answer.clone())), None, "a", now),
            Begun::Replay(answer)
        );
        let later = Timestamp::from_millis(20_000);
        assert_eq!(
            on_repeated_key(record("a", None), Some(later), "a", now),
            Begun::InUse { locked_until: later }
        );
        let free = record("a", None);
        assert_eq!(
            on_repeated_key(free.clone(), Some(now), "a", now),
            Begun::Proceed(free.clone())
        );
        assert_eq!(on_repeated_key(free.clone(), None, "a", now), Begun::Proceed(free));
    }

    #[test]
    fn the_payment_grace_only_ever_extends_a_hold() {
        let now = Timestamp::from_millis(0);
        let grace = std::time::Duration::from_secs(300);
        assert_eq!(
            expiry_with_payment_grace(Timestamp::from_millis(60_000), now, grace),
            Timestamp::from_millis(300_000)
        );
        assert_eq!(
            expiry_with_payment_grace(Timestamp::from_millis(900_000), now, grace),
            Timestamp::from_millis(900_000)
        );
    }
}
