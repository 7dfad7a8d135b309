//! The operator's view of the buyer e-mail outbox (SPEC §9): messages with every attempt
//! to send them, and retrying one that was given up. Organization keys get 404, as on the
//! other admin routes.

use axum::Json;
use axum::extract::State;
use boxoffice_core::ids::EmailId;
use boxoffice_core::mail::{EmailAttempt, EmailStatus, QueuedEmail};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_error::{ApiError, ErrorBody};
use super::auth::Authenticated;
use super::extract::{ApiPath, ApiQuery, parse_limit};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct EmailAttemptResponse {
    pub attempted_at: String,
    /// `sent` or `failed`.
    pub outcome: String,
    /// What the mail server answered (`250 …`), or why the attempt failed.
    pub reply: String,
}

impl From<EmailAttempt> for EmailAttemptResponse {
    fn from(attempt: EmailAttempt) -> Self {
        Self {
            attempted_at: attempt.attempted_at.to_rfc3339(),
            outcome: attempt.outcome,
            reply: attempt.reply,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EmailResponse {
    pub id: String,
    pub order_id: String,
    /// `confirmation` (a paid order's tickets) or `refund`.
    pub kind: &'static str,
    pub recipient: String,
    /// `queued`, `sent` or `failed` (given up; may be retried).
    pub status: &'static str,
    /// Attempts made so far.
    pub attempts: i64,
    /// While queued: when the next attempt is due.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// Every attempt, as recorded (in the listing; not in the answer to a retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_history: Option<Vec<EmailAttemptResponse>>,
}

impl EmailResponse {
    fn new(email: QueuedEmail, history: Option<Vec<EmailAttempt>>) -> Self {
        Self {
            id: email.id.to_string(),
            order_id: email.order_id.to_string(),
            kind: email.kind.as_str(),
            recipient: email.recipient,
            status: email.status.as_str(),
            attempts: email.attempts,
            next_attempt_at: (email.status == EmailStatus::Queued).then(|| email.next_attempt_at.to_rfc3339()),
            last_error: email.last_error,
            created_at: email.created_at.to_rfc3339(),
            sent_at: email.sent_at.map(|at| at.to_rfc3339()),
            attempt_history: history.map(|attempts| attempts.into_iter().map(Into::into).collect()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EmailList {
    pub data: Vec<EmailResponse>,
    pub has_more: bool,
}

#[derive(Deserialize, IntoParams)]
pub struct EmailsParams {
    /// Only messages with this status: `queued`, `sent` or `failed`.
    pub status: Option<String>,
    /// 1 to 500; default 20.
    pub limit: Option<i64>,
}

/// Buyer e-mail in the outbox, newest first, with every attempt (operator).
#[utoipa::path(get, path = "/api/v1/admin/emails", tag = "admin",
    params(EmailsParams),
    security(("bearer" = [])),
    responses((status = 200, body = EmailList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(params): ApiQuery<EmailsParams>,
) -> Result<Json<EmailList>, ApiError> {
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            EmailStatus::parse(raw)
                .ok_or_else(|| ApiError::bad_request("status must be one of queued, sent, failed"))?,
        ),
    };
    let limit = parse_limit(params.limit)?;
    // One more than asked tells whether more exist.
    let mut emails = state.boxoffice.list_emails(&caller, status, limit + 1).await?;
    let has_more = emails.len() > limit as usize;
    emails.truncate(limit as usize);
    Ok(Json(EmailList {
        data: emails
            .into_iter()
            .map(|(email, attempts)| EmailResponse::new(email, Some(attempts)))
            .collect(),
        has_more,
    }))
}

/// Queue a failed message again, due now (operator); the sender job makes the attempt.
/// A sent message is answered unchanged: it is never sent twice.
#[utoipa::path(post, path = "/api/v1/admin/emails/{email_id}/retry", tag = "admin",
    params(("email_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = EmailResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(email_id): ApiPath<String>,
) -> Result<Json<EmailResponse>, ApiError> {
    // Operator first: an organization key learns nothing, not even whether an id is well formed.
    boxoffice_core::service::require_operator(&caller)?;
    let id = EmailId::parse(&email_id).map_err(|_| ApiError::not_found("email"))?;
    let email = state.boxoffice.retry_email(&caller, &id).await?;
    Ok(Json(EmailResponse::new(email, None)))
}
