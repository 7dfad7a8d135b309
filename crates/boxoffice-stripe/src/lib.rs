//! Everything boxoffice knows about Stripe, in one crate so that the server, the binary and
//! the tests share one implementation of each contract (SPEC §5, §6):
//!
//! - [`client`]: the one Stripe HTTP client. There is no in-process mock payment path; tests
//!   and the default configuration point this client at the test double instead.
//! - [`webhook`]: `Stripe-Signature` verification and signing.
//! - [`fake`]: the built-in Stripe test double, an axum router with fault injection.
//! - [`types`]: the Stripe objects we read, and [`form`]: Stripe's form encoding.
#![forbid(unsafe_code)]
// `json!` of Stripe's full Charge shape nests deeper than the default limit.
#![recursion_limit = "256"]

pub mod client;
pub mod fake;
pub mod form;
pub mod types;
pub mod webhook;

pub use client::{
    CreatePaymentIntent, DEFAULT_API_BASE, IndeterminateReason, STRIPE_API_VERSION, StripeClient, StripeConfig,
    StripeError,
};
pub use fake::{FakeStripe, FakeStripeConfig};
pub use secrecy::{ExposeSecret, SecretString};
pub use types::{ApiErrorObject, Charge, Event, List, PaymentIntent, PaymentIntentStatus, Refund};

/// Seconds since the Unix epoch, as Stripe timestamps are.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
