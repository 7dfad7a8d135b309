//! The checkout pages' use cases (SPEC §8): paying for a hold from boxoffice's own pages,
//! and releasing the hold when the buyer leaves the page — never while a payment is under
//! way.
//!
//! The pages pay through the same idempotent use case as the JSON API
//! ([`BoxOffice::create_payment_intent`]), under a key of their own derived from the hold
//! (`checkout-<hold id>`, in a scope no API caller shares). Every attempt for a hold —
//! the first, a retry after a declined card, a double submit — therefore lands on the
//! same order and the same PaymentIntent, and a PaymentIntent succeeds at most once: the
//! order is paid exactly once however often the buyer presses "Pay".

use sha2::{Digest, Sha256};

use super::{BoxOffice, Error, PaymentAnswer, PaymentRequest};
use crate::holds::Hold;
use crate::idempotency::IdempotencyKey;
use crate::ids::{HoldId, OrderId};
use crate::payments::{Order, OrderStatus, RecoveryPoint, StoredResponse};

/// The longest a confirmation at the provider is taken to run: the Stripe client's own
/// timeout (30 s) with room to spare. A mark older than this belongs to a confirmation
/// whose process died; it no longer keeps the hold.
pub const CONFIRMING_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

/// The idempotency scope of the checkout pages' payment requests: apart from every API
/// caller's keys, so no API client can occupy or replay a page's key.
pub const CHECKOUT_SCOPE: &str = "pages:checkout";

/// The idempotency key of the checkout page's payment request for a hold.
fn checkout_key(hold: &HoldId) -> Result<IdempotencyKey, Error> {
    IdempotencyKey::parse(format!("checkout-{hold}").as_bytes())
        .map_err(|err| Error::Invalid(format!("checkout idempotency key: {err}")))
}

/// The request digest the checkout key is bound to (one request shape per hold).
fn checkout_fingerprint(hold: &HoldId) -> String {
    hex::encode(Sha256::digest(format!("checkout page payment\n{hold}").as_bytes()))
}

/// What became of the checkout page's request to start paying for a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutStart {
    /// The order and its PaymentIntent exist (now, or from an earlier attempt): confirm it.
    Ready {
        /// The order.
        order_id: OrderId,
        /// Its PaymentIntent.
        payment_intent_id: String,
    },
    /// Refused for good (the hold expired, was cancelled or is paid; the provider refused).
    Refused {
        /// The stable error code (`hold_expired`, `hold_completed`, `invalid_request`).
        code: String,
        /// A human-readable explanation.
        message: String,
    },
}

/// How far the checkout page got in paying for a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutPayment {
    /// The buyer never pressed "Pay" for this hold (on the checkout page).
    NotStarted,
    /// A payment request is being processed, or stopped before its PaymentIntent was
    /// recorded (the completer or the next attempt finishes it): a payment may be under way.
    Starting,
    /// The order and its PaymentIntent exist; the order's status says how it went so far.
    Created(Order),
    /// The request was refused for good (see [`CheckoutStart::Refused`]); nothing was created.
    Refused {
        /// The stable error code.
        code: String,
    },
}

/// What leaving the checkout page did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveCheckout {
    /// No payment was ever started: the hold is released (or had already ended).
    Cancelled(Hold),
    /// A payment is under way, succeeded, or may have: the hold is kept (it still expires
    /// on its own).
    Kept,
    /// The order exists and is not paid: the hold may be released only if its
    /// PaymentIntent still awaits a payment method (no attempt under way or succeeded).
    /// The caller asks the provider, then calls [`BoxOffice::release_after_failed_payment`].
    AskProvider {
        /// The PaymentIntent to look at.
        payment_intent_id: String,
    },
}

/// The parts of a stored 201 answer the pages need.
#[derive(serde::Deserialize)]
struct Created {
    order_id: String,
    payment_intent_id: String,
}

fn refusal(response: &StoredResponse) -> (String, String) {
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap_or_default();
    let text = |field: &str| body["error"][field].as_str().unwrap_or_default().to_owned();
    (text("code"), text("message"))
}

impl BoxOffice {
    /// Starts (or resumes) paying for a hold from the checkout page: the order and its
    /// PaymentIntent, created once per hold under the page's own idempotency key; every
    /// later attempt gets the same ones back.
    #[tracing::instrument(level = "debug", skip_all, fields(hold_id = %hold))]
    pub async fn start_checkout_payment(&self, hold: &HoldId) -> Result<CheckoutStart, Error> {
        let request = PaymentRequest {
            scope: CHECKOUT_SCOPE.to_owned(),
            key: checkout_key(hold)?,
            hold_id: hold.clone(),
            fingerprint: checkout_fingerprint(hold),
        };
        let (PaymentAnswer::Fresh(response) | PaymentAnswer::Replayed(response)) =
            self.create_payment_intent(request).await?;
        if response.status == 201 {
            let created: Created = serde_json::from_str(&response.body)
                .map_err(|err| Error::Invalid(format!("a stored payment answer is unreadable: {err}")))?;
            let order_id = OrderId::parse(&created.order_id)
                .map_err(|_| Error::Invalid("a stored payment answer names no valid order".into()))?;
            return Ok(CheckoutStart::Ready {
                order_id,
                payment_intent_id: created.payment_intent_id,
            });
        }
        let (code, message) = refusal(&response);
        Ok(CheckoutStart::Refused { code, message })
    }

    /// How far the checkout page got in paying for a hold.
    #[tracing::instrument(level = "debug", skip_all, fields(hold_id = %hold))]
    pub async fn checkout_payment(&self, hold: &HoldId) -> Result<CheckoutPayment, Error> {
        let key = checkout_key(hold)?;
        let Some(record) = self
            .payment_store()
            .find_idempotent_request(CHECKOUT_SCOPE, key.as_str())
            .await?
        else {
            return Ok(CheckoutPayment::NotStarted);
        };
        let Some(order_id) = record.order_id else {
            return Ok(match (record.recovery_point, &record.response) {
                (RecoveryPoint::Finished, Some(response)) => CheckoutPayment::Refused {
                    code: refusal(response).0,
                },
                _ => CheckoutPayment::Starting,
            });
        };
        let order = self.payment_store().get_order(&order_id).await?;
        if order.payment_intent_id.is_none() {
            // The provider call is under way, or its outcome is not recorded yet.
            return Ok(CheckoutPayment::Starting);
        }
        Ok(CheckoutPayment::Created(order))
    }

    /// The buyer left the checkout page: releases the hold, unless a payment is under way
    /// or may have succeeded (see [`LeaveCheckout`]). A paid hold is never touched.
    #[tracing::instrument(level = "debug", skip_all, fields(hold_id = %hold))]
    pub async fn leave_checkout(&self, hold: &HoldId) -> Result<LeaveCheckout, Error> {
        match self.checkout_payment(hold).await? {
            // Nothing was created (never started, or refused because the hold had ended).
            CheckoutPayment::NotStarted | CheckoutPayment::Refused { .. } => self.release(hold).await,
            CheckoutPayment::Starting => Ok(LeaveCheckout::Kept),
            CheckoutPayment::Created(order) if order.is_confirming(self.now()) => Ok(LeaveCheckout::Kept),
            CheckoutPayment::Created(order) => match (order.status, order.payment_intent_id) {
                (OrderStatus::Pending | OrderStatus::Failed, Some(payment_intent_id)) => {
                    Ok(LeaveCheckout::AskProvider { payment_intent_id })
                }
                _ => Ok(LeaveCheckout::Kept),
            },
        }
    }

    /// Releases a hold whose payment failed, once the caller made sure at the provider
    /// that its PaymentIntent awaits a payment method (no attempt under way or succeeded).
    /// The order is read again first: a payment that succeeded meanwhile keeps the hold.
    #[tracing::instrument(level = "debug", skip_all, fields(hold_id = %hold))]
    pub async fn release_after_failed_payment(&self, hold: &HoldId) -> Result<LeaveCheckout, Error> {
        match self.checkout_payment(hold).await? {
            CheckoutPayment::Created(order) if matches!(order.status, OrderStatus::Pending | OrderStatus::Failed) => {
                self.release(hold).await
            }
            _ => Ok(LeaveCheckout::Kept),
        }
    }

    /// Marks the order's PaymentIntent as being confirmed at the provider by the checkout
    /// page, for at most [`CONFIRMING_WINDOW`]: meanwhile no leave beacon, on any instance,
    /// releases its hold. [`BoxOffice::end_confirming`] clears the mark; if the process dies
    /// first, the mark runs out by itself.
    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %order))]
    pub async fn begin_confirming(&self, order: &OrderId) -> Result<(), Error> {
        let until = self.now().plus(CONFIRMING_WINDOW);
        Ok(self.payment_store().mark_confirming(order, Some(until)).await?)
    }

    /// The checkout page's confirmation ended (with any outcome): see
    /// [`BoxOffice::begin_confirming`].
    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %order))]
    pub async fn end_confirming(&self, order: &OrderId) -> Result<(), Error> {
        Ok(self.payment_store().mark_confirming(order, None).await?)
    }

    /// Cancels the hold unless a confirmation started meanwhile (decided in the store under
    /// the hold's lock, so a confirmation that another instance begins at this very moment
    /// either sees the hold released or keeps it).
    async fn release(&self, hold: &HoldId) -> Result<LeaveCheckout, Error> {
        match self
            .payment_store()
            .release_left_checkout(hold, self.now())
            .await
            .map_err(Error::from)
        {
            Ok(Some(hold)) => Ok(LeaveCheckout::Cancelled(hold)),
            Ok(None) => Ok(LeaveCheckout::Kept),
            // Paid (through the API, or a moment ago): nothing to release.
            Err(Error::HoldCompleted) => Ok(LeaveCheckout::Kept),
            Err(err) => Err(err),
        }
    }
}
