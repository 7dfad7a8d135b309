//! Payment creation and orders (SPEC §5).
//!
//! The idempotency contract for integrators: send `Idempotency-Key` (1–255 visible ASCII,
//! bare or `"quoted"`) with every `POST /api/v1/reservations/{id}/payment-intent`. The same
//! key with the same request returns the stored answer with `Idempotent-Replayed: true`;
//! with another request, 422 `idempotency_key_reused`; while the first is in flight, 409
//! `idempotency_key_in_use` with `Retry-After`. A 502 `provider_unavailable` stores nothing:
//! retry with the same key and it resumes where it stopped, never charging twice.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use boxoffice_core::auth::SecretToken;
use boxoffice_core::failures::{Failure, Severity};
use boxoffice_core::idempotency::{self, IdempotencyKey};
use boxoffice_core::ids::{HoldId, OrderId};
use boxoffice_core::payments::Order;
use boxoffice_core::service::{self, PaymentAnswer, PaymentRequest};
use boxoffice_core::tickets::Ticket;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::api_error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::request_id::RequestId;
use crate::state::AppState;

/// The replay marker header.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

#[derive(Serialize, ToSchema)]
pub struct PaymentIntentResponse {
    pub order_id: String,
    pub payment_intent_id: String,
    /// For the buyer's browser: Stripe.js, or the test double's confirm endpoint.
    pub client_secret: String,
    /// Computed from the ticket types; a client-sent amount is ignored.
    pub amount_cents: i64,
    pub currency: String,
    /// The PaymentIntent's status when it was created (`requires_payment_method`).
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrderResponse {
    pub id: String,
    /// `pending`, `paid`, `failed`, `refunded` or `cancelled`.
    pub status: &'static str,
    pub amount_cents: i64,
    pub currency: String,
    pub reservation_id: String,
    pub payment_intent_id: Option<String>,
    /// One per seat once paid; void tickets (after a refund) are not listed.
    pub tickets: Vec<TicketResponse>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct TicketResponse {
    pub code: String,
    pub ticket_type_id: String,
}

impl OrderResponse {
    fn new(order: Order, tickets: Vec<Ticket>) -> Self {
        Self {
            id: order.id.to_string(),
            status: order.status.as_str(),
            amount_cents: order.amount.get(),
            currency: order.currency.to_string(),
            reservation_id: order.hold_id.to_string(),
            payment_intent_id: order.payment_intent_id,
            tickets: tickets
                .into_iter()
                .filter(|ticket| ticket.status == "valid")
                .map(|ticket| TicketResponse {
                    code: ticket.code,
                    ticket_type_id: ticket.ticket_type_id.to_string(),
                })
                .collect(),
            created_at: order.created_at.to_rfc3339(),
        }
    }
}

/// The request digest an idempotency key is bound to: method, path and the body as
/// canonical JSON (key order and whitespace do not matter; any other change does).
/// Public for the fuzz targets.
#[doc(hidden)]
pub fn fingerprint(path: &str, body: &Bytes) -> Result<String, ApiError> {
    let canonical = if body.iter().all(u8::is_ascii_whitespace) {
        "{}".to_owned()
    } else {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|err| ApiError::bad_request(format!("malformed JSON body: {err}")))?;
        if !value.is_object() {
            return Err(ApiError::unprocessable("the body must be a JSON object (or empty)"));
        }
        value.to_string()
    };
    let mut digest = Sha256::new();
    digest.update(b"POST\n");
    digest.update(path.as_bytes());
    digest.update(b"\n");
    digest.update(canonical.as_bytes());
    Ok(hex::encode(digest.finalize()))
}

/// Create the reservation's PaymentIntent, idempotently (see the module docs).
#[utoipa::path(post, path = "/api/v1/reservations/{reservation_id}/payment-intent", tag = "payments",
    request_body(content = Option<serde_json::Value>, description = "ignored: the amount comes from the ticket types; an empty body is fine"),
    params(
        ("reservation_id" = String, Path),
        ("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters, bare or quoted"),
    ),
    responses(
        (status = 201, body = PaymentIntentResponse, description = "created, or replayed with `Idempotent-Replayed: true`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "hold_expired, hold_completed or idempotency_key_in_use"),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 502, body = ErrorBody),
    ))]
pub async fn create_payment_intent(
    State(state): State<AppState>,
    request_id: Option<axum::Extension<RequestId>>,
    headers: HeaderMap,
    ApiPath(reservation_id): ApiPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // An authenticated caller gets its own key scope; a bad token is refused, not ignored.
    let caller = match headers.get(AUTHORIZATION) {
        None => None,
        Some(value) => {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| SecretToken::new(token.trim()))
                .ok_or_else(ApiError::unauthorized)?;
            Some(
                state
                    .boxoffice
                    .authenticate(&state.operator_token_hash, &token)
                    .await?
                    .ok_or_else(ApiError::unauthorized)?,
            )
        }
    };
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| ApiError::bad_request("the Idempotency-Key header is required"))?;
    let key = IdempotencyKey::parse(key.as_bytes()).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let hold_id = HoldId::parse(&reservation_id).map_err(|_| ApiError::not_found("reservation"))?;
    let request = PaymentRequest {
        scope: idempotency::scope_of(caller.as_ref()),
        fingerprint: fingerprint(&format!("/api/v1/reservations/{hold_id}/payment-intent"), &body)?,
        key,
        hold_id,
    };
    let answer = match state.boxoffice.create_payment_intent(request).await {
        Ok(answer) => answer,
        Err(err) => {
            let outcome = match &err {
                service::Error::KeyInUse { .. } => "in_use",
                service::Error::KeyReused => "key_reused",
                service::Error::ProviderUnavailable(message) => {
                    let mut failure = Failure::new(
                        Severity::Error,
                        "payments",
                        format!("the payment provider failed: {message}"),
                    );
                    if let Some(axum::Extension(RequestId(id))) = &request_id {
                        failure = failure.in_request(id.clone());
                    }
                    state.boxoffice.report_failure(failure);
                    "provider_unavailable"
                }
                _ => "rejected",
            };
            state.metrics.payment_request(outcome);
            return Err(err.into());
        }
    };
    let (stored, replayed) = match answer {
        PaymentAnswer::Fresh(stored) => (stored, false),
        PaymentAnswer::Replayed(stored) => (stored, true),
    };
    state.metrics.payment_request(match (replayed, stored.status) {
        (true, _) => "replayed",
        (false, 201) => "created",
        (false, _) => "rejected",
    });
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, stored.body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Read an order (public: its id is unguessable).
#[utoipa::path(get, path = "/api/v1/orders/{order_id}", tag = "payments",
    params(("order_id" = String, Path)),
    responses((status = 200, body = OrderResponse), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    ApiPath(order_id): ApiPath<String>,
) -> Result<Json<OrderResponse>, ApiError> {
    let id = OrderId::parse(&order_id).map_err(|_| ApiError::not_found("order"))?;
    let order = state.boxoffice.get_order(&id).await?;
    let tickets = state.boxoffice.order_tickets(&id).await?;
    Ok(Json(OrderResponse::new(order, tickets)))
}
