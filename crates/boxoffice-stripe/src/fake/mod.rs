//! The built-in Stripe test double (SPEC §5): a small Stripe-compatible server, mounted by
//! the server at `/_fake-stripe` in the default configuration and runnable alone
//! (`boxoffice fake-stripe`). It speaks Stripe's request and response shapes for the
//! endpoints boxoffice uses, keeps Stripe's idempotency contract, and delivers
//! Stripe-signed webhooks, so that the production client and webhook code are exercised
//! end to end without a network.
//!
//! What it deliberately is not: a model of Stripe's whole API. It emits exactly the events
//! boxoffice reacts to (`payment_intent.succeeded`, `payment_intent.payment_failed`,
//! `charge.refunded`, `refund.created`), knows the test payment methods `pm_card_visa` and
//! `pm_card_chargeDeclined`, and refuses parameters it does not know — a request the double
//! cannot interpret is more likely a client bug than something to ignore.
//!
//! Faults (`POST /_control/faults`) make the failures of a real network reproducible: slow
//! answers, 500s, connections cut before or after the work is committed, and duplicated,
//! reordered or lost webhooks. `/_control` needs no API key: it is a test interface.
//!
//! Where each part lives:
//!
//! - here: the configuration, [`FakeStripe`] with its router (every route is listed in
//!   [`FakeStripe::router`]), and [`serve`];
//! - `api`: the pipeline every `/v1` request runs (API key, faults, idempotency, then the
//!   operation under the state lock), Stripe's error bodies and response headers;
//! - `idempotency`: Stripe's idempotency-key contract (claim, replay, mismatch);
//! - `params`: Stripe's parameter rules (unknown and required parameters, amounts) and
//!   its cursor pagination;
//! - `state`: the in-memory Stripe objects (PaymentIntents, Charges, events) and their
//!   full JSON shapes;
//! - `intents`: the PaymentIntent endpoints; `refunds`: `POST /v1/refunds`;
//!   `events`: creating Stripe events and `GET /v1/events`;
//! - `delivery`: signed webhook delivery, in order, with retries and backoff;
//! - `faults`: the fault switches, and what each does to a request or a delivery;
//! - `control`: the `/_control/...` test endpoints that arm faults and list deliveries.
//!
//! A new endpoint is an `impl FakeState` operation in its resource's module, a handler that
//! passes it to `FakeStripe::api`, and one line in the router; a new resource (charges,
//! disputes) is a module of its own like `refunds`, with its record in `state`.

mod api;
mod control;
mod delivery;
mod events;
mod faults;
mod idempotency;
mod intents;
mod params;
mod refunds;
mod state;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::routing::{get, post};
use secrecy::SecretString;

pub use delivery::{DeliveryAttempt, WebhookRetry};
use state::FakeState;

/// Configuration of the double.
#[derive(Debug, Clone)]
pub struct FakeStripeConfig {
    /// The only secret key accepted (`Authorization: Bearer …`).
    pub api_key: SecretString,
    /// Signs webhook deliveries, whole string as key (as Stripe does).
    pub webhook_secret: SecretString,
    /// Where events are POSTed; `None` keeps them listable only (`GET /v1/events`).
    pub webhook_url: Option<String>,
    pub webhook_retry: WebhookRetry,
}

impl FakeStripeConfig {
    pub fn new(api_key: impl Into<String>, webhook_secret: impl Into<String>, webhook_url: Option<String>) -> Self {
        Self {
            api_key: SecretString::from(api_key.into()),
            webhook_secret: SecretString::from(webhook_secret.into()),
            webhook_url,
            webhook_retry: WebhookRetry::default(),
        }
    }
}

/// The test double. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeStripe {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeStripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeStripe")
            .field("webhook_url", &self.inner.config.webhook_url)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: FakeStripeConfig,
    state: Mutex<FakeState>,
    deliveries: Arc<Mutex<Vec<DeliveryAttempt>>>,
}

impl FakeStripe {
    pub fn new(config: FakeStripeConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(FakeState::default()),
                deliveries: Arc::new(Mutex::new(Vec::new())),
            }),
        }
    }

    /// The double's routes, to serve alone or to `nest` under `/_fake-stripe`.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route(
                "/v1/payment_intents",
                post(intents::create_payment_intent).get(intents::list_payment_intents),
            )
            .route("/v1/payment_intents/{id}", get(intents::retrieve_payment_intent))
            .route(
                "/v1/payment_intents/{id}/confirm",
                post(intents::confirm_payment_intent),
            )
            .route("/v1/refunds", post(refunds::create_refund))
            .route("/v1/events", get(events::list_events))
            .route("/_control/faults", post(control::set_fault))
            .route("/_control/reset", post(control::reset))
            .route("/_control/webhooks", get(control::list_deliveries))
            .fallback(api::unknown_route)
            .with_state(self.clone())
    }

    /// Every webhook delivery attempt so far, oldest first.
    pub fn delivery_attempts(&self) -> Vec<DeliveryAttempt> {
        lock(&self.inner.deliveries).clone()
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.inner.state)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent across a panic (every mutation is a single step), so a
    // poisoned lock is still usable.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Serves the double alone (`boxoffice fake-stripe --listen ADDR`) until `shutdown`
/// resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    fake: FakeStripe,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, fake.router::<()>())
        .with_graceful_shutdown(shutdown)
        .await
}
