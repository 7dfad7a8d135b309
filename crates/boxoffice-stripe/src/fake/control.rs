//! The `/_control/...` endpoints, the double's test interface: arm faults, clear them, and
//! list webhook delivery attempts. They need no API key and answer in their own small
//! shapes, not Stripe's, since no Stripe client ever calls them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::FakeStripe;
use super::faults::Faults;

/// The body of `POST /_control/faults`.
#[derive(Debug, Deserialize)]
pub(super) struct FaultRequest {
    fault: String,
    count: u32,
    delay_ms: Option<u64>,
}

/// Arms a fault; answers with every fault's remaining count.
pub(super) async fn set_fault(State(fake): State<FakeStripe>, Json(request): Json<FaultRequest>) -> Response {
    let mut state = fake.state();
    if let Err(message) = state.faults.arm(&request.fault, request.count, request.delay_ms) {
        return control_error(&message);
    }
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
pub(super) async fn reset(State(fake): State<FakeStripe>) -> Response {
    let mut state = fake.state();
    state.faults = Faults::default();
    fake.release_held(&mut state);
    Json(json!({ "faults": state.faults })).into_response()
}

/// Every delivery attempt so far, and how many deliveries `reorder_webhooks` holds back.
pub(super) async fn list_deliveries(State(fake): State<FakeStripe>) -> Response {
    let held = fake.state().held.len();
    Json(json!({ "attempts": fake.delivery_attempts(), "held": held })).into_response()
}
