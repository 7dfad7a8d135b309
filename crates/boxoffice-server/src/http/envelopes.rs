//! Sentry-compatible ingestion (SPEC §7): `POST /api/{project_id}/envelope/`, so the
//! official Sentry SDKs report to boxoffice through an organization's `error_dsn`.
//!
//! Order of checks, cheapest first, so hostile traffic costs little: the project id, the
//! key from the header or query (when there is one), the project's rate limit, then the
//! body — decoded under a hard output limit (a decompression bomb stops just past it) —
//! and the envelope. Only `event` items are stored; every other item type (sessions,
//! transactions, attachments, client reports, …) is accepted and dropped, as the SDKs
//! expect. The answer is 200 `{"id"}` only once every event is stored or spooled.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use boxoffice_core::error_store::reports::ErrorProject;
use boxoffice_core::error_store::sentry_event::prepare_sentry_event;
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::api_error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use super::middleware::RateLimiter;
use crate::sentry::{DecodeError, EnvelopeError, EnvelopeLimits, decode_body, parse_dsn, parse_envelope, sentry_key};
use crate::state::AppState;

/// The largest request body read, before decoding. Decoded envelopes are bounded by
/// [`EnvelopeLimits::max_total_bytes`]; a compressed body is never larger than that.
pub const MAX_ENVELOPE_BODY_BYTES: usize = 20 * 1024 * 1024;

/// The header naming which categories are limited and for how long (Sentry's format:
/// `retry_after:categories:scope`; empty categories mean all).
const SENTRY_RATE_LIMITS: &str = "x-sentry-rate-limits";

#[derive(Serialize, ToSchema)]
pub struct EnvelopeAccepted {
    /// The event id (32 hex digits): the envelope's, or one given to it.
    pub id: String,
}

/// The error projects, by numeric id, cached: a project never changes once created, and
/// an SDK sends to one project again and again.
#[derive(Default)]
pub struct ProjectCache {
    projects: RwLock<HashMap<i64, ErrorProject>>,
}

/// Above this many cached projects the cache starts over (it refills from the database).
const MAX_CACHED_PROJECTS: usize = 100_000;

impl ProjectCache {
    async fn find(&self, state: &AppState, project_id: i64) -> Result<Option<ErrorProject>, ApiError> {
        if let Some(project) = self
            .projects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&project_id)
        {
            return Ok(Some(project.clone()));
        }
        let found = state.boxoffice.find_error_project(project_id).await?;
        if let Some(project) = &found {
            let mut projects = self.projects.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            if projects.len() >= MAX_CACHED_PROJECTS {
                projects.clear();
            }
            projects.insert(project_id, project.clone());
        }
        Ok(found)
    }
}

/// Per-project rate limits of envelope ingestion.
pub type ProjectRateLimiter = RateLimiter<i64>;

fn key_matches(project: &ErrorProject, key: &str) -> bool {
    project.public_key.as_bytes().ct_eq(key.as_bytes()).into()
}

fn wrong_key(state: &AppState) -> ApiError {
    state.metrics.errors_dropped("unauthorized", 1);
    ApiError::unauthorized_with("the Sentry key does not belong to this project")
}

impl From<DecodeError> for ApiError {
    fn from(err: DecodeError) -> Self {
        match err {
            DecodeError::TooLarge { .. } => ApiError::payload_too_large(),
            DecodeError::UnsupportedEncoding(_) => {
                ApiError::invalid(axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, err.to_string())
            }
            DecodeError::Corrupt { .. } => ApiError::bad_request(err.to_string()),
        }
    }
}

impl From<EnvelopeError> for ApiError {
    fn from(err: EnvelopeError) -> Self {
        match err {
            EnvelopeError::TooLarge(_) => ApiError::payload_too_large(),
            EnvelopeError::Malformed(message) => ApiError::bad_request(message),
        }
    }
}

/// Receive a Sentry envelope (the official SDKs' format). Authenticated by the project's
/// public key: `X-Sentry-Auth: Sentry sentry_key=…`, `?sentry_key=…`, or the envelope
/// header's `dsn`.
#[utoipa::path(post, path = "/api/{project_id}/envelope/", tag = "errors",
    params(("project_id" = String, Path, description = "the numeric project id of the DSN")),
    request_body(content = String, description = "a Sentry envelope, optionally gzip, deflate or br encoded", content_type = "application/x-sentry-envelope"),
    responses(
        (status = 200, body = EnvelopeAccepted),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn ingest(
    State(state): State<AppState>,
    ApiPath(project_id): ApiPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let refuse = |reason: &str| state.metrics.errors_dropped(reason, 1);
    let project_id: i64 = match project_id.parse() {
        Ok(id) if id > 0 => id,
        _ => {
            refuse("invalid");
            return Err(ApiError::not_found("project"));
        }
    };
    let Some(project) = state.ingestion.projects.find(&state, project_id).await? else {
        refuse("unauthorized");
        return Err(ApiError::not_found("project"));
    };
    let auth_header = headers
        .get("x-sentry-auth")
        .or_else(|| headers.get(header::AUTHORIZATION))
        .and_then(|value| value.to_str().ok());
    let request_key = sentry_key(auth_header, query.as_deref());
    if let Some(key) = &request_key
        && !key_matches(&project, key)
    {
        return Err(wrong_key(&state));
    }
    // Only authenticated requests count against the project's limit: otherwise anyone
    // could silence a project by sending key-less envelopes to its (guessable) id.
    if request_key.is_some()
        && let Err(retry_after) = state.ingestion.limiter.check(project_id)
    {
        refuse("rate_limited");
        return Ok(rate_limited(retry_after));
    }
    let body = body.map_err(|rejection| {
        refuse("too_large");
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large()
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    let limits = EnvelopeLimits::default();
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok());
    let decoded = decode_body(encoding, &body, limits.max_total_bytes).inspect_err(|err| {
        refuse(if matches!(err, DecodeError::TooLarge { .. }) {
            "too_large"
        } else {
            "invalid"
        });
    })?;
    let envelope = parse_envelope(&decoded, &limits).inspect_err(|err| {
        refuse(if matches!(err, EnvelopeError::TooLarge(_)) {
            "too_large"
        } else {
            "invalid"
        });
    })?;
    if request_key.is_none() {
        // No key in the request: the envelope header's DSN may carry it (Sentry accepts it).
        let from_dsn = envelope.header.dsn.as_deref().and_then(parse_dsn);
        match from_dsn {
            Some(dsn)
                if i64::try_from(dsn.project_id).ok() == Some(project_id) && key_matches(&project, &dsn.public_key) =>
            {
                if let Err(retry_after) = state.ingestion.limiter.check(project_id) {
                    refuse("rate_limited");
                    return Ok(rate_limited(retry_after));
                }
            }
            Some(_) => return Err(wrong_key(&state)),
            None => {
                refuse("unauthorized");
                return Err(ApiError::unauthorized_with(
                    "a Sentry key is required (X-Sentry-Auth, ?sentry_key= or the envelope's dsn)",
                ));
            }
        }
    }
    let events = envelope.events().inspect_err(|_| refuse("invalid"))?;
    for item in envelope.items.iter().filter(|item| !item.is_event()) {
        state.metrics.envelope_item_dropped(item.type_label());
    }
    let mut answer_id = envelope.header.event_id.clone();
    let now = state.boxoffice.now();
    let mut reports = Vec::with_capacity(events.len());
    for event in events {
        let id = event.event_id.unwrap_or_else(boxoffice_core::ids::random_hex);
        answer_id.get_or_insert_with(|| id.clone());
        reports.push(prepare_sentry_event(project.scope(), id, event.payload, now));
    }
    state.metrics.errors_received("envelope", reports.len() as u64);
    for report in reports {
        state.errors.submit(report).await?;
    }
    let id = answer_id.unwrap_or_else(boxoffice_core::ids::random_hex);
    Ok(Json(EnvelopeAccepted { id }).into_response())
}

/// 429 with `Retry-After` and Sentry's `X-Sentry-Rate-Limits`, which the SDKs honour.
fn rate_limited(retry_after: u64) -> Response {
    let mut response = ApiError::rate_limited_with(
        retry_after,
        "this project sends more events than its limit; retry later",
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("{retry_after}::project")) {
        response.headers_mut().insert(SENTRY_RATE_LIMITS, value);
    }
    response
}

/// The CORS policy of the ingestion route: open to any origin (browser SDKs run on the
/// organizers' own sites), POST only, with the Sentry headers allowed and exposed.
pub fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowHeaders, Any, CorsLayer};
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::list([
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            HeaderName::from_static("x-sentry-auth"),
            HeaderName::from_static("baggage"),
            HeaderName::from_static("sentry-trace"),
        ]))
        .expose_headers([
            HeaderName::from_static(SENTRY_RATE_LIMITS),
            HeaderName::from_static("x-sentry-error"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Shared pieces for [`AppState`].
pub struct Ingestion {
    /// The project cache.
    pub projects: ProjectCache,
    /// Per-project limits.
    pub limiter: ProjectRateLimiter,
}

impl Ingestion {
    /// Ingestion with `per_minute` events per project per minute (0: no limit).
    pub fn new(per_minute: u32) -> Arc<Self> {
        Arc::new(Self {
            projects: ProjectCache::default(),
            limiter: RateLimiter::new(per_minute),
        })
    }
}
