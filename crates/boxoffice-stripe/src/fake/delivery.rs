//! Webhook delivery, as Stripe does it: the events of a request are handed over once the
//! request commits, and one worker POSTs them to the configured URL one at a time, in
//! order, each signed anew (`Stripe-Signature`) and retried with backoff until the
//! receiver answers 2xx or the attempts run out. The webhook faults (drop, reorder,
//! duplicate) are applied at the hand-over. Every attempt is logged for
//! `GET /_control/webhooks` and [`FakeStripe::delivery_attempts`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::faults::WebhookFault;
use super::state::FakeState;
use super::{FakeStripe, lock};
use crate::{unix_now, webhook};

/// How failed webhook deliveries are retried. Stripe retries for three days; the double
/// compresses that into seconds so tests can watch recovery happen.
#[derive(Debug, Clone)]
pub struct WebhookRetry {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// For one attempt.
    pub timeout: Duration,
}

impl Default for WebhookRetry {
    /// 100 ms doubling to 2 s, 10 attempts: about 11 s before a delivery is given up.
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_attempts: 10,
            timeout: Duration::from_secs(5),
        }
    }
}

/// One event on its way to the receiver.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    pub(super) event_id: String,
    pub(super) event_type: String,
    pub(super) payload: Bytes,
}

/// One webhook delivery attempt, as listed by `GET /_control/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first try of a delivery; 0 for a delivery dropped by a fault.
    pub attempt: u32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// True when the receiver answered 2xx.
    pub delivered: bool,
    /// True when the `drop_webhooks` fault swallowed it.
    pub dropped: bool,
}

impl FakeStripe {
    /// Hands the events of a committed request to the delivery worker, applying the
    /// webhook faults.
    pub(super) fn flush_outbox(&self, state: &mut FakeState) {
        let outbox = std::mem::take(&mut state.outbox);
        for delivery in outbox {
            match state.faults.take_for_delivery() {
                Some(WebhookFault::Drop) => {
                    lock(&self.inner.deliveries).push(DeliveryAttempt {
                        event_id: delivery.event_id,
                        event_type: delivery.event_type,
                        attempt: 0,
                        status: None,
                        error: Some("dropped by the drop_webhooks fault".into()),
                        delivered: false,
                        dropped: true,
                    });
                }
                Some(WebhookFault::Reorder) => {
                    state.held.push(delivery);
                    if !state.faults.reordering() {
                        self.release_held(state);
                    }
                }
                Some(WebhookFault::Duplicate) => {
                    self.enqueue(state, delivery.clone());
                    self.enqueue(state, delivery);
                }
                None => self.enqueue(state, delivery),
            }
        }
    }

    /// Sends the deliveries held back by `reorder_webhooks`, newest first.
    pub(super) fn release_held(&self, state: &mut FakeState) {
        let held = std::mem::take(&mut state.held);
        for delivery in held.into_iter().rev() {
            self.enqueue(state, delivery);
        }
    }

    /// Queues a delivery, starting the worker on first use (inside the runtime that serves
    /// the request, so `new` needs none).
    fn enqueue(&self, state: &mut FakeState, delivery: Delivery) {
        let Some(url) = &self.inner.config.webhook_url else {
            return;
        };
        if state.worker.as_ref().is_none_or(|tx| tx.is_closed()) {
            let (tx, rx) = mpsc::unbounded_channel();
            // The worker outlives the request that starts it and delivers for every later
            // one, so it gets a span of its own rather than carrying that request's.
            let span = tracing::info_span!(parent: None, "fake_stripe.webhook_delivery");
            tokio::spawn(
                delivery_worker(
                    rx,
                    url.clone(),
                    self.inner.config.webhook_secret.clone(),
                    self.inner.config.webhook_retry.clone(),
                    Arc::clone(&self.inner.deliveries),
                )
                .instrument(span),
            );
            state.worker = Some(tx);
        }
        if let Some(tx) = &state.worker {
            // Fails only if the worker is gone, which `is_closed` above just ruled out.
            let _ = tx.send(delivery);
        }
    }
}

/// Delivers events one at a time, in order: a delivery is retried with backoff until the
/// receiver answers 2xx or the attempts run out, and only then does the next one go.
async fn delivery_worker(
    mut queue: mpsc::UnboundedReceiver<Delivery>,
    url: String,
    secret: SecretString,
    retry: WebhookRetry,
    log: Arc<Mutex<Vec<DeliveryAttempt>>>,
) {
    let http = match reqwest::Client::builder().timeout(retry.timeout).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "fake Stripe: cannot build the webhook HTTP client");
            return;
        }
    };
    while let Some(delivery) = queue.recv().await {
        let mut backoff = retry.initial_backoff;
        for attempt in 1..=retry.max_attempts.max(1) {
            // Stripe signs each attempt anew, with the time of that attempt.
            let signature = webhook::sign(&delivery.payload, secret.expose_secret(), unix_now());
            let result = http
                .post(&url)
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .header(webhook::SIGNATURE_HEADER, signature)
                .header(header::USER_AGENT, "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
                .body(delivery.payload.clone())
                .send()
                .await;
            let (status, error) = match result {
                Ok(response) => (Some(response.status().as_u16()), None),
                Err(error) => (None, Some(error.to_string())),
            };
            let delivered = status.is_some_and(|s| (200..300).contains(&s));
            lock(&log).push(DeliveryAttempt {
                event_id: delivery.event_id.clone(),
                event_type: delivery.event_type.clone(),
                attempt,
                status,
                error,
                delivered,
                dropped: false,
            });
            if delivered {
                break;
            }
            if attempt < retry.max_attempts {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(retry.max_backoff);
            } else {
                tracing::warn!(event_id = %delivery.event_id, "fake Stripe: webhook delivery given up");
            }
        }
    }
}
