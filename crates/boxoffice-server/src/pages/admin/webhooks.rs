//! `GET /admin/webhooks`: received Stripe events, newest first.

use axum::extract::State;
use axum::response::Response;
use boxoffice_core::auth::Caller;
use boxoffice_core::webhooks::StoredStripeEvent;
use serde::Serialize;

use super::{LIST_ROWS, Layout, Session, When, truncate, when};
use crate::http::api_error::ApiError;
use crate::state::AppState;

#[derive(Serialize)]
struct WebhookView {
    id: String,
    event_type: String,
    status: &'static str,
    outcome: Option<String>,
    last_error: Option<String>,
    delivery_count: i64,
    attempts: i64,
    received_at: When,
    applied_at: Option<When>,
}

impl From<StoredStripeEvent> for WebhookView {
    fn from(event: StoredStripeEvent) -> Self {
        Self {
            id: event.id,
            event_type: event.event_type,
            status: event.status.as_str(),
            outcome: event.outcome,
            last_error: event.last_error,
            delivery_count: event.delivery_count,
            attempts: event.attempts,
            received_at: when(event.received_at),
            applied_at: event.applied_at.map(when),
        }
    }
}

#[derive(Serialize)]
struct WebhooksPage {
    #[serde(flatten)]
    layout: Layout,
    events: Vec<WebhookView>,
    more: bool,
}

/// `GET /admin/webhooks`: received webhook events, newest first.
pub(super) async fn webhook_events(State(state): State<AppState>, session: Session) -> Result<Response, ApiError> {
    let events = state
        .boxoffice
        .list_webhook_events(&Caller::Operator, LIST_ROWS + 1)
        .await?;
    let (events, more) = truncate(events, LIST_ROWS);
    let page = WebhooksPage {
        layout: session.layout("webhooks"),
        events: events.into_iter().map(Into::into).collect(),
        more,
    };
    Ok(state.pages.render("admin_webhooks.html", page))
}
