//! The state every handler can reach, API and pages alike.
//!
//! It lives beside `http` and `pages` rather than in either, so that both point to it and
//! neither points to the other for it. It only gathers what startup built: the use cases,
//! the per-process helpers (metrics, rate limits, ingestion caches, templates) and the
//! secrets the handlers check against.

use std::sync::Arc;

use boxoffice_core::BoxOffice;
use boxoffice_core::auth::TokenHash;

use crate::error_store::ErrorPipeline;
use crate::http::envelopes::Ingestion;
use crate::http::middleware::RateLimiter;
use crate::metrics::Metrics;
use crate::pages::Pages;
use crate::pages::admin::session::SessionKeys;

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
    pub ingestion: Arc<Ingestion>,
    /// The address this server is reached at when a request does not say (DSNs).
    pub public_host: Arc<str>,
    /// The page templates.
    pub pages: Arc<Pages>,
    /// The Stripe client (checkout pages confirm test-card payments through it).
    pub stripe: boxoffice_stripe::StripeClient,
    /// Whether Stripe is in test mode (the built-in double, or an `sk_test_` key): the
    /// checkout page then takes test card numbers.
    pub stripe_test_mode: bool,
    /// Sign the dashboard's cookies: derived from the random key stored in the database
    /// (shared by all instances) and the operator token, so changing the token ends every
    /// session.
    pub session_keys: SessionKeys,
}
