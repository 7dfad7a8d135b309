//! `POST /_errors/browser`: JavaScript errors on boxoffice's own pages, reported by
//! `static/report-errors.js`. They are boxoffice's own errors (its pages failing in a
//! buyer's browser), so they go to the `server` scope, component `browser`, through the
//! same pipeline as everything else: scrubbed, grouped, alerted on.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_core::auth::Caller;
use boxoffice_core::failures::Severity;
use boxoffice_core::service::ErrorInput;
use serde::Deserialize;

use crate::http::api_error::ApiError;
use crate::http::extract::ApiJson;
use crate::request_id::RequestId;
use crate::state::AppState;

/// The largest report body accepted (the script cuts message and stack well below).
pub const MAX_BROWSER_REPORT_BYTES: usize = 16 * 1024;

/// What the page script sends.
#[derive(Deserialize)]
pub struct BrowserError {
    /// `error` or `unhandledrejection`.
    pub kind: Option<String>,
    pub message: String,
    pub stack: Option<String>,
    /// The page's path.
    pub url: Option<String>,
}

/// Records a browser error; 202 once stored or spooled.
pub async fn report(
    State(state): State<AppState>,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<BrowserError>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let input = ErrorInput {
        severity: Some(Severity::Error),
        message: body.message,
        stack_trace: body.stack,
        component: Some("browser".to_owned()),
        context: Some(serde_json::json!({ "kind": body.kind, "page": body.url })),
        fingerprint: None,
        request_id: request_id.map(|axum::Extension(RequestId(id))| id),
    };
    let report = state.boxoffice.prepare_error(&Caller::Operator, input)?;
    let id = report.event_id.clone();
    state.metrics.errors_received("browser", 1);
    state.errors.submit(report).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))))
}
