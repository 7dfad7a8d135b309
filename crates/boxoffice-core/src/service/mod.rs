//! The use cases: what callers of boxoffice can do, with the rules applied before and
//! around the store. HTTP handlers, CLI subcommands and jobs call these and nothing else.
//!
//! [`BoxOffice`] is assembled here; its use cases live in one module per concept
//! (`auth`, `catalog`, `holds`, `payments`, `webhooks`, `error_store`, `mail`, `jobs`, and
//! the pages' `checkout` and `admin`), each an `impl BoxOffice` block of its own.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Caller;
use crate::clock::{Clock, Timestamp};
use crate::error_store::alerts::{AlertRetry, AlertSender};
use crate::error_store::reports::AlertPolicy;
use crate::failures::{FailureSink, LogSink};
use crate::mail::{MailRetry, MailSender};
use crate::payments::PaymentProvider;
use crate::store::{
    CatalogStore, ErrorStore, HoldStore, JobLog, MailStore, PaymentStore, SettingsStore, Store, StoreError,
    WebhookStore,
};

mod admin;
mod auth;
mod catalog;
pub mod checkout;
mod error_store;
mod holds;
mod jobs;
mod mail;
mod payments;
mod webhooks;

pub use catalog::{NewEvent, NewTicketType};
pub use error_store::{ErrorInput, prepare_error, prepare_failure};
pub use holds::{BatchObserver, HoldBatching};
pub use payments::{PaymentAnswer, PaymentRequest};
pub use webhooks::WebhookResult;

/// What the use cases need to know about the installation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Hold length for events that do not set their own.
    pub default_hold: Duration,
    /// Holds expired per sweeper transaction; bounds each transaction's size and lock time.
    pub sweep_batch: u32,
    /// Sweeper transactions running at once. On PostgreSQL each takes holds the others have
    /// not locked (`SKIP LOCKED`) on its own connection, so a large backlog is cleared by
    /// several backends (2 on 2 cores: 1M expired holds 27.6 s → see BENCHMARKS.md); on
    /// SQLite, which has one writer, they take turns and it changes nothing.
    pub sweep_workers: usize,
    /// How long a hold is kept at least once payment starts.
    pub payment_grace: Duration,
    /// How long a request holds its idempotency key's lock. Longer than the provider
    /// client's worst case (timeout times attempts), so a live request is never taken
    /// over; short enough that a crashed process does not block its key for long.
    pub idempotency_lock: Duration,
    /// How long finished idempotency records are kept (at least 24 hours, SPEC §5).
    pub idempotency_retention: Duration,
    /// When recording errors queues alerts (on only when an alert webhook is configured).
    pub alerts: AlertPolicy,
    /// How long error occurrences are kept.
    pub error_retention: Duration,
    /// The newest occurrences kept per error group; older ones are pruned.
    pub error_events_per_group: u32,
    /// How failed alert deliveries are retried.
    pub alert_retry: AlertRetry,
    /// How failed buyer e-mail deliveries are retried, and when they are given up.
    pub mail_retry: MailRetry,
    /// How concurrent hold requests are gathered into one transaction.
    pub hold_batching: HoldBatching,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_hold: Duration::from_secs(15 * 60),
            sweep_batch: 5_000,
            sweep_workers: 2,
            payment_grace: Duration::from_secs(5 * 60),
            idempotency_lock: Duration::from_secs(120),
            idempotency_retention: Duration::from_secs(48 * 60 * 60),
            alerts: AlertPolicy::OFF,
            error_retention: Duration::from_secs(30 * 24 * 60 * 60),
            error_events_per_group: 1_000,
            alert_retry: AlertRetry::default(),
            mail_retry: MailRetry::default(),
            hold_batching: HoldBatching::default(),
        }
    }
}

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is well-formed but breaks a rule (422).
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist, or the caller may not see it (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A ticket type lacks capacity; nothing was held (409).
    #[error("{0} is sold out")]
    SoldOut(String),
    /// The hold is completed (409).
    #[error("the hold is completed")]
    HoldCompleted,
    /// Another request with this idempotency key is in flight (409, `Retry-After`).
    #[error("a request with this Idempotency-Key is still being processed")]
    KeyInUse {
        /// Seconds until the other request's lock runs out.
        retry_after_seconds: u64,
    },
    /// The idempotency key was used for a different request (422).
    #[error("this Idempotency-Key was used for a different request")]
    KeyReused,
    /// The payment provider's outcome is unknown; retrying with the same key resumes (502).
    #[error("the payment provider is unavailable: {0}")]
    ProviderUnavailable(String),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl Error {
    /// Whether the database could not be reached (as opposed to refusing the request):
    /// worth waiting for, not worth blaming the request for.
    pub fn is_database_unavailable(&self) -> bool {
        matches!(self, Error::Store(StoreError::Unavailable(_)))
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => Error::NotFound(what),
            StoreError::SoldOut { ticket_type_name, .. } => Error::SoldOut(ticket_type_name),
            StoreError::HoldCompleted => Error::HoldCompleted,
            StoreError::CapacityBelowCommitted { committed } => Error::Invalid(format!(
                "capacity cannot go below {committed}, the tickets already sold and held"
            )),
            other => Error::Store(other),
        }
    }
}

/// The box office: every use case, over one store and one clock.
#[derive(Clone)]
pub struct BoxOffice {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    provider: Option<Arc<dyn PaymentProvider>>,
    failures: Arc<dyn FailureSink>,
    alerts: Option<Arc<dyn AlertSender>>,
    mail: Option<Arc<dyn MailSender>>,
    hold_lanes: Arc<holds::HoldLanes>,
}

impl BoxOffice {
    /// Assembles the use cases, without a payment provider.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self {
            store,
            clock,
            settings,
            provider: None,
            failures: Arc::new(LogSink),
            alerts: None,
            mail: None,
            hold_lanes: Arc::default(),
        }
    }

    /// The same use cases, telling `observer` the size of every batch of holds placed.
    pub fn with_hold_batch_observer(mut self, observer: BatchObserver) -> Self {
        self.hold_lanes = Arc::new(holds::HoldLanes::with_observer(observer));
        self
    }

    /// The same use cases, reporting failures to `sink`.
    pub fn with_failure_sink(mut self, sink: Arc<dyn FailureSink>) -> Self {
        self.failures = sink;
        self
    }

    /// The same use cases, paying through `provider`.
    pub fn with_payment_provider(mut self, provider: Arc<dyn PaymentProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The current instant by this box office's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The store, for readiness checks.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // One accessor per concept trait: each use-case module reaches the store only through
    // the trait of its concept, so what a module may touch is visible in its calls.

    fn settings_store(&self) -> &dyn SettingsStore {
        &*self.store
    }

    fn catalog_store(&self) -> &dyn CatalogStore {
        &*self.store
    }

    fn hold_store(&self) -> &dyn HoldStore {
        &*self.store
    }

    fn job_log(&self) -> &dyn JobLog {
        &*self.store
    }

    fn payment_store(&self) -> &dyn PaymentStore {
        &*self.store
    }

    fn webhook_store(&self) -> &dyn WebhookStore {
        &*self.store
    }

    fn error_store(&self) -> &dyn ErrorStore {
        &*self.store
    }

    fn mail_store(&self) -> &dyn MailStore {
        &*self.store
    }
}

/// `at` moved back by `duration`, saturating (retention cut-offs).
fn minus(at: Timestamp, duration: Duration) -> Timestamp {
    Timestamp::from_millis(
        at.as_millis()
            .saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
    )
}

/// Refuses everyone but the operator. Operator-only use cases call it themselves, so no
/// caller (HTTP, pages, CLI) can forget it; an organization key learns nothing (404).
pub fn require_operator(caller: &Caller) -> Result<(), Error> {
    match caller {
        Caller::Operator => Ok(()),
        // An organization key learns nothing about operator-only resources.
        Caller::Organization { .. } => Err(Error::NotFound("resource")),
    }
}

/// An error with its causes, one line, for records meant for people.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
