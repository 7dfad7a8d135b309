//! Provider webhooks' use cases (SPEC §6): receiving an event (stored before it is
//! acknowledged, then applied), the worker that applies what is still pending, the
//! reconciler that fetches events that never arrived, and the automatic refund of a
//! payment that came after its tickets were gone.

use std::time::Duration;

use super::{BoxOffice, Error, error_chain, minus, require_operator};
use crate::auth::Caller;
use crate::failures::{Failure, Severity};
use crate::ids::OrderId;
use crate::jobs::{self, JobRun};
use crate::payments::Order;
use crate::webhooks::{ApplyOutcome, StoredStripeEvent, StripeEvent};

/// How long a failed webhook waits before the worker tries it again.
const WEBHOOK_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Reconciliation looks this far back (Stripe resends for three days).
const RECONCILE_WINDOW: Duration = Duration::from_secs(3 * 24 * 60 * 60);

/// What handling a webhook event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookResult {
    /// Already applied or ignored earlier: nothing changed.
    Duplicate,
    /// The effect took place (or the order's state said it already had).
    Applied(String),
    /// Nothing to do.
    Ignored(String),
    /// Paid after the hold ran out with the tickets gone: refunded automatically.
    LateRefund {
        /// The refunded order.
        order_id: OrderId,
    },
    /// Stored, but applying failed; the webhook worker tries again.
    Failed(String),
}

impl BoxOffice {
    /// Handles a delivered event: stores it durably (the caller acknowledges only after
    /// this returns `Ok`), then applies it. A failure to apply is recorded and retried by
    /// the worker; it does not fail the delivery, since the event is safely stored.
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = %event.id, event_type = %event.event_type))]
    pub async fn receive_webhook(&self, event: StripeEvent) -> Result<WebhookResult, Error> {
        let now = self.now();
        let (status, _) = self
            .store
            .record_webhook_event(&event, true, now.plus(WEBHOOK_RETRY_DELAY), now)
            .await?;
        if status.is_final() {
            return Ok(WebhookResult::Duplicate);
        }
        Ok(self.apply_stored_event(&event.id).await)
    }

    /// Applies one stored event; see [`WebhookResult`].
    #[tracing::instrument(level = "debug", skip_all, fields(event_id))]
    pub async fn apply_stored_event(&self, event_id: &str) -> WebhookResult {
        let result = match self.webhook_store().apply_webhook_event(event_id, self.now()).await {
            Ok(ApplyOutcome::Applied(what)) => return WebhookResult::Applied(what),
            Ok(ApplyOutcome::Ignored(why)) => return WebhookResult::Ignored(why),
            Ok(ApplyOutcome::RefundNeeded {
                order_id,
                payment_intent_id,
            }) => self
                .refund_late_payment(event_id, &order_id, &payment_intent_id)
                .await
                .map(|()| order_id),
            Err(err) => Err(error_chain(&err)),
        };
        match result {
            Ok(order_id) => {
                self.failures.report(Failure::new(
                    Severity::Error,
                    "webhooks",
                    format!(
                        "order {order_id} was paid after its reservation ran out and its tickets were sold \
                         meanwhile; the payment was refunded automatically (event {event_id})"
                    ),
                ));
                WebhookResult::LateRefund { order_id }
            }
            Err(message) => {
                let retry_at = self.now().plus(WEBHOOK_RETRY_DELAY);
                if let Err(err) = self
                    .webhook_store()
                    .record_webhook_failure(event_id, &message, retry_at)
                    .await
                {
                    // The event stays pending either way; the worker will find it.
                    tracing::warn!(event_id, error = %error_chain(&err), "could not record a webhook failure");
                }
                self.failures.report(Failure::new(
                    Severity::Error,
                    "webhooks",
                    format!("applying webhook event {event_id} failed (will retry): {message}"),
                ));
                WebhookResult::Failed(message)
            }
        }
    }

    async fn refund_late_payment(
        &self,
        event_id: &str,
        order_id: &OrderId,
        payment_intent_id: &str,
    ) -> Result<(), String> {
        let provider = self.provider().map_err(|err| err.to_string())?;
        provider
            .refund(payment_intent_id, &Order::refund_idempotency_key(order_id))
            .await
            .map_err(|err| err.to_string())?;
        self.webhook_store()
            .complete_late_refund(event_id, order_id, self.now())
            .await
            .map_err(|err| error_chain(&err))
    }

    /// The webhook worker: applies stored events that are not applied yet (a failure
    /// earlier, or a crash between storing and applying), and records the run.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn apply_due_webhooks(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let mut affected = 0;
        let mut errors = Vec::new();
        for id in self.webhook_store().due_webhook_events(started_at, 100).await? {
            match self.apply_stored_event(&id).await {
                WebhookResult::Failed(message) => errors.push(format!("{id}: {message}")),
                _ => affected += 1,
            }
        }
        self.record_run(jobs::WEBHOOK_WORKER, started_at, affected, errors)
            .await
    }

    /// The reconciler: lists the provider's recent events and stores and applies any that
    /// never arrived as a webhook, so a delivery outage heals by itself. `affected` counts
    /// the events it found missing.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn reconcile_webhooks(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let since = minus(started_at, RECONCILE_WINDOW).as_millis() / 1000;
        let payloads = self
            .provider()?
            .recent_events(since)
            .await
            .map_err(|err| Error::ProviderUnavailable(err.to_string()))?;
        let mut affected = 0;
        let mut errors = Vec::new();
        for payload in payloads {
            let event = match StripeEvent::parse(payload.as_bytes()) {
                Ok(event) => event,
                Err(err) => {
                    errors.push(err.to_string());
                    continue;
                }
            };
            let (status, new) = self
                .store
                .record_webhook_event(&event, false, self.now(), self.now())
                .await?;
            if new {
                affected += 1;
            }
            if !status.is_final()
                && let WebhookResult::Failed(message) = self.apply_stored_event(&event.id).await
            {
                errors.push(format!("{}: {message}", event.id));
            }
        }
        self.record_run(jobs::WEBHOOK_RECONCILER, started_at, affected, errors)
            .await
    }

    /// Stored webhook events, newest first.
    #[tracing::instrument(level = "debug", skip_all, fields(limit))]
    pub async fn list_webhook_events(&self, caller: &Caller, limit: u32) -> Result<Vec<StoredStripeEvent>, Error> {
        require_operator(caller)?;
        Ok(self.webhook_store().list_webhook_events(limit).await?)
    }
}
