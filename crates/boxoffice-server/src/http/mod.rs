//! The JSON API: its routes, one module per resource, and the request plumbing every
//! route passes through (errors, extractors, middleware). The pages build on this plumbing;
//! nothing here knows about the pages (`crate::app` puts the two side by side).

pub mod admin;
pub mod api_error;
pub mod auth;
pub mod emails;
pub mod envelopes;
pub mod error_store;
pub mod events;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod openapi;
pub mod organizations;
pub mod payments;
pub mod reservations;
pub mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::faults::InjectFaults;
use crate::state::AppState;

/// The largest request body accepted, in bytes. JSON bodies of this API are tiny; the
/// limit is generous for them and keeps a hostile client from making us buffer much.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The routes of the JSON API (the fallbacks and the layers around every request are
/// added by `crate::app`).
pub fn router(state: AppState) -> Router<AppState> {
    // Public buyer endpoints: no auth, rate-limited per client address.
    let public = Router::new()
        .route("/api/v1/events", get(events::list))
        .route("/api/v1/events/{event_id}", get(events::get))
        .route("/api/v1/reservations", post(reservations::create))
        .route(
            "/api/v1/reservations/{reservation_id}/payment-intent",
            post(payments::create_payment_intent),
        )
        .route("/api/v1/orders/{order_id}", get(payments::get_order))
        .route(
            "/api/v1/reservations/{reservation_id}",
            get(reservations::get).delete(reservations::cancel),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::rate_limit,
        ));

    let authenticated = Router::new()
        .route("/api/v1/organizations", post(organizations::create))
        .route("/api/v1/organizations/{org_id}", get(organizations::get))
        .route(
            "/api/v1/organizations/{org_id}/api-keys",
            post(organizations::create_api_key),
        )
        .route("/api/v1/events", post(events::create))
        .route(
            "/api/v1/events/{event_id}/ticket-types",
            post(events::create_ticket_type),
        )
        .route(
            "/api/v1/ticket-types/{ticket_type_id}",
            patch(events::update_ticket_type),
        )
        .route("/api/v1/admin/stats/reservations", get(admin::reservation_stats))
        .route("/api/v1/admin/jobs/runs", get(admin::job_runs))
        .route("/api/v1/admin/webhooks/events", get(webhooks::list_events))
        .route("/api/v1/errors", post(error_store::report))
        .route("/api/v1/admin/errors", get(error_store::list_groups))
        .route("/api/v1/admin/errors/{group_id}", get(error_store::get_group))
        .route(
            "/api/v1/admin/errors/{group_id}/resolve",
            post(error_store::resolve_group),
        )
        .route("/api/v1/admin/jobs/{job}/run", post(admin::run_job))
        .route("/api/v1/admin/emails", get(emails::list))
        .route("/api/v1/admin/emails/{email_id}/retry", post(emails::retry));

    // Sentry ingestion: open to browsers on any origin, limited per project (not per
    // address: many browsers share a project), with a body limit of its own.
    let ingestion = Router::new()
        // OPTIONS is routed explicitly so the CORS layer answers preflights: the router's
        // method-not-allowed fallback (set in `crate::app`) would otherwise answer them 405.
        .route(
            "/api/{project_id}/envelope/",
            post(envelopes::ingest).options(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .layer(DefaultBodyLimit::max(envelopes::MAX_ENVELOPE_BODY_BYTES))
        .layer(envelopes::cors());

    let operations = Router::new()
        // Not rate-limited: Stripe delivers in bursts, and the signature is the gate.
        .route("/webhooks/stripe", post(webhooks::receive_stripe))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/api/openapi.json", get(openapi::serve));

    Router::new()
        .merge(public)
        .merge(authenticated)
        .merge(operations)
        .merge(ingestion)
}

/// Wraps the whole application, API and pages, in what every request passes through,
/// from the inside out: the body limit, fault injection, the answer to a panic, and
/// observation (request id, one log line, metrics, failure records) outermost.
pub fn with_request_layers(app: Router<AppState>, state: AppState) -> Router {
    app.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .inject_faults()
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::observe))
        .with_state(state)
}
