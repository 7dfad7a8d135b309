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

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::client::STRIPE_API_VERSION;
use crate::form::Form;
use crate::types::PaymentIntentStatus;
use crate::{unix_now, webhook};

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

#[derive(Default)]
struct FakeState {
    payment_intents: HashMap<String, PaymentIntentRecord>,
    /// Ids in creation order; lists read it backwards (newest first, as Stripe lists).
    payment_intent_order: Vec<String>,
    charges: HashMap<String, ChargeRecord>,
    /// Events in creation order.
    events: Vec<Value>,
    idempotency: HashMap<IdempotencyScope, IdempotencyEntry>,
    faults: Faults,
    /// Events created by the current request, for delivery once it commits.
    outbox: Vec<Delivery>,
    /// Deliveries held back by `reorder_webhooks`.
    held: Vec<Delivery>,
    worker: Option<mpsc::UnboundedSender<Delivery>>,
}

/// Stripe scopes idempotency keys per account and mode, i.e. per secret key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IdempotencyScope {
    api_key: String,
    key: String,
}

enum IdempotencyEntry {
    InFlight,
    Done {
        fingerprint: String,
        status: StatusCode,
        body: Bytes,
    },
}

/// Armed faults, each a count of requests (or deliveries) still to affect.
#[derive(Debug, Default, Clone, Serialize)]
struct Faults {
    delay: u32,
    delay_ms: u64,
    http_500: u32,
    drop_connection: u32,
    drop_response_after_commit: u32,
    duplicate_webhooks: u32,
    reorder_webhooks: u32,
    drop_webhooks: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiFault {
    Http500,
    DropConnection,
    DropResponseAfterCommit,
}

impl Faults {
    /// The faults for the next API request: an optional delay plus at most one failure.
    fn take_for_request(&mut self) -> (Option<Duration>, Option<ApiFault>) {
        let delay = take(&mut self.delay).then(|| Duration::from_millis(self.delay_ms));
        let fault = if take(&mut self.drop_connection) {
            Some(ApiFault::DropConnection)
        } else if take(&mut self.http_500) {
            Some(ApiFault::Http500)
        } else if take(&mut self.drop_response_after_commit) {
            Some(ApiFault::DropResponseAfterCommit)
        } else {
            None
        };
        (delay, fault)
    }
}

fn take(count: &mut u32) -> bool {
    if *count > 0 {
        *count -= 1;
        true
    } else {
        false
    }
}

#[derive(Debug, Clone)]
struct Delivery {
    event_id: String,
    event_type: String,
    payload: Bytes,
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

#[derive(Debug, Clone)]
struct PaymentIntentRecord {
    id: String,
    amount: i64,
    amount_received: i64,
    currency: String,
    description: Option<String>,
    metadata: BTreeMap<String, String>,
    status: PaymentIntentStatus,
    client_secret: String,
    created: i64,
    latest_charge: Option<String>,
    payment_method: Option<String>,
    last_payment_error: Option<Value>,
}

#[derive(Debug, Clone)]
struct ChargeRecord {
    id: String,
    amount: i64,
    amount_refunded: i64,
    currency: String,
    succeeded: bool,
    payment_intent: String,
    payment_method: String,
    created: i64,
}

/// Context of the request being executed, for the events it creates.
struct RequestCtx {
    request_id: String,
    idempotency_key: Option<String>,
    webhooks_configured: bool,
}

/// What an endpoint produced.
struct Outcome {
    status: StatusCode,
    body: Value,
    /// Stripe saves the result only once execution began: validation errors are not kept
    /// under the idempotency key, so a corrected retry with the same key can succeed.
    store: bool,
}

impl Outcome {
    fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            store: true,
        }
    }

    fn invalid(message: impl Into<String>, code: &str, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: error_body("invalid_request_error", Some(code), &message.into(), param),
            store: false,
        }
    }

    fn missing(kind: &str, id: &str, param: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            body: error_body(
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such {kind}: '{id}'"),
                Some(param),
            ),
            store: false,
        }
    }
}

fn error_body(error_type: &str, code: Option<&str>, message: &str, param: Option<&str>) -> Value {
    let mut error = json!({ "type": error_type, "message": message });
    if let Some(code) = code {
        error["code"] = json!(code);
        error["doc_url"] = json!(format!(
            "https://stripe.com/docs/error-codes/{}",
            code.replace('_', "-")
        ));
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    json!({ "error": error })
}

fn new_id(prefix: &str, len: usize) -> String {
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}_{suffix}")
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
                post(create_payment_intent).get(list_payment_intents),
            )
            .route("/v1/payment_intents/{id}", get(retrieve_payment_intent))
            .route("/v1/payment_intents/{id}/confirm", post(confirm_payment_intent))
            .route("/v1/refunds", post(create_refund))
            .route("/v1/events", get(list_events))
            .route("/_control/faults", post(set_fault))
            .route("/_control/reset", post(reset))
            .route("/_control/webhooks", get(list_deliveries))
            .fallback(unknown_route)
            .with_state(self.clone())
    }

    /// Every webhook delivery attempt so far, oldest first.
    pub fn delivery_attempts(&self) -> Vec<DeliveryAttempt> {
        lock(&self.inner.deliveries).clone()
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.inner.state)
    }

    /// Runs one API request through authentication, faults and idempotency, then `op`
    /// under the state lock (every operation is in memory and instant).
    async fn api(
        &self,
        headers: &HeaderMap,
        endpoint: String,
        params: Result<Form, String>,
        op: impl FnOnce(&mut FakeState, &Form, &RequestCtx) -> Outcome,
    ) -> Response {
        let request_id = new_id("req", 14);
        let Some(api_key) = self.authenticate(headers) else {
            return stripe_response(
                StatusCode::UNAUTHORIZED,
                &error_body(
                    "invalid_request_error",
                    None,
                    "Invalid API Key provided. Send it as `Authorization: Bearer sk_…`.",
                    None,
                ),
                &request_id,
                None,
            );
        };
        let (delay, fault) = self.state().faults.take_for_request();
        match fault {
            Some(ApiFault::DropConnection) => {
                sleep_opt(delay).await;
                return cut_connection(None);
            }
            Some(ApiFault::Http500) => {
                sleep_opt(delay).await;
                let body = error_body(
                    "api_error",
                    None,
                    "An unknown error occurred (fault http_500 injected by the test double).",
                    None,
                );
                return stripe_response(StatusCode::INTERNAL_SERVER_ERROR, &body, &request_id, None);
            }
            Some(ApiFault::DropResponseAfterCommit) | None => {}
        }
        let params = match params {
            Ok(params) => params,
            Err(message) => {
                let body = error_body("invalid_request_error", None, &message, None);
                return stripe_response(StatusCode::BAD_REQUEST, &body, &request_id, None);
            }
        };
        let is_post = endpoint.starts_with("POST ");
        // Stripe ignores idempotency keys on GET (they are idempotent anyway).
        let key = if is_post {
            headers
                .get("Idempotency-Key")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        } else {
            None
        };
        let mut claim = None;
        if let Some(key) = &key {
            if key.is_empty() || key.len() > 255 {
                let body = error_body(
                    "invalid_request_error",
                    None,
                    "Idempotency-Key must be 1 to 255 characters long.",
                    None,
                );
                return stripe_response(StatusCode::BAD_REQUEST, &body, &request_id, Some(key));
            }
            let scope = IdempotencyScope {
                api_key: api_key.clone(),
                key: key.clone(),
            };
            let fingerprint = fingerprint(&endpoint, &params);
            let mut state = self.state();
            match state.idempotency.get(&scope) {
                None => {
                    state.idempotency.insert(scope.clone(), IdempotencyEntry::InFlight);
                    claim = Some(Claim {
                        fake: self.clone(),
                        scope,
                        fingerprint,
                        settled: false,
                    });
                }
                Some(IdempotencyEntry::InFlight) => {
                    drop(state);
                    let body = error_body(
                        "idempotency_error",
                        Some("idempotency_key_in_use"),
                        "There is currently another in-progress request using this Idempotent Key (that probably \
                         means you submitted twice, and the other request is still going through). Please try \
                         again later.",
                        None,
                    );
                    return stripe_response(StatusCode::CONFLICT, &body, &request_id, Some(key));
                }
                Some(IdempotencyEntry::Done {
                    fingerprint: stored, ..
                }) if *stored != fingerprint => {
                    drop(state);
                    let body = error_body(
                        "idempotency_error",
                        None,
                        &format!(
                            "Keys for idempotent requests can only be used with the same parameters they were \
                             first used with. Try using a key other than '{key}' if you meant to execute a \
                             different request."
                        ),
                        None,
                    );
                    return stripe_response(StatusCode::BAD_REQUEST, &body, &request_id, Some(key));
                }
                Some(IdempotencyEntry::Done { status, body, .. }) => {
                    let (status, body) = (*status, body.clone());
                    drop(state);
                    if fault == Some(ApiFault::DropResponseAfterCommit) {
                        return cut_connection(Some(body));
                    }
                    let mut response = raw_response(status, body, &request_id, Some(key));
                    response
                        .headers_mut()
                        .insert("Idempotent-Replayed", HeaderValue::from_static("true"));
                    return response;
                }
            }
        }
        // Slept while holding the key, so a concurrent duplicate sees it in flight.
        sleep_opt(delay).await;

        let ctx = RequestCtx {
            request_id: request_id.clone(),
            idempotency_key: key.clone(),
            webhooks_configured: self.inner.config.webhook_url.is_some(),
        };
        let (status, body) = {
            let mut state = self.state();
            let outcome = op(&mut state, &params, &ctx);
            let body = Bytes::from(serde_json::to_vec(&outcome.body).unwrap_or_default());
            if let Some(claim) = &mut claim {
                if outcome.store {
                    state.idempotency.insert(
                        claim.scope.clone(),
                        IdempotencyEntry::Done {
                            fingerprint: claim.fingerprint.clone(),
                            status: outcome.status,
                            body: body.clone(),
                        },
                    );
                } else {
                    state.idempotency.remove(&claim.scope);
                }
                claim.settled = true;
            }
            self.flush_outbox(&mut state);
            (outcome.status, body)
        };
        if fault == Some(ApiFault::DropResponseAfterCommit) {
            return cut_connection(Some(body));
        }
        raw_response(status, body, &request_id, key.as_deref())
    }

    /// The presented key, if it is the configured one.
    fn authenticate(&self, headers: &HeaderMap) -> Option<String> {
        let presented = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let expected = self.inner.config.api_key.expose_secret();
        // Constant time, as a real key check would be; cheap enough here.
        let equal = presented.len() == expected.len()
            && presented
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        equal.then(|| presented.to_owned())
    }

    /// Hands the events of a committed request to the delivery worker, applying the
    /// webhook faults.
    fn flush_outbox(&self, state: &mut FakeState) {
        let outbox = std::mem::take(&mut state.outbox);
        for delivery in outbox {
            if take(&mut state.faults.drop_webhooks) {
                lock(&self.inner.deliveries).push(DeliveryAttempt {
                    event_id: delivery.event_id,
                    event_type: delivery.event_type,
                    attempt: 0,
                    status: None,
                    error: Some("dropped by the drop_webhooks fault".into()),
                    delivered: false,
                    dropped: true,
                });
            } else if take(&mut state.faults.reorder_webhooks) {
                state.held.push(delivery);
                if state.faults.reorder_webhooks == 0 {
                    self.release_held(state);
                }
            } else if take(&mut state.faults.duplicate_webhooks) {
                self.enqueue(state, delivery.clone());
                self.enqueue(state, delivery);
            } else {
                self.enqueue(state, delivery);
            }
        }
    }

    fn release_held(&self, state: &mut FakeState) {
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
            tokio::spawn(delivery_worker(
                rx,
                url.clone(),
                self.inner.config.webhook_secret.clone(),
                self.inner.config.webhook_retry.clone(),
                Arc::clone(&self.inner.deliveries),
            ));
            state.worker = Some(tx);
        }
        if let Some(tx) = &state.worker {
            // Fails only if the worker is gone, which `is_closed` above just ruled out.
            let _ = tx.send(delivery);
        }
    }
}

/// Removes an in-flight idempotency key whose request never finished (its client went
/// away mid-delay, or the handler was cancelled), so the key does not stay locked forever.
struct Claim {
    fake: FakeStripe,
    scope: IdempotencyScope,
    fingerprint: String,
    settled: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.settled {
            let mut state = self.fake.state();
            if matches!(state.idempotency.get(&self.scope), Some(IdempotencyEntry::InFlight)) {
                state.idempotency.remove(&self.scope);
            }
        }
    }
}

/// Same endpoint and same parameters, order-insensitive as Stripe compares them.
fn fingerprint(endpoint: &str, params: &Form) -> String {
    let mut pairs = params.pairs().to_vec();
    pairs.sort();
    let mut sorted = Form::new();
    for (k, v) in pairs {
        sorted.push(k, v);
    }
    format!("{endpoint}?{}", sorted.encode())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent across a panic (every mutation is a single step), so a
    // poisoned lock is still usable.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn sleep_opt(delay: Option<Duration>) {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
}

fn stripe_response(status: StatusCode, body: &Value, request_id: &str, key: Option<&str>) -> Response {
    raw_response(
        status,
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
        request_id,
        key,
    )
}

fn raw_response(status: StatusCode, body: Bytes, request_id: &str, key: Option<&str>) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("Request-Id", value);
    }
    headers.insert("Stripe-Version", HeaderValue::from_static(STRIPE_API_VERSION));
    if let Some(value) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert("Idempotency-Key", value);
    }
    response
}

/// A response whose body fails, so hyper aborts the connection: with `None` before any
/// byte of the answer is written, with `Some(body)` after the head and part of the body.
/// Either way the client cannot tell whether the work was done.
fn cut_connection(body: Option<Bytes>) -> Response {
    let (status, prefix, declared_len) = match body {
        Some(body) => (StatusCode::OK, body.slice(..body.len() / 2), body.len()),
        None => (StatusCode::OK, Bytes::new(), 1),
    };
    let stream = futures::stream::iter([
        Ok(prefix),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection cut by a test double fault",
        )),
    ]);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(declared_len));
    response
}

// ---- Handlers -------------------------------------------------------------------------

fn form_body(body: &Bytes) -> Result<Form, String> {
    Form::decode(body).map_err(|e| format!("Invalid request body: {e}"))
}

fn query_params(query: Option<String>) -> Result<Form, String> {
    Form::decode(query.unwrap_or_default().as_bytes()).map_err(|e| format!("Invalid query string: {e}"))
}

async fn create_payment_intent(State(fake): State<FakeStripe>, headers: HeaderMap, body: Bytes) -> Response {
    fake.api(
        &headers,
        "POST /v1/payment_intents".into(),
        form_body(&body),
        FakeState::create_payment_intent,
    )
    .await
}

async fn retrieve_payment_intent(
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

async fn list_payment_intents(
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

async fn confirm_payment_intent(
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

async fn create_refund(State(fake): State<FakeStripe>, headers: HeaderMap, body: Bytes) -> Response {
    fake.api(
        &headers,
        "POST /v1/refunds".into(),
        form_body(&body),
        FakeState::create_refund,
    )
    .await
}

async fn list_events(State(fake): State<FakeStripe>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    fake.api(
        &headers,
        "GET /v1/events".into(),
        query_params(query),
        |state, params, _| {
            let bound = |key: &str| -> Result<Option<i64>, Outcome> {
                params
                    .get(key)
                    .map(|v| {
                        v.parse::<i64>().map_err(|_| {
                            Outcome::invalid(format!("Invalid integer: {v}"), "parameter_invalid_integer", Some(key))
                        })
                    })
                    .transpose()
            };
            let bounds = (|| {
                Ok((
                    bound("created[gte]")?,
                    bound("created[gt]")?,
                    bound("created[lte]")?,
                    bound("created[lt]")?,
                ))
            })();
            let (gte, gt, lte, lt) = match bounds {
                Ok(bounds) => bounds,
                Err(outcome) => return outcome,
            };
            let event_type = params.get("type");
            let newest_first: Vec<Value> = state
                .events
                .iter()
                .rev()
                .filter(|event| {
                    let created = event["created"].as_i64().unwrap_or(0);
                    gte.is_none_or(|b| created >= b)
                        && gt.is_none_or(|b| created > b)
                        && lte.is_none_or(|b| created <= b)
                        && lt.is_none_or(|b| created < b)
                        && event_type.is_none_or(|t| event["type"].as_str() == Some(t))
                })
                .cloned()
                .collect();
            paginate(newest_first, params, "/v1/events")
        },
    )
    .await
}

/// Stripe's cursor pagination over a newest-first list.
fn paginate(newest_first: Vec<Value>, params: &Form, url: &str) -> Outcome {
    let limit = match params.get("limit").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => {
            return Outcome::invalid(
                "Invalid limit: must be an integer between 1 and 100",
                "parameter_invalid_integer",
                Some("limit"),
            );
        }
    };
    let start = match params.get("starting_after") {
        None => 0,
        Some(after) => match newest_first.iter().position(|item| item["id"].as_str() == Some(after)) {
            Some(index) => index + 1,
            None => return Outcome::missing("object", after, "starting_after"),
        },
    };
    let rest = newest_first.len().saturating_sub(start);
    let data: Vec<Value> = newest_first.into_iter().skip(start).take(limit).collect();
    Outcome::ok(json!({ "object": "list", "data": data, "has_more": rest > limit, "url": url }))
}

#[derive(Debug, Deserialize)]
struct FaultRequest {
    fault: String,
    count: u32,
    delay_ms: Option<u64>,
}

async fn set_fault(State(fake): State<FakeStripe>, Json(request): Json<FaultRequest>) -> Response {
    let mut state = fake.state();
    let faults = &mut state.faults;
    let slot = match request.fault.as_str() {
        "delay" => {
            let Some(delay_ms) = request.delay_ms else {
                return control_error("the delay fault needs delay_ms");
            };
            faults.delay_ms = delay_ms;
            &mut faults.delay
        }
        "http_500" => &mut faults.http_500,
        "drop_connection" => &mut faults.drop_connection,
        "drop_response_after_commit" => &mut faults.drop_response_after_commit,
        "duplicate_webhooks" => &mut faults.duplicate_webhooks,
        "reorder_webhooks" => &mut faults.reorder_webhooks,
        "drop_webhooks" => &mut faults.drop_webhooks,
        other => return control_error(&format!("unknown fault {other:?}")),
    };
    *slot = request.count;
    Json(json!({ "faults": state.faults })).into_response()
}

fn control_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": { "message": message } })),
    )
        .into_response()
}

/// Clears every fault. Deliveries held back by `reorder_webhooks` are released (reversed,
/// as promised) rather than silently lost.
async fn reset(State(fake): State<FakeStripe>) -> Response {
    let mut state = fake.state();
    state.faults = Faults::default();
    fake.release_held(&mut state);
    Json(json!({ "faults": state.faults })).into_response()
}

async fn list_deliveries(State(fake): State<FakeStripe>) -> Response {
    let held = fake.state().held.len();
    Json(json!({ "attempts": fake.delivery_attempts(), "held": held })).into_response()
}

async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let body = error_body(
        "invalid_request_error",
        None,
        &format!("Unrecognized request URL ({method}: {}).", uri.path()),
        None,
    );
    stripe_response(StatusCode::NOT_FOUND, &body, &new_id("req", 14), None)
}

// ---- Operations -----------------------------------------------------------------------

/// Refuses parameters the endpoint does not know, as Stripe does.
fn check_params(params: &Form, allowed: &[&str]) -> Result<(), Outcome> {
    match params.top_level_keys().find(|key| !allowed.contains(key)) {
        Some(unknown) => Err(Outcome::invalid(
            format!("Received unknown parameter: {unknown}"),
            "parameter_unknown",
            Some(unknown),
        )),
        None => Ok(()),
    }
}

fn required<'a>(params: &'a Form, key: &str) -> Result<&'a str, Outcome> {
    params.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
        Outcome::invalid(
            format!("Missing required param: {key}."),
            "parameter_missing",
            Some(key),
        )
    })
}

fn parse_amount(value: &str, param: &str) -> Result<i64, Outcome> {
    match value.parse::<i64>() {
        Ok(amount) if (1..=99_999_999).contains(&amount) => Ok(amount),
        Ok(_) => Err(Outcome::invalid(
            "Amount must be between 1 and 99999999.",
            "amount_too_small",
            Some(param),
        )),
        Err(_) => Err(Outcome::invalid(
            format!("Invalid integer: {value}"),
            "parameter_invalid_integer",
            Some(param),
        )),
    }
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

    fn create_refund(&mut self, params: &Form, ctx: &RequestCtx) -> Outcome {
        if let Err(outcome) = check_params(params, &["payment_intent", "charge", "amount", "reason", "metadata"]) {
            return outcome;
        }
        let charge_id = match (params.get("payment_intent"), params.get("charge")) {
            (Some(pi_id), _) => match self.payment_intents.get(pi_id) {
                None => return Outcome::missing("payment_intent", pi_id, "payment_intent"),
                Some(pi) => match (&pi.latest_charge, pi.status) {
                    (Some(charge), PaymentIntentStatus::Succeeded) => charge.clone(),
                    _ => {
                        return Outcome::invalid(
                            format!("This PaymentIntent ({pi_id}) does not have a successful charge to refund."),
                            "charge_not_refundable",
                            Some("payment_intent"),
                        );
                    }
                },
            },
            (None, Some(charge_id)) => charge_id.to_owned(),
            (None, None) => {
                return Outcome::invalid(
                    "One of the following params should be provided for this request: payment_intent or charge.",
                    "parameter_missing",
                    Some("payment_intent"),
                );
            }
        };
        let Some(charge) = self.charges.get_mut(&charge_id) else {
            return Outcome::missing("charge", &charge_id, "charge");
        };
        let remaining = charge.amount - charge.amount_refunded;
        if !charge.succeeded || remaining <= 0 {
            return Outcome {
                store: true,
                ..Outcome::invalid(
                    format!("Charge {charge_id} has already been refunded."),
                    "charge_already_refunded",
                    None,
                )
            };
        }
        let amount = match params.get("amount").map(|v| parse_amount(v, "amount")) {
            None => remaining,
            Some(Ok(amount)) if amount <= remaining => amount,
            Some(Ok(amount)) => {
                return Outcome::invalid(
                    format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})."),
                    "amount_too_large",
                    Some("amount"),
                );
            }
            Some(Err(outcome)) => return outcome,
        };
        charge.amount_refunded += amount;
        let charge_json = charge.to_json();
        let refund = json!({
            "id": new_id("re", 24),
            "object": "refund",
            "amount": amount,
            "balance_transaction": new_id("txn", 24),
            "charge": charge.id,
            "created": unix_now(),
            "currency": charge.currency,
            "destination_details": {
                "card": {
                    "reference": "123456789012",
                    "reference_status": "available",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            "metadata": params.map("metadata"),
            "payment_intent": charge.payment_intent,
            "reason": params.get("reason"),
            "receipt_number": null,
            "source_transfer_reversal": null,
            "status": "succeeded",
            "transfer_reversal": null,
        });
        self.emit("charge.refunded", charge_json, ctx);
        self.emit("refund.created", refund.clone(), ctx);
        Outcome::ok(refund)
    }

    /// Records an event (snapshotting its object, as Stripe does) and queues its delivery
    /// for when the request commits.
    fn emit(&mut self, event_type: &str, object: Value, ctx: &RequestCtx) {
        let id = new_id("evt", 24);
        let event = json!({
            "id": id,
            "object": "event",
            "api_version": STRIPE_API_VERSION,
            "created": unix_now(),
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": i64::from(ctx.webhooks_configured),
            "request": { "id": ctx.request_id, "idempotency_key": ctx.idempotency_key },
            "type": event_type,
        });
        self.outbox.push(Delivery {
            event_id: id,
            event_type: event_type.to_owned(),
            payload: Bytes::from(serde_json::to_vec(&event).unwrap_or_default()),
        });
        self.events.push(event);
    }
}

impl PaymentIntentRecord {
    /// Stripe's full PaymentIntent shape (every key of the documented object), so that a
    /// client written against Stripe's reference finds what it expects here too.
    fn to_json(&self) -> Value {
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
    fn to_json(&self) -> Value {
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

// ---- Webhook delivery -----------------------------------------------------------------

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
