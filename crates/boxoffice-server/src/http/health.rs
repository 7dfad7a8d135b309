//! Liveness, readiness and metrics for orchestrators and Prometheus.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;
use boxoffice_core::service::error_chain;

use super::api_error::{ApiError, ErrorBody};

#[derive(Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = HealthResponse)))]
pub async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok" })
}

/// How long `/readyz` waits for the database. Without a bound, a database that stops
/// answering without closing connections kept the probe waiting for the pool's acquire
/// timeout (10 s), longer than orchestrators wait for a probe: the outage showed late.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The database answers (within two seconds).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = HealthResponse), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiError> {
    // Any failure to reach the database means "not ready", whatever its kind.
    match tokio::time::timeout(READY_TIMEOUT, state.boxoffice.store().ping()).await {
        Ok(Ok(())) => Ok(Json(HealthResponse { status: "ready" })),
        Ok(Err(err)) => Err(ApiError::unavailable(error_chain(&err))),
        Err(_) => Err(ApiError::unavailable(format!(
            "the database did not answer within {} s",
            READY_TIMEOUT.as_secs()
        ))),
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "application/openmetrics-text", description = "Prometheus/OpenMetrics text")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
