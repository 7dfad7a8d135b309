//! The HTTP API: the router, the state handlers share, and one module per resource.

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

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};
use boxoffice_core::BoxOffice;
use boxoffice_core::auth::TokenHash;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error_store::ErrorPipeline;
use crate::faults::InjectFaults;
use crate::metrics::Metrics;
use api_error::ApiError;
use middleware::RateLimiter;

/// The largest request body accepted, in bytes. JSON bodies of this API are tiny; the
/// limit is generous for them and keeps a hostile client from making us buffer much.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub boxoffice: BoxOffice,
    /// The operator token's hash.
    pub operator_token_hash: TokenHash,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The public endpoints' per-address limit.
    pub rate_limiter: Arc<RateLimiter>,
    /// Webhook signing secrets; any one may sign (rotation).
    pub webhook_secrets: Arc<Vec<String>>,
    /// Where error reports go (batched, spooled while the database is down).
    pub errors: ErrorPipeline,
    /// Sentry envelope ingestion: the project cache and per-project limits.
    pub ingestion: Arc<envelopes::Ingestion>,
    /// The address this server is reached at when a request does not say (DSNs).
    pub public_host: Arc<str>,
    /// The page templates.
    pub pages: Arc<crate::pages::Pages>,
    /// The Stripe client (checkout pages confirm test-card payments through it).
    pub stripe: boxoffice_stripe::StripeClient,
    /// Whether Stripe is in test mode (the built-in double, or an `sk_test_` key): the
    /// checkout page then takes test card numbers.
    pub stripe_test_mode: bool,
    /// Signs the dashboard's session cookies and CSRF tokens: the random key stored in the
    /// database (shared by all instances) bound to the operator token, so changing the
    /// token ends every session.
    pub session_key: Arc<[u8; 32]>,
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
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
        // method-not-allowed fallback (set below) would otherwise answer them 405.
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

    // Browser error reports from boxoffice's own pages: public, so rate-limited per
    // address, with a small body limit.
    let browser_errors = Router::new()
        .route("/_errors/browser", post(crate::pages::browser_errors::report))
        .layer(DefaultBodyLimit::max(
            crate::pages::browser_errors::MAX_BROWSER_REPORT_BYTES,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::rate_limit,
        ));

    Router::new()
        .merge(public)
        .merge(authenticated)
        .merge(operations)
        .merge(ingestion)
        .merge(browser_errors)
        .merge(crate::pages::router(state.clone()))
        .fallback(|| async { ApiError::not_found("route").into_response() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .inject_faults()
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::pages::html_errors,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::observe))
        .with_state(state)
}
