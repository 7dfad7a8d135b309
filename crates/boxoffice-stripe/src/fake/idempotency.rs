//! Stripe's idempotency contract, as the double keeps it: a POST with an `Idempotency-Key`
//! executes once; a retry with the same parameters replays the stored answer
//! (`Idempotent-Replayed: true`), one with other parameters is refused, and one that
//! arrives while the first is still running gets 409 `idempotency_key_in_use`. Keys are
//! scoped per secret key, and answers are stored only once execution began.

use std::ops::ControlFlow;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use super::FakeStripe;
use super::api::{Outcome, error_body, raw_response, stripe_response};
use super::faults::{ApiFault, cut_connection};
use super::state::FakeState;
use crate::form::Form;

/// Stripe scopes idempotency keys per account and mode, i.e. per secret key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct IdempotencyScope {
    api_key: String,
    key: String,
}

/// What a key holds: its request is still running, or the answer stored for replays.
pub(super) enum IdempotencyEntry {
    InFlight,
    Done {
        fingerprint: String,
        status: StatusCode,
        body: Bytes,
    },
}

impl FakeStripe {
    /// Claims `key` for this request, or answers in its place: a replay of the stored
    /// answer, or the refusal Stripe gives for a key that is malformed, in flight, or used
    /// with other parameters.
    pub(super) fn claim_key(
        &self,
        api_key: &str,
        key: &str,
        endpoint: &str,
        params: &Form,
        fault: Option<ApiFault>,
        request_id: &str,
    ) -> ControlFlow<Response, Claim> {
        if key.is_empty() || key.len() > 255 {
            let body = error_body(
                "invalid_request_error",
                None,
                "Idempotency-Key must be 1 to 255 characters long.",
                None,
            );
            return ControlFlow::Break(stripe_response(StatusCode::BAD_REQUEST, &body, request_id, Some(key)));
        }
        let scope = IdempotencyScope {
            api_key: api_key.to_owned(),
            key: key.to_owned(),
        };
        let fingerprint = fingerprint(endpoint, params);
        let mut state = self.state();
        match state.idempotency.get(&scope) {
            None => {
                state.idempotency.insert(scope.clone(), IdempotencyEntry::InFlight);
                ControlFlow::Continue(Claim {
                    fake: self.clone(),
                    scope,
                    fingerprint,
                    settled: false,
                })
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
                ControlFlow::Break(stripe_response(StatusCode::CONFLICT, &body, request_id, Some(key)))
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
                ControlFlow::Break(stripe_response(StatusCode::BAD_REQUEST, &body, request_id, Some(key)))
            }
            Some(IdempotencyEntry::Done { status, body, .. }) => {
                let (status, body) = (*status, body.clone());
                drop(state);
                if fault == Some(ApiFault::DropResponseAfterCommit) {
                    return ControlFlow::Break(cut_connection(Some(body)));
                }
                let mut response = raw_response(status, body, request_id, Some(key));
                response
                    .headers_mut()
                    .insert("Idempotent-Replayed", HeaderValue::from_static("true"));
                ControlFlow::Break(response)
            }
        }
    }
}

/// A claimed idempotency key. It is settled under the state lock in the same step as the
/// operation it covers; one dropped unsettled belongs to a request that never finished (its
/// client went away mid-delay, or the handler was cancelled) and is released, so the key
/// does not stay locked forever.
pub(super) struct Claim {
    fake: FakeStripe,
    scope: IdempotencyScope,
    fingerprint: String,
    settled: bool,
}

impl Claim {
    /// Stores the answer under the key, or frees the key when Stripe would not keep the
    /// answer (`Outcome::store`).
    pub(super) fn settle(&mut self, state: &mut FakeState, outcome: &Outcome, body: &Bytes) {
        if outcome.store {
            state.idempotency.insert(
                self.scope.clone(),
                IdempotencyEntry::Done {
                    fingerprint: self.fingerprint.clone(),
                    status: outcome.status,
                    body: body.clone(),
                },
            );
        } else {
            state.idempotency.remove(&self.scope);
        }
        self.settled = true;
    }
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
