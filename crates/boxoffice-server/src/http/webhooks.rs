//! `POST /webhooks/stripe` (SPEC §6) and the admin listing of received events.
//!
//! Order of operations, which is the guarantee: verify the signature over the raw body
//! (nothing is stored for a bad one), store the event durably, and only then answer 2xx.
//! Applying it happens right after storing; if that fails, the event is safe and the
//! webhook worker applies it later, so the delivery is still acknowledged.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use boxoffice_core::service::WebhookResult;
use boxoffice_core::webhooks::{StoredStripeEvent, StripeEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_error::{ApiError, ErrorBody};
use super::auth::Authenticated;
use super::extract::{ApiQuery, parse_limit};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct WebhookReceived {
    pub received: bool,
    /// `applied`, `ignored`, `duplicate`, `refunded` (a late payment) or `deferred`
    /// (stored; the worker applies it).
    pub outcome: &'static str,
}

fn seconds_since_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Receive a Stripe webhook.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "webhooks",
    request_body(content = String, description = "the event, exactly as Stripe signed it"),
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=…")),
    responses(
        (status = 200, body = WebhookReceived),
        (status = 400, body = ErrorBody, description = "invalid_signature (nothing stored) or not an event"),
        (status = 503, body = ErrorBody, description = "could not store it; Stripe retries"),
    ))]
pub async fn receive_stripe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceived>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    // The signature check reads wall-clock time: Stripe's timestamps are real time.
    if let Err(err) = boxoffice_stripe::webhook::verify(&body, signature, &state.webhook_secrets, seconds_since_epoch())
    {
        state.metrics.webhook("invalid_signature");
        return Err(ApiError::invalid_signature(err.to_string()));
    }
    let event = StripeEvent::parse(&body).map_err(|err| ApiError::bad_request(err.to_string()))?;
    state.metrics.webhook("received");
    let outcome = match state.boxoffice.receive_webhook(event).await? {
        WebhookResult::Duplicate => "duplicate",
        WebhookResult::Applied(_) => "applied",
        WebhookResult::Ignored(_) => "ignored",
        WebhookResult::LateRefund { .. } => "refunded",
        WebhookResult::Failed(_) => "deferred",
    };
    state.metrics.webhook(outcome);
    Ok(Json(WebhookReceived {
        received: true,
        outcome,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEventResponse {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `pending`, `applied`, `ignored` or `failed`.
    pub status: &'static str,
    /// What applying it did, or why it was ignored.
    pub outcome: Option<String>,
    pub last_error: Option<String>,
    /// Deliveries received; 0 when only the reconciliation job found it.
    pub delivery_count: i64,
    pub attempts: i64,
    pub received_at: String,
    pub applied_at: Option<String>,
}

impl From<StoredStripeEvent> for WebhookEventResponse {
    fn from(event: StoredStripeEvent) -> Self {
        Self {
            id: event.id,
            event_type: event.event_type,
            status: event.status.as_str(),
            outcome: event.outcome,
            last_error: event.last_error,
            delivery_count: event.delivery_count,
            attempts: event.attempts,
            received_at: event.received_at.to_rfc3339(),
            applied_at: event.applied_at.map(|at| at.to_rfc3339()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEventList {
    pub data: Vec<WebhookEventResponse>,
    pub has_more: bool,
}

#[derive(Deserialize, IntoParams)]
pub struct WebhookEventsParams {
    /// 1 to 500; default 20.
    pub limit: Option<i64>,
}

/// Received webhook events, newest first (operator).
#[utoipa::path(get, path = "/api/v1/admin/webhooks/events", tag = "admin",
    params(WebhookEventsParams),
    security(("bearer" = [])),
    responses((status = 200, body = WebhookEventList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(params): ApiQuery<WebhookEventsParams>,
) -> Result<Json<WebhookEventList>, ApiError> {
    let limit = parse_limit(params.limit)?;
    let mut events = state.boxoffice.list_webhook_events(&caller, limit + 1).await?;
    let has_more = events.len() > limit as usize;
    events.truncate(limit as usize);
    Ok(Json(WebhookEventList {
        data: events.into_iter().map(Into::into).collect(),
        has_more,
    }))
}
