//! Sentry's ingestion protocol, so the official SDKs (browser, Python, Rust, …) can report to
//! boxoffice unchanged through an organization's `error_dsn` (SPEC §7).
//!
//! This module is pure parsing: request bodies are decompressed under a hard output limit,
//! envelopes are split into items, and the public key is found in the auth header or the
//! query string. It knows nothing of HTTP routing or storage, so every rule here is testable
//! on bytes alone, and the handler stays a thin mapping from these errors to 400/401/413.
//!
//! References: develop.sentry.dev "Envelopes" and "Envelope Items" (format and size limits),
//! "SDK overview → Authentication" (`X-Sentry-Auth`).

pub mod auth;
pub mod envelope;

pub use auth::{ParsedDsn, dsn, parse_dsn, sentry_key};
pub use envelope::{
    DecodeError, Envelope, EnvelopeError, EnvelopeHeader, EnvelopeLimits, EventItem, Item, SdkInfo, decode_body,
    normalize_event_id, parse_envelope,
};
