//! The pipeline every `/v1` request of the double runs, in Stripe's order: the API key,
//! then the armed faults, then the idempotency key, then the operation itself under the
//! state lock; and the shapes Stripe answers in (error bodies, `Request-Id`,
//! `Stripe-Version`, `Idempotency-Key`). Endpoints only supply the operation.

use std::ops::ControlFlow;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::FakeStripe;
use super::faults::{ApiFault, cut_connection, sleep_opt};
use super::state::{FakeState, new_id};
use crate::client::STRIPE_API_VERSION;
use crate::form::Form;

/// Context of the request being executed, for the events it creates.
pub(super) struct RequestCtx {
    pub(super) request_id: String,
    pub(super) idempotency_key: Option<String>,
    pub(super) webhooks_configured: bool,
}

/// What an endpoint produced.
pub(super) struct Outcome {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    /// Stripe saves the result only once execution began: validation errors are not kept
    /// under the idempotency key, so a corrected retry with the same key can succeed.
    pub(super) store: bool,
}

impl Outcome {
    pub(super) fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            store: true,
        }
    }

    pub(super) fn invalid(message: impl Into<String>, code: &str, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: error_body("invalid_request_error", Some(code), &message.into(), param),
            store: false,
        }
    }

    pub(super) fn missing(kind: &str, id: &str, param: &str) -> Self {
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

/// Stripe's error object, with the `doc_url` Stripe derives from the code.
pub(super) fn error_body(error_type: &str, code: Option<&str>, message: &str, param: Option<&str>) -> Value {
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

impl FakeStripe {
    /// Runs one API request through authentication, faults and idempotency, then `op`
    /// under the state lock (every operation is in memory and instant).
    pub(super) async fn api(
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
        let mut claim = match &key {
            Some(key) => match self.claim_key(&api_key, key, &endpoint, &params, fault, &request_id) {
                ControlFlow::Continue(claim) => Some(claim),
                ControlFlow::Break(answer) => return answer,
            },
            None => None,
        };
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
                claim.settle(&mut state, &outcome, &body);
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
}

/// A Stripe-shaped answer: JSON, the request's `Request-Id`, the pinned `Stripe-Version`, and
/// the idempotency key echoed back as Stripe does.
pub(super) fn stripe_response(status: StatusCode, body: &Value, request_id: &str, key: Option<&str>) -> Response {
    raw_response(
        status,
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
        request_id,
        key,
    )
}

/// [`stripe_response`] for a body already serialized (a stored answer being replayed).
pub(super) fn raw_response(status: StatusCode, body: Bytes, request_id: &str, key: Option<&str>) -> Response {
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

/// Stripe's 404 for a path it has no endpoint for.
pub(super) async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let body = error_body(
        "invalid_request_error",
        None,
        &format!("Unrecognized request URL ({method}: {}).", uri.path()),
        None,
    );
    stripe_response(StatusCode::NOT_FOUND, &body, &new_id("req", 14), None)
}
