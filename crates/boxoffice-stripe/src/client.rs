//! The one Stripe HTTP client (SPEC §5). There is no in-process payment mock: tests and the
//! default configuration point `api_base` at the test double instead, so every payment goes
//! through this code.
//!
//! The contract callers build on is the error split. A [`StripeError::Api`] or
//! [`StripeError::Idempotency`] is definitive: Stripe answered and the answer may be stored
//! and replayed. A [`StripeError::Indeterminate`] means the outcome is unknown — a timeout,
//! a cut connection, an incomplete body, 409/429/5xx — after retrying with the *same*
//! idempotency key, so the caller must not store it and must retry later with that key (or
//! look the object up) rather than start over.
//!
//! Each public call runs in a span `stripe.<operation>` carrying the ids it names (and the
//! id it created). Never recorded: the secret key, request and response bodies (a
//! PaymentIntent carries its client secret), and the idempotency keys, which embed hold and
//! order ids — bearer capabilities for the buyer's pages (SPEC §2).

use std::time::Duration;

use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::form::Form;
use crate::types::{ApiErrorObject, ErrorResponse, Event, List, PaymentIntent, Refund};

/// The Stripe API version every request pins, so Stripe's account-level default (which an
/// operator may upgrade in the dashboard) cannot change the shapes we parse.
pub const STRIPE_API_VERSION: &str = "2024-06-20";

/// Real Stripe.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// Stripe's limit on idempotency keys.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// How the client reaches Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or the test double (`http://127.0.0.1:8080/_fake-stripe`).
    /// Paths like `/v1/payment_intents` are appended.
    pub api_base: String,
    pub secret_key: SecretString,
    /// For one attempt, connection to last byte.
    pub timeout: Duration,
    /// Retries after the first attempt for indeterminate failures; 0 disables retrying.
    pub max_retries: u32,
    /// The first retry waits about this long; each later one twice as long.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl StripeConfig {
    /// Defaults in line with Stripe's own libraries: 2 retries, 0.5 s doubling to 5 s.
    pub fn new(api_base: impl Into<String>, secret_key: SecretString) -> Self {
        Self {
            api_base: api_base.into(),
            secret_key,
            timeout: Duration::from_secs(30),
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Parameters of `POST /v1/payment_intents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePaymentIntent {
    /// In the currency's smallest unit.
    pub amount: i64,
    /// Lowercase ISO 4217 (`eur`).
    pub currency: String,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub description: Option<String>,
}

/// Why a Stripe call failed.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe refused the request and will refuse it again: a 4xx with an error object
    /// (invalid request, authentication, a declined card — `error_type == "card_error"`).
    #[error("Stripe answered {status}: {}", describe(.error))]
    Api {
        status: u16,
        error: Box<ApiErrorObject>,
        request_id: Option<String>,
    },
    /// The idempotency key was used before with other parameters or another endpoint (400
    /// `idempotency_error`). A bug on our side: the key derivation is not unique enough.
    #[error("Stripe refused the idempotency key: {}", describe(.error))]
    Idempotency {
        status: u16,
        error: Box<ApiErrorObject>,
        request_id: Option<String>,
    },
    /// The outcome is unknown: Stripe may or may not have done the work. Retry later with the
    /// same idempotency key; never store this as a result.
    #[error("Stripe outcome unknown after {attempts} attempt(s): {reason}")]
    Indeterminate { attempts: u32, reason: IndeterminateReason },
    /// A success status whose body is not the object we asked for: Stripe (or something in
    /// between) broke the contract. The work was done; retrying replays the same body.
    #[error("unexpected Stripe response ({status}): {message}")]
    UnexpectedResponse { status: u16, message: String },
    /// Rejected before sending (an id with characters no Stripe id has, an empty key, …).
    #[error("invalid Stripe request: {0}")]
    InvalidRequest(String),
}

fn describe(error: &ApiErrorObject) -> String {
    let mut out = error.error_type.clone();
    for part in [&error.code, &error.decline_code].into_iter().flatten() {
        out.push('/');
        out.push_str(part);
    }
    if let Some(message) = &error.message {
        out.push_str(": ");
        out.push_str(message);
    }
    out
}

impl StripeError {
    /// True when the caller must treat the outcome as unknown.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Self::Indeterminate { .. })
    }

    /// Stripe's error object, for the definitive API errors.
    pub fn api_error(&self) -> Option<&ApiErrorObject> {
        match self {
            Self::Api { error, .. } | Self::Idempotency { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The error object of a declined card (`card_error`).
    pub fn card_error(&self) -> Option<&ApiErrorObject> {
        match self {
            Self::Api { error, .. } if error.error_type == "card_error" => Some(error),
            _ => None,
        }
    }
}

/// What made an outcome unknown (the last attempt's failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndeterminateReason {
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("response cut off: {0}")]
    IncompleteResponse(String),
    /// 409, 429, 5xx, or any status Stripe marked `Stripe-Should-Retry: true`.
    #[error("HTTP {status}{}", .error.as_ref().map(|e| format!(": {}", describe(e))).unwrap_or_default())]
    Status {
        status: u16,
        error: Option<Box<ApiErrorObject>>,
    },
}

/// One attempt's result, before the retry decision.
enum AttemptError {
    Final(StripeError),
    Retryable {
        reason: IndeterminateReason,
        /// `Stripe-Should-Retry: false` overrides our own judgement.
        stop: bool,
    },
}

/// The Stripe client. Cheap to clone; share one per process (it pools connections).
#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    api_base: String,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("api_base", &self.api_base)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

impl StripeClient {
    pub fn new(config: StripeConfig) -> Result<Self, StripeError> {
        let mut headers = HeaderMap::new();
        headers.insert("Stripe-Version", HeaderValue::from_static(STRIPE_API_VERSION));
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.secret_key.expose_secret()))
            .map_err(|_| StripeError::InvalidRequest("secret key is not a valid header value".into()))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("boxoffice/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| StripeError::InvalidRequest(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            api_base: config.api_base.trim_end_matches('/').to_owned(),
            max_retries: config.max_retries,
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
        })
    }

    /// `POST /v1/payment_intents`.
    #[tracing::instrument(
        name = "stripe.create_payment_intent",
        skip_all,
        fields(amount = params.amount, currency = %params.currency, payment_intent = tracing::field::Empty)
    )]
    pub async fn create_payment_intent(
        &self,
        params: &CreatePaymentIntent,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        let mut form = Form::new();
        form.push("amount", params.amount.to_string())
            .push("currency", params.currency.clone())
            .push_opt("description", params.description.clone())
            .push_map("metadata", &params.metadata);
        let intent: PaymentIntent = self
            .request(Method::POST, "/v1/payment_intents", form, Some(idempotency_key))
            .await?;
        tracing::Span::current().record("payment_intent", intent.id.as_str());
        Ok(intent)
    }

    /// `GET /v1/payment_intents/{id}`.
    #[tracing::instrument(name = "stripe.retrieve_payment_intent", skip_all, fields(payment_intent = id))]
    pub async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        check_id(id)?;
        self.request(Method::GET, &format!("/v1/payment_intents/{id}"), Form::new(), None)
            .await
    }

    /// `GET /v1/payment_intents`, newest first; `limit` is 1–100.
    #[tracing::instrument(
        name = "stripe.list_payment_intents",
        skip_all,
        fields(limit = limit, starting_after = starting_after)
    )]
    pub async fn list_payment_intents(
        &self,
        limit: u32,
        starting_after: Option<&str>,
    ) -> Result<List<PaymentIntent>, StripeError> {
        let mut query = Form::new();
        query.push("limit", limit.to_string());
        if let Some(after) = starting_after {
            check_id(after)?;
            query.push("starting_after", after);
        }
        self.request(Method::GET, "/v1/payment_intents", query, None).await
    }

    /// `POST /v1/payment_intents/{id}/confirm`. A declined card is `Err(StripeError::Api)`
    /// with a `card_error` (see [`StripeError::card_error`]); Stripe stores that outcome
    /// under the key like any other.
    #[tracing::instrument(
        name = "stripe.confirm_payment_intent",
        skip_all,
        fields(payment_intent = id, payment_method = payment_method)
    )]
    pub async fn confirm_payment_intent(
        &self,
        id: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, StripeError> {
        check_id(id)?;
        let mut form = Form::new();
        form.push("payment_method", payment_method);
        self.request(
            Method::POST,
            &format!("/v1/payment_intents/{id}/confirm"),
            form,
            Some(idempotency_key),
        )
        .await
    }

    /// `POST /v1/refunds` for the whole amount of a PaymentIntent.
    #[tracing::instrument(
        name = "stripe.create_refund",
        skip_all,
        fields(payment_intent = payment_intent_id, refund = tracing::field::Empty)
    )]
    pub async fn create_refund(&self, payment_intent_id: &str, idempotency_key: &str) -> Result<Refund, StripeError> {
        check_id(payment_intent_id)?;
        let mut form = Form::new();
        form.push("payment_intent", payment_intent_id);
        let refund: Refund = self
            .request(Method::POST, "/v1/refunds", form, Some(idempotency_key))
            .await?;
        tracing::Span::current().record("refund", refund.id.as_str());
        Ok(refund)
    }

    /// `GET /v1/events`, newest first, optionally only those created at or after
    /// `created_gte` (unix seconds). Stripe keeps events for 30 days.
    #[tracing::instrument(
        name = "stripe.list_events",
        skip_all,
        fields(limit = limit, starting_after = starting_after, created_gte = created_gte)
    )]
    pub async fn list_events(
        &self,
        limit: u32,
        starting_after: Option<&str>,
        created_gte: Option<i64>,
    ) -> Result<List<Event>, StripeError> {
        let mut query = Form::new();
        query.push("limit", limit.to_string());
        if let Some(after) = starting_after {
            check_id(after)?;
            query.push("starting_after", after);
        }
        query.push_opt("created[gte]", created_gte.map(|t| t.to_string()));
        self.request(Method::GET, "/v1/events", query, None).await
    }

    /// Sends with retries. Every attempt of a POST carries the same idempotency key, so
    /// Stripe does the work at most once however many attempts reach it.
    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: Form,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        if let Some(key) = idempotency_key
            && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || HeaderValue::from_str(key).is_err())
        {
            return Err(StripeError::InvalidRequest(
                "idempotency key must be 1-255 visible ASCII characters".into(),
            ));
        }
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.attempt(&method, path, &params, idempotency_key).await {
                Ok(value) => return Ok(value),
                Err(AttemptError::Final(error)) => return Err(error),
                Err(AttemptError::Retryable { reason, stop }) => {
                    if stop || attempt > self.max_retries {
                        return Err(StripeError::Indeterminate {
                            attempts: attempt,
                            reason,
                        });
                    }
                    let delay = self.backoff(attempt);
                    tracing::warn!(%method, path, attempt, %reason, ?delay, "Stripe call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Exponential backoff with jitter in [50 %, 100 %] of the step, as Stripe's libraries
    /// do, so that many clients failing together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_backoff);
        step.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        params: &Form,
        idempotency_key: Option<&str>,
    ) -> Result<T, AttemptError> {
        let url = format!("{}{path}", self.api_base);
        let mut request = self.http.request(method.clone(), &url);
        if *method == Method::GET {
            if !params.is_empty() {
                request = request.query(params.pairs());
            }
        } else {
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(params.encode());
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.map_err(|e| transport_error(&e, false))?;
        let status = response.status();
        let should_retry = response
            .headers()
            .get("Stripe-Should-Retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.eq_ignore_ascii_case("true"));
        let request_id = response
            .headers()
            .get("Request-Id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A body cut off after the status line means Stripe may have committed the work.
        let body = response.bytes().await.map_err(|e| transport_error(&e, true))?;

        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                AttemptError::Final(StripeError::UnexpectedResponse {
                    status: status.as_u16(),
                    message: e.to_string(),
                })
            });
        }
        let error = serde_json::from_slice::<ErrorResponse>(&body)
            .ok()
            .map(|r| Box::new(r.error));
        let retryable = match should_retry {
            Some(explicit) => explicit,
            None => is_retryable_status(status),
        };
        if retryable || is_retryable_status(status) {
            return Err(AttemptError::Retryable {
                reason: IndeterminateReason::Status {
                    status: status.as_u16(),
                    error,
                },
                stop: !retryable,
            });
        }
        let status = status.as_u16();
        let error = error.unwrap_or_else(|| {
            Box::new(ApiErrorObject {
                error_type: "api_error".into(),
                code: None,
                decline_code: None,
                message: Some(format!("HTTP {status} without a Stripe error body")),
                param: None,
                doc_url: None,
                charge: None,
                payment_intent_id: None,
            })
        });
        Err(AttemptError::Final(if error.error_type == "idempotency_error" {
            StripeError::Idempotency {
                status,
                error,
                request_id,
            }
        } else {
            StripeError::Api {
                status,
                error,
                request_id,
            }
        }))
    }
}

/// 409 (a concurrent request holds the key, or a lock timed out), 429 and 5xx say nothing
/// about whether the work happened.
fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::CONFLICT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn transport_error(error: &reqwest::Error, reading_body: bool) -> AttemptError {
    if error.is_builder() {
        return AttemptError::Final(StripeError::InvalidRequest(error.to_string()));
    }
    let reason = if error.is_timeout() {
        IndeterminateReason::Timeout
    } else if reading_body || error.is_body() || error.is_decode() {
        IndeterminateReason::IncompleteResponse(error_chain(error))
    } else if error.is_connect() {
        IndeterminateReason::Connection(error_chain(error))
    } else {
        // The request may have been sent and processed before the connection broke.
        IndeterminateReason::IncompleteResponse(error_chain(error))
    };
    AttemptError::Retryable { reason, stop: false }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Stripe ids are ASCII letters, digits and underscores. Anything else would change the
/// request path, so it is refused before sending.
fn check_id(id: &str) -> Result<(), StripeError> {
    if !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(StripeError::InvalidRequest(format!("{id:?} is not a Stripe id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_would_change_the_path_are_refused() {
        assert!(check_id("pi_3MtwBwLkdIwHu7ix28a3tqPa").is_ok());
        for bad in ["", "pi_1/confirm", "pi_1?x=1", "../v1/refunds", "pi 1"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_key_is_not_in_debug_output() {
        let config = StripeConfig::new("http://127.0.0.1:1", SecretString::from("sk_test_supersecret"));
        assert!(!format!("{config:?}").contains("supersecret"));
        let client = StripeClient::new(config).expect("client");
        assert!(!format!("{client:?}").contains("supersecret"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut config = StripeConfig::new("http://127.0.0.1:1", SecretString::from("sk"));
        config.initial_backoff = Duration::from_millis(100);
        config.max_backoff = Duration::from_millis(300);
        let client = StripeClient::new(config).expect("client");
        for _ in 0..20 {
            let first = client.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let second = client.backoff(2);
            assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
            assert!(client.backoff(30) <= Duration::from_millis(300));
        }
    }
}
