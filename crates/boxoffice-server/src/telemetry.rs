//! Logging, and the seam where server-side failures are recorded.
//!
//! Logs are structured (`tracing`), JSON when standard output is not a terminal so log
//! shippers can parse them, human-readable otherwise. `RUST_LOG` overrides the level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber. Call once, from the binary.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE);
    if std::io::stdout().is_terminal() {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    }
}

/// Where a server-side failure came from.
#[derive(Debug, Clone, Copy)]
pub enum Component {
    /// An HTTP request answered 5xx.
    Http,
    /// A background job.
    Job(&'static str),
    /// The payment provider (an indeterminate answer, a refusal).
    Payments,
}

/// Records a server-side failure: a 5xx, a panic, a job failure.
///
/// Today it is logged at `error` with its cause chain; the error store (SPEC §7) will also
/// persist it from here, so every caller already reports through this one function.
pub fn record_failure(component: Component, request_id: Option<&str>, message: &str) {
    match component {
        Component::Http => tracing::error!(component = "http", request_id, error = message, "request failed"),
        Component::Job(job) => tracing::error!(component = "job", job, error = message, "job failed"),
        Component::Payments => tracing::error!(
            component = "payments",
            request_id,
            error = message,
            "payment provider error"
        ),
    }
}
