//! The one error type of the HTTP layer. Every failure, ours or axum's, leaves as
//! `{"error": {"code", "message"}}` with a stable code (SPEC §2). Internal details never
//! reach the client; they travel in a response extension to the request middleware,
//! which logs and records them once.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_core::StoreError;
use boxoffice_core::service::{self, error_chain};
use serde::Serialize;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_seconds: Option<u64>,
    internal: Option<String>,
}

/// The internal description of a 5xx, for the request middleware to log once.
#[derive(Debug, Clone)]
pub struct InternalError(pub String);

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`invalid_request`, `not_found`, `sold_out`, …).
    pub code: &'static str,
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_seconds: None,
            internal: None,
        }
    }

    /// 400 or 422 `invalid_request`.
    pub fn invalid(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "invalid_request", message)
    }

    /// 422 `invalid_request`: well-formed, but breaks a rule.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::invalid(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 400 `invalid_request`: malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::invalid(StatusCode::BAD_REQUEST, message)
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    /// 401 `unauthorized` with a specific message (the Sentry key, not a bearer token).
    pub fn unauthorized_with(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 400 `invalid_signature`: a webhook whose signature does not verify.
    pub fn invalid_signature(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            format!("invalid Stripe-Signature: {}", detail.into()),
        )
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    }

    /// 429 `rate_limited`.
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this address; retry later",
        );
        err.retry_after_seconds = Some(retry_after_seconds);
        err
    }

    /// 429 `rate_limited` with a specific message.
    pub fn rate_limited_with(retry_after_seconds: u64, message: impl Into<String>) -> Self {
        let mut err = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        err.retry_after_seconds = Some(retry_after_seconds);
        err
    }

    /// 405 for a known path with another method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "this method is not allowed on this path",
        )
    }

    /// 500 `internal`; `detail` is logged, never shown.
    pub fn internal(detail: impl Into<String>) -> Self {
        let mut err = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been recorded (see the x-request-id header)",
        );
        err.internal = Some(detail.into());
        err
    }

    /// 503 `internal` with `Retry-After`: the database cannot be reached.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "internal",
            "the service is temporarily unavailable; retry shortly",
        );
        err.retry_after_seconds = Some(1);
        err.internal = Some(detail.into());
        err
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body was not read to its end, so the connection cannot carry another
            // request: say so, or a client that pools connections reuses a dead one.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(detail) = self.internal {
            response.extensions_mut().insert(InternalError(detail));
        }
        response
    }
}

impl From<service::Error> for ApiError {
    fn from(err: service::Error) -> Self {
        match err {
            service::Error::Invalid(message) => ApiError::unprocessable(message),
            service::Error::NotFound(what) => ApiError::not_found(what),
            service::Error::SoldOut(name) => {
                ApiError::new(StatusCode::CONFLICT, "sold_out", format!("{name} is sold out"))
            }
            service::Error::HoldCompleted => ApiError::new(
                StatusCode::CONFLICT,
                "hold_completed",
                "the reservation is paid and can no longer be cancelled",
            ),
            service::Error::KeyInUse { retry_after_seconds } => {
                let mut err = ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is still being processed; retry later",
                );
                err.retry_after_seconds = Some(retry_after_seconds);
                err
            }
            service::Error::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            ),
            service::Error::ProviderUnavailable(detail) => {
                let mut err = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_unavailable",
                    "the payment provider did not answer; retry with the same Idempotency-Key",
                );
                err.retry_after_seconds = Some(1);
                err.internal = Some(detail);
                err
            }
            service::Error::Store(store) => ApiError::from(store),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::Unavailable(_) => ApiError::unavailable(error_chain(&err)),
            StoreError::NotFound(_)
            | StoreError::SoldOut { .. }
            | StoreError::HoldCompleted
            | StoreError::CapacityBelowCommitted { .. } => ApiError::from(service::Error::from(err)),
            StoreError::Other(_) => ApiError::internal(error_chain(&err)),
        }
    }
}

impl From<crate::error_store::Refused> for ApiError {
    fn from(refused: crate::error_store::Refused) -> Self {
        ApiError::unavailable(refused.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => ApiError::unprocessable(format!("invalid body: {}", err.body_text())),
            JsonRejection::JsonSyntaxError(err) => {
                ApiError::bad_request(format!("malformed JSON: {}", err.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::invalid(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON with Content-Type: application/json",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(format!("invalid query string: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
    }
}

/// Describes a panic payload for the log.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}
