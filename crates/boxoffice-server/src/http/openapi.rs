//! The OpenAPI 3.1 description, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, emails, error_store, events, health, organizations, payments, reservations, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Ticket sales: holds that expire exactly, idempotent payments, exactly-once webhooks."),
    paths(
        organizations::create, organizations::get, organizations::create_api_key,
        events::create, events::list, events::get, events::create_ticket_type, events::update_ticket_type,
        reservations::create, reservations::get, reservations::cancel,
        payments::create_payment_intent, payments::get_order,
        admin::reservation_stats, admin::job_runs, admin::run_job,
        webhooks::receive_stripe, webhooks::list_events,
        error_store::report, error_store::list_groups, error_store::get_group, error_store::resolve_group,
        emails::list, emails::retry,
        health::healthz, health::readyz, health::metrics,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
