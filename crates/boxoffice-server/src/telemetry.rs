//! Logging, and the panic hook that keeps backtraces for the error store.
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

thread_local! {
    /// The backtrace of the last panic on this thread, until the panic handler takes it.
    static PANIC_BACKTRACE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once per process) a panic hook that keeps the panic's backtrace for the
/// request's panic handler, which records it in the error store, then runs the previous
/// hook (which prints the panic to standard error).
pub fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let backtrace = std::backtrace::Backtrace::force_capture().to_string();
            let location = info
                .location()
                .map(|at| format!("at {}:{}:{}\n", at.file(), at.line(), at.column()))
                .unwrap_or_default();
            PANIC_BACKTRACE.with(|slot| *slot.borrow_mut() = Some(format!("{location}{backtrace}")));
            previous(info);
        }));
    });
}

/// The backtrace of the last panic on this thread, if the hook kept one.
pub fn take_panic_backtrace() -> Option<String> {
    PANIC_BACKTRACE.with(|slot| slot.borrow_mut().take())
}
