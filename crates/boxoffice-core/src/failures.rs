//! The seam through which failures that must be seen are reported: the late-payment
//! refund, a webhook that will not apply, a 5xx answer, a panic, a failed job. The server
//! plugs in its error pipeline, which stores, groups and alerts on them (SPEC §7) and
//! spools them to disk while the database is down; without one they are only logged.

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
    /// Where (`webhooks`, `payments`, `http`, `job:expire-holds`, …).
    pub component: String,
    /// What happened, with the ids an operator needs.
    pub message: String,
    /// The request it happened in, if any.
    pub request_id: Option<String>,
    /// Where in the code, when known (a panic's backtrace).
    pub backtrace: Option<String>,
}

impl Failure {
    /// A failure with no request and no backtrace.
    pub fn new(severity: Severity, component: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity,
            component: component.into(),
            message: message.into(),
            request_id: None,
            backtrace: None,
        }
    }

    /// The same failure, in the request `request_id`.
    #[must_use]
    pub fn in_request(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The same failure, with a backtrace.
    #[must_use]
    pub fn with_backtrace(mut self, backtrace: impl Into<String>) -> Self {
        self.backtrace = Some(backtrace.into());
        self
    }
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
            component = %failure.component,
            request_id = failure.request_id.as_deref(),
            error = %failure.message,
            "failure recorded"
        );
    }
}
