//! Payments (SPEC §5): creating a reservation's PaymentIntent idempotently under the
//! client's key, driving a request from its recovery point after a crash (the completer),
//! reaping old idempotency records, and reading orders and their tickets.

use std::sync::Arc;
use std::time::Duration;

use super::{BoxOffice, Error, error_chain, minus};
use crate::holds::HoldStatus;
use crate::idempotency::IdempotencyKey;
use crate::ids::{HoldId, OrderId};
use crate::jobs::{self, JobRun};
use crate::payments::{
    Begun, IdempotencyRecord, IntentRequest, Order, OrderPhase, PROVIDER_KEY_SAFE_AGE, PaymentIntentCreated,
    PaymentProvider, ProviderError, ProviderIntent, RecoveryPoint, StoredResponse,
};
use crate::tickets::Ticket;

/// Unfinished idempotency records older than this are abandoned and removed by the reaper;
/// by then the completer has finished every one it could.
const ABANDONED_RECORD_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Records the completer claims per run.
const COMPLETER_BATCH: u32 = 100;

/// Records the reaper deletes per transaction.
const REAPER_BATCH: u32 = 1_000;

/// A payment-intent request, parsed.
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    /// Whose key (see `idempotency::scope_of`).
    pub scope: String,
    /// The client's key.
    pub key: IdempotencyKey,
    /// The reservation to pay for.
    pub hold_id: HoldId,
    /// A digest of method, path and body.
    pub fingerprint: String,
}

/// The answer to a payment-intent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentAnswer {
    /// Produced by this request.
    Fresh(StoredResponse),
    /// Stored by an earlier request with the same key, replayed.
    Replayed(StoredResponse),
}

impl BoxOffice {
    /// The payment provider, or why there is none to pay through.
    pub(super) fn provider(&self) -> Result<&Arc<dyn PaymentProvider>, Error> {
        self.provider
            .as_ref()
            .ok_or_else(|| Error::ProviderUnavailable("no payment provider is configured".into()))
    }

    /// Creates (or replays) the PaymentIntent of a reservation, idempotently under the
    /// client's key; see `crate::payments` for the phases.
    #[tracing::instrument(level = "debug", skip_all, fields(hold_id = %request.hold_id))]
    pub async fn create_payment_intent(&self, request: PaymentRequest) -> Result<PaymentAnswer, Error> {
        self.provider()?;
        // Fast path, one read: a finished record never changes, so replays and mismatches
        // need no lock and no write (which would cost a durable commit each).
        if let Some(existing) = self
            .store
            .find_idempotent_request(&request.scope, request.key.as_str())
            .await?
        {
            if existing.fingerprint != request.fingerprint {
                return Err(Error::KeyReused);
            }
            if let Some(response) = existing.response {
                return Ok(PaymentAnswer::Replayed(response));
            }
        }
        // An unknown reservation is a plain 404, not a key spent on nothing.
        self.hold_store().get_hold(&request.hold_id).await?;
        let now = self.now();
        let record = IdempotencyRecord {
            scope: request.scope,
            key: request.key.as_str().to_owned(),
            hold_id: request.hold_id,
            fingerprint: request.fingerprint,
            recovery_point: RecoveryPoint::Started,
            order_id: None,
            response: None,
            created_at: now,
        };
        match self
            .store
            .begin_idempotent_request(&record, now.plus(self.settings.idempotency_lock), now)
            .await?
        {
            Begun::Replay(response) => Ok(PaymentAnswer::Replayed(response)),
            Begun::Mismatch => Err(Error::KeyReused),
            Begun::InUse { locked_until } => {
                let retry_after_seconds = u64::try_from(now.seconds_until(locked_until)).unwrap_or(0).max(1);
                Err(Error::KeyInUse { retry_after_seconds })
            }
            Begun::Proceed(record) => self.drive_payment(record).await.map(PaymentAnswer::Fresh),
        }
    }

    /// Drives a record whose lock this caller holds from its recovery point to the end.
    /// Requests and the completer share it, so a crash anywhere is finished the same way.
    async fn drive_payment(&self, record: IdempotencyRecord) -> Result<StoredResponse, Error> {
        let provider = self.provider()?.clone();
        let (scope, key) = (record.scope.as_str(), record.key.as_str());
        let order = match (record.recovery_point, &record.order_id) {
            (RecoveryPoint::Finished, _) => {
                return record
                    .response
                    .ok_or_else(|| Error::Invalid("a finished record without an answer".into()));
            }
            (RecoveryPoint::OrderCreated, Some(order_id)) => self.payment_store().get_order(order_id).await?,
            _ => {
                let phase = self
                    .store
                    .create_order_for_request(
                        scope,
                        key,
                        &OrderId::generate(),
                        self.settings.payment_grace,
                        self.now(),
                    )
                    .await?;
                match phase {
                    OrderPhase::Ready(order) => order,
                    OrderPhase::HoldNotActive(status) => {
                        let response = hold_not_active(status);
                        self.payment_store()
                            .finish_idempotent_request(scope, key, &response, None, self.now())
                            .await?;
                        return Ok(response);
                    }
                }
            }
        };

        // A record older than the provider's memory of keys is never re-driven with the
        // key: the PaymentIntent, if any, is looked up by the order instead.
        let too_old_to_redrive = self.now() >= record.created_at.plus(PROVIDER_KEY_SAFE_AGE);
        let outcome = if too_old_to_redrive {
            provider.find_payment_intent_for_order(&order.id).await
        } else {
            let request = IntentRequest {
                amount: order.amount,
                currency: order.currency,
                metadata: [
                    ("order_id".to_owned(), order.id.to_string()),
                    ("reservation_id".to_owned(), order.hold_id.to_string()),
                ]
                .into(),
            };
            provider
                .create_payment_intent(&request, &order.provider_idempotency_key())
                .await
                .map(Some)
        };
        let response = match outcome {
            Ok(Some(intent)) => {
                let response = intent_created(&order, &intent);
                self.payment_store()
                    .finish_idempotent_request(scope, key, &response, Some((&order.id, &intent)), self.now())
                    .await?;
                return Ok(response);
            }
            // Looked up and absent: the create call never reached the provider, and the
            // hold ran out long ago.
            Ok(None) => error_response(
                409,
                "hold_expired",
                "the reservation expired before its payment was created",
            ),
            Err(ProviderError::Refused(message)) => error_response(
                422,
                "invalid_request",
                &format!("the payment provider refused: {message}"),
            ),
            Err(ProviderError::Indeterminate(message)) => {
                // Nothing is stored: the next request with this key resumes right here.
                self.payment_store().release_idempotency_lock(scope, key).await?;
                return Err(Error::ProviderUnavailable(message));
            }
        };
        self.payment_store()
            .finish_idempotent_request(scope, key, &response, None, self.now())
            .await?;
        Ok(response)
    }

    /// The completer: finishes payment requests that stopped after their order was
    /// created (a crash, or an indeterminate provider answer whose client never retried),
    /// and records the run. Indeterminate failures leave a record for the next run.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn complete_stalled_payments(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let claimed = self
            .store
            .claim_stalled_requests(
                started_at,
                started_at.plus(self.settings.idempotency_lock),
                COMPLETER_BATCH,
            )
            .await?;
        let mut affected = 0;
        let mut errors = Vec::new();
        for record in claimed {
            match self.drive_payment(record).await {
                Ok(_) => affected += 1,
                Err(err) => errors.push(error_chain(&err)),
            }
        }
        self.record_run(jobs::PAYMENT_COMPLETER, started_at, affected, errors)
            .await
    }

    /// The reaper: removes idempotency records past their retention, and records the run.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn reap_idempotency_records(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let finished_before = minus(started_at, self.settings.idempotency_retention);
        let abandoned_before = minus(started_at, ABANDONED_RECORD_AGE);
        let mut affected = 0;
        loop {
            let deleted = self
                .store
                .delete_idempotency_records(finished_before, abandoned_before, REAPER_BATCH)
                .await?;
            affected += deleted;
            if deleted < u64::from(REAPER_BATCH) {
                break;
            }
        }
        self.record_run(jobs::IDEMPOTENCY_REAPER, started_at, affected, Vec::new())
            .await
    }

    /// Reads an order (public: knowing its id is the credential).
    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %id))]
    pub async fn get_order(&self, id: &OrderId) -> Result<Order, Error> {
        Ok(self.payment_store().get_order(id).await?)
    }

    /// The tickets of an order.
    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %order_id))]
    pub async fn order_tickets(&self, order_id: &OrderId) -> Result<Vec<Ticket>, Error> {
        Ok(self.payment_store().order_tickets(order_id).await?)
    }
}

/// The stored answer for a hold that cannot be paid any more.
fn hold_not_active(status: HoldStatus) -> StoredResponse {
    match status {
        HoldStatus::Completed => error_response(409, "hold_completed", "the reservation is already paid"),
        HoldStatus::Cancelled => error_response(409, "hold_expired", "the reservation was cancelled"),
        _ => error_response(409, "hold_expired", "the reservation has expired"),
    }
}

fn intent_created(order: &Order, intent: &ProviderIntent) -> StoredResponse {
    let body = PaymentIntentCreated {
        order_id: order.id.to_string(),
        payment_intent_id: intent.id.clone(),
        client_secret: intent.client_secret.clone(),
        amount_cents: order.amount.get(),
        currency: order.currency.to_string(),
        status: intent.status.clone(),
    };
    StoredResponse {
        status: 201,
        body: serde_json::to_string(&body).unwrap_or_default(),
    }
}

/// An error answer in the API's error shape, for storing and replaying.
fn error_response(status: u16, code: &str, message: &str) -> StoredResponse {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    StoredResponse {
        status,
        body: body.to_string(),
    }
}
