//! Request plumbing shared by every route, API and pages: assigning the request id, one log
//! line and metrics per request, failure recording, the answer to a panic, and the
//! per-address rate limit of public endpoints. Its answers are the API's JSON errors, which
//! the pages turn into error pages for browsers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::api_error::{ApiError, InternalError};
use boxoffice_core::failures::{Failure, Severity};

use crate::request_id::{REQUEST_ID, RequestId};
use crate::state::AppState;
use crate::telemetry;

/// Outermost layer: assigns the request id, times the request, logs it once, counts it,
/// and records 5xx answers with their internal cause.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let RequestId(request_id) = RequestId::of(request.headers());
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());

    let span = tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request(&method, &route, status.as_u16(), elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        let detail = response
            .extensions()
            .get::<InternalError>()
            .map_or("no detail recorded", |internal| internal.0.as_str());
        let mut failure = Failure::new(
            Severity::Error,
            "http",
            format!("{method} {route} answered {}: {detail}", status.as_u16()),
        )
        .in_request(request_id.clone());
        if let Some(PanicBacktrace(backtrace)) = response.extensions_mut().remove::<PanicBacktrace>() {
            failure = failure.with_backtrace(backtrace);
        }
        state.boxoffice.report_failure(failure);
        tracing::warn!(parent: &span, status = status.as_u16(), latency_ms, "request answered");
    } else {
        tracing::info!(parent: &span, status = status.as_u16(), latency_ms, "request answered");
    }
    response
}

/// A panic's backtrace, carried from [`panic_response`] to [`observe`], which records it.
#[derive(Clone)]
struct PanicBacktrace(String);

/// Answers a panic in a handler with a 500 body, carrying the panic's backtrace (captured
/// by the hook of [`telemetry::install_panic_hook`]); `observe` then records both.
pub fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let mut response =
        ApiError::internal(format!("panic: {}", super::api_error::panic_message(payload.as_ref()))).into_response();
    if let Some(backtrace) = telemetry::take_panic_backtrace() {
        response.extensions_mut().insert(PanicBacktrace(backtrace));
    }
    response
}

/// A token bucket per key (a client address; a Sentry project): `per_minute` tokens,
/// refilled continuously, so a client may burst up to the limit and then proceeds at the
/// limit's rate.
pub struct RateLimiter<K = IpAddr> {
    per_minute: u32,
    buckets: Mutex<HashMap<K, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Above this many tracked keys, full buckets (idle clients) are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    /// A limiter; `per_minute == 0` lets everything through.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; on refusal, the seconds until one is available.
    pub fn check(&self, key: K) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_TRACKED_ADDRESSES {
            buckets.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * per_second < capacity
            });
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Applies the rate limit to public routes, by the connecting address.
pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(address) = address
        && let Err(retry_after) = state.rate_limiter.check(address)
    {
        return ApiError::rate_limited(retry_after).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_the_limit_then_refuses_with_a_retry_delay() {
        let limiter = RateLimiter::new(3);
        let address = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..3 {
            assert_eq!(limiter.check(address), Ok(()));
        }
        assert_eq!(limiter.check(address), Err(20));
        // Another address has its own bucket.
        assert_eq!(limiter.check(IpAddr::from([127, 0, 0, 2])), Ok(()));
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::new(0);
        for _ in 0..10_000 {
            assert_eq!(limiter.check(IpAddr::from([127, 0, 0, 1])), Ok(()));
        }
    }
}
