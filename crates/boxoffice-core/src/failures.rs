//! The seam through which use cases report failures that must be seen: the late-payment
//! refund, a webhook that will not apply. Today the server logs them; the error store
//! (SPEC §7) will store, group and alert on them through the same trait.

/// How bad a reported failure is (SPEC §7 severities), least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Diagnostic detail.
    Debug,
    /// Something noteworthy, not wrong.
    Info,
    /// Worth a look.
    Warning,
    /// Something went wrong for a customer or an operator.
    Error,
    /// Money or tickets are at stake right now.
    Critical,
}

impl Severity {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl Severity {
    /// Parses the API and stored form; Sentry's `fatal` is `critical`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "debug" => Some(Severity::Debug),
            "info" | "log" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            "critical" | "fatal" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// A failure to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// How bad.
    pub severity: Severity,
    /// Where (`webhooks`, `payments`, …).
    pub component: &'static str,
    /// What happened, with the ids an operator needs.
    pub message: String,
}

/// Where failures go.
pub trait FailureSink: Send + Sync + 'static {
    /// Records a failure. Must not fail: a sink keeps what it cannot deliver yet.
    fn report(&self, failure: Failure);
}

/// Logs failures (the default until an error store is attached).
#[derive(Debug, Default)]
pub struct LogSink;

impl FailureSink for LogSink {
    fn report(&self, failure: Failure) {
        tracing::error!(
            severity = failure.severity.as_str(),
            component = failure.component,
            error = %failure.message,
            "failure recorded"
        );
    }
}
