//! Forwarding the server's own errors to Sentry when `--sentry-dsn` is set (SPEC §7),
//! through the official `sentry` crate.
//!
//! Only what is already stored goes out: the report as prepared, scrubbed and grouped, so
//! nothing reaches Sentry that the error store would not keep. Sending is the SDK's
//! background transport; a Sentry outage costs nothing here (the event is in our store).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use boxoffice_core::error_store::reports::ErrorReport;
use boxoffice_core::failures::Severity;
use sentry::protocol::{Event, Level, Map, Value};

/// A Sentry client for the server's own errors.
#[derive(Clone)]
pub struct SentryForwarder {
    client: Arc<sentry::Client>,
}

impl SentryForwarder {
    /// A forwarder to `dsn`. No default integrations: it sends exactly what it is given,
    /// and installs no panic hook (the server records panics itself).
    pub fn new(dsn: &str) -> anyhow::Result<Self> {
        let dsn: sentry::types::Dsn = dsn.parse().context("parsing --sentry-dsn")?;
        let options = sentry::apply_defaults(sentry::ClientOptions {
            dsn: Some(dsn),
            default_integrations: false,
            send_default_pii: false,
            release: Some(Cow::Borrowed(env!("CARGO_PKG_VERSION"))),
            shutdown_timeout: Duration::from_secs(2),
            ..sentry::ClientOptions::default()
        });
        Ok(Self {
            client: Arc::new(sentry::Client::with_options(options)),
        })
    }

    /// Queues one stored report for sending.
    pub fn forward(&self, report: &ErrorReport) {
        let mut tags = Map::new();
        if let Some(component) = &report.component {
            tags.insert("component".to_owned(), component.clone());
        }
        if let Some(request_id) = &report.request_id {
            tags.insert("request_id".to_owned(), request_id.clone());
        }
        let mut extra = Map::new();
        if let Ok(payload) = serde_json::from_str::<Value>(&report.payload) {
            extra.insert("boxoffice".to_owned(), payload);
        }
        let mut event = Event {
            level: level(report.severity),
            message: Some(report.message.clone()),
            logger: report.component.clone(),
            fingerprint: Cow::Owned(vec![Cow::Owned(report.fingerprint.as_str().to_owned())]),
            tags,
            extra,
            ..Event::default()
        };
        if let Ok(id) = report.event_id.parse() {
            // The same id here and in boxoffice's store, so the two can be matched.
            event.event_id = id;
        }
        self.client.capture_event(event, None);
    }

    /// Sends what is queued, waiting at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.client.flush(Some(timeout))
    }
}

fn level(severity: Severity) -> Level {
    match severity {
        Severity::Debug => Level::Debug,
        Severity::Info => Level::Info,
        Severity::Warning => Level::Warning,
        Severity::Error => Level::Error,
        Severity::Critical => Level::Fatal,
    }
}
