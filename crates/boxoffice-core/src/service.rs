//! The use cases: what callers of boxoffice can do, with the rules applied before and
//! around the store. HTTP handlers, CLI subcommands and jobs call these and nothing else.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, Caller, MintedApiKey, SecretToken, StoredApiKey, TokenHash};
use crate::catalog::{Capacity, Event, EventWithTicketTypes, HoldSeconds, MaxPerOrder, TicketType, TicketTypeChanges};
use crate::clock::{Clock, Timestamp};
use crate::error_store::alerts::{AlertRetry, AlertSender};
use crate::error_store::reports::{AlertPolicy, ErrorProject};
use crate::failures::{Failure, FailureSink, LogSink, Severity};

mod admin;
pub mod checkout;
mod error_store;
mod holds;
mod mail;
use crate::holds::{Hold, HoldStatus, ReservationStats};
use crate::idempotency::IdempotencyKey;
use crate::ids::{EventId, HoldId, JobRunId, OrderId, OrganizationId, TicketTypeId};
use crate::jobs::{self, JobOutcome, JobRun};
use crate::mail::{MailRetry, MailSender};
use crate::money::{Cents, Currency};
use crate::organizations::{Name, Organization};
use crate::payments::{
    Begun, IdempotencyRecord, IntentRequest, Order, OrderPhase, PROVIDER_KEY_SAFE_AGE, PaymentIntentCreated,
    PaymentProvider, ProviderError, ProviderIntent, RecoveryPoint, StoredResponse,
};
use crate::store::{Page, PageRequest, Store, StoreError};
use crate::webhooks::{ApplyOutcome, StoredStripeEvent, StripeEvent, Ticket};
pub use error_store::{ErrorInput, prepare_error, prepare_failure};
pub use holds::{BatchObserver, HoldBatching};

/// The setting under which the operator token's hash is kept.
const OPERATOR_TOKEN_SETTING: &str = "operator_token_sha256";

/// The setting under which the dashboard's session key is kept (hex).
const SESSION_KEY_SETTING: &str = "admin_session_key";

/// How long job run records are kept.
const JOB_RUN_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

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

/// Unfinished idempotency records older than this are abandoned and removed by the reaper;
/// by then the completer has finished every one it could.
const ABANDONED_RECORD_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Records the completer claims per run.
const COMPLETER_BATCH: u32 = 100;

/// Records the reaper deletes per transaction.
const REAPER_BATCH: u32 = 1_000;

/// A payment-intent request, parsed.
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    /// Whose key (see `idempotency::scope_of`).
    pub scope: String,
    /// The client's key.
    pub key: IdempotencyKey,
    /// The reservation to pay for.
    pub hold_id: HoldId,
    /// A digest of method, path and body.
    pub fingerprint: String,
}

/// The answer to a payment-intent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentAnswer {
    /// Produced by this request.
    Fresh(StoredResponse),
    /// Stored by an earlier request with the same key, replayed.
    Replayed(StoredResponse),
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

/// A new event as parsed from a request.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The owner.
    pub organization_id: OrganizationId,
    /// Its name.
    pub name: Name,
    /// When it starts.
    pub starts_at: Timestamp,
    /// Its currency.
    pub currency: Currency,
    /// Its own hold length.
    pub hold_seconds: Option<HoldSeconds>,
}

/// A new ticket type as parsed from a request.
#[derive(Debug, Clone)]
pub struct NewTicketType {
    /// Its name.
    pub name: Name,
    /// Price of one ticket.
    pub price: Cents,
    /// Tickets that exist.
    pub capacity: Capacity,
    /// Most per hold.
    pub max_per_order: MaxPerOrder,
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

    // ----- authentication -----------------------------------------------------------

    /// Makes sure an operator token exists. With `configured`, that token is the one;
    /// otherwise a token is generated and its hash stored at first start, and returned
    /// (to print once); later starts return `None`. Returns the hash to check against.
    pub async fn ensure_operator_token(
        &self,
        configured: Option<&SecretToken>,
    ) -> Result<(TokenHash, Option<SecretToken>), Error> {
        if let Some(token) = configured {
            return Ok((token.hash(), None));
        }
        if let Some(stored) = self.store.get_setting(OPERATOR_TOKEN_SETTING).await? {
            return TokenHash::from_hex(&stored)
                .map(|hash| (hash, None))
                .ok_or_else(|| Error::Invalid("the stored operator token hash is corrupt".into()));
        }
        let token = auth::generate_operator_token();
        let hash = token.hash();
        if self
            .store
            .insert_setting_if_absent(OPERATOR_TOKEN_SETTING, &hash.to_hex())
            .await?
        {
            return Ok((hash, Some(token)));
        }
        // Another instance won the race to generate it; use theirs.
        let stored = self.store.get_setting(OPERATOR_TOKEN_SETTING).await?;
        stored
            .as_deref()
            .and_then(TokenHash::from_hex)
            .map(|hash| (hash, None))
            .ok_or_else(|| Error::Invalid("the stored operator token hash is corrupt".into()))
    }

    /// The key that signs the operator's dashboard sessions and their CSRF tokens: 32
    /// random bytes generated at first start and shared by every instance through the
    /// database (a session made on one instance is valid on all).
    pub async fn session_key(&self) -> Result<[u8; 32], Error> {
        let parse = |stored: &str| -> Option<[u8; 32]> { hex::decode(stored).ok()?.try_into().ok() };
        if let Some(stored) = self.store.get_setting(SESSION_KEY_SETTING).await? {
            return parse(&stored).ok_or_else(|| Error::Invalid("the stored session key is corrupt".into()));
        }
        let fresh = hex::encode(crate::ids::random_bytes::<32>());
        self.store.insert_setting_if_absent(SESSION_KEY_SETTING, &fresh).await?;
        // Whoever won the race to store it, the stored key is the one.
        let stored = self.store.get_setting(SESSION_KEY_SETTING).await?.unwrap_or(fresh);
        parse(&stored).ok_or_else(|| Error::Invalid("the stored session key is corrupt".into()))
    }

    /// Identifies the caller of a bearer token; `None` for an unknown or malformed token.
    pub async fn authenticate(
        &self,
        operator_hash: &TokenHash,
        presented: &SecretToken,
    ) -> Result<Option<Caller>, Error> {
        if let Some((key_id, secret)) = auth::split_api_key(presented) {
            let Some(stored) = self.store.find_api_key(&key_id).await? else {
                return Ok(None);
            };
            return Ok(stored.secret_hash.matches(&secret).then_some(Caller::Organization {
                organization_id: stored.organization_id,
                api_key_id: stored.id,
            }));
        }
        Ok(operator_hash.matches(presented).then_some(Caller::Operator))
    }

    // ----- organizations ------------------------------------------------------------

    /// Creates an organization with its error project (operator only).
    pub async fn create_organization(
        &self,
        caller: &Caller,
        name: Name,
    ) -> Result<(Organization, ErrorProject), Error> {
        require_operator(caller)?;
        let organization = Organization {
            id: OrganizationId::generate(),
            name,
            created_at: self.now(),
        };
        let project = self
            .store
            .create_organization(&organization, &crate::ids::random_hex())
            .await?;
        Ok((organization, project))
    }

    /// Reads an organization the caller may see, with its error project.
    pub async fn get_organization(
        &self,
        caller: &Caller,
        id: &OrganizationId,
    ) -> Result<(Organization, ErrorProject), Error> {
        if !caller.can_access(id) {
            return Err(Error::NotFound("organization"));
        }
        let organization = self.store.get_organization(id).await?;
        let project = self.store.get_error_project(id).await?;
        Ok((organization, project))
    }

    /// Mints an API key for an organization (operator only); the key is shown once.
    pub async fn create_api_key(&self, caller: &Caller, organization: &OrganizationId) -> Result<MintedApiKey, Error> {
        require_operator(caller)?;
        let minted = auth::mint_api_key();
        let stored = StoredApiKey {
            id: minted.id.clone(),
            organization_id: organization.clone(),
            secret_hash: minted.secret_hash.clone(),
        };
        self.store.create_api_key(&stored, self.now()).await?;
        Ok(minted)
    }

    // ----- events and ticket types --------------------------------------------------

    /// Creates an event in an organization the caller may change.
    pub async fn create_event(&self, caller: &Caller, new: NewEvent) -> Result<EventWithTicketTypes, Error> {
        if !caller.can_access(&new.organization_id) {
            return Err(Error::NotFound("organization"));
        }
        let event = Event {
            id: EventId::generate(),
            organization_id: new.organization_id,
            name: new.name,
            starts_at: new.starts_at,
            currency: new.currency,
            hold_seconds: new.hold_seconds,
            created_at: self.now(),
        };
        self.store.create_event(&event).await?;
        Ok(EventWithTicketTypes {
            event,
            ticket_types: Vec::new(),
        })
    }

    /// Reads an event (public).
    pub async fn get_event(&self, id: &EventId) -> Result<EventWithTicketTypes, Error> {
        Ok(self.store.get_event(id, self.now()).await?)
    }

    /// Lists events (public), newest first.
    pub async fn list_events(
        &self,
        organization: Option<&OrganizationId>,
        page: &PageRequest<EventId>,
    ) -> Result<Page<EventWithTicketTypes>, Error> {
        Ok(self.store.list_events(organization, page, self.now()).await?)
    }

    /// Adds a ticket type to an event the caller may change.
    pub async fn create_ticket_type(
        &self,
        caller: &Caller,
        event_id: &EventId,
        new: NewTicketType,
    ) -> Result<TicketType, Error> {
        let event = self.store.get_event(event_id, self.now()).await?;
        if !caller.can_access(&event.event.organization_id) {
            return Err(Error::NotFound("event"));
        }
        let ticket_type = TicketType {
            id: TicketTypeId::generate(),
            event_id: event_id.clone(),
            name: new.name,
            price: new.price,
            capacity: new.capacity,
            max_per_order: new.max_per_order,
            on_sale: true,
            sold: 0,
            held: 0,
            created_at: self.now(),
        };
        self.store.create_ticket_type(&ticket_type).await?;
        Ok(ticket_type)
    }

    /// Changes a ticket type of an event the caller may change.
    pub async fn update_ticket_type(
        &self,
        caller: &Caller,
        id: &TicketTypeId,
        changes: &TicketTypeChanges,
    ) -> Result<TicketType, Error> {
        let now = self.now();
        let current = self.store.get_ticket_type(id, now).await?;
        let event = self.store.get_event(&current.event_id, now).await?;
        if !caller.can_access(&event.event.organization_id) {
            return Err(Error::NotFound("ticket type"));
        }
        if changes.is_empty() {
            return Ok(current);
        }
        Ok(self.store.update_ticket_type(id, changes, now).await?)
    }

    // ----- holds --------------------------------------------------------------------

    /// Reads a hold (public: knowing its id is the credential).
    pub async fn get_hold(&self, id: &HoldId) -> Result<Hold, Error> {
        Ok(self.store.get_hold(id).await?)
    }

    /// Cancels a hold (public). Idempotent.
    pub async fn cancel_hold(&self, id: &HoldId) -> Result<Hold, Error> {
        Ok(self.store.cancel_hold(id, self.now()).await?)
    }

    /// Hold counts by status, now.
    pub async fn reservation_stats(&self, caller: &Caller) -> Result<ReservationStats, Error> {
        require_operator(caller)?;
        Ok(self.store.reservation_stats(self.now()).await?)
    }

    // ----- the expiry sweeper -------------------------------------------------------

    /// Runs the expiry sweeper once: expires every hold that has run out, in bounded
    /// batches, and records the run. A failed run is recorded too (when the store lets
    /// us) and returned as a run with outcome `failed`.
    pub async fn sweep_expired_holds(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let sweeps = (0..self.settings.sweep_workers.max(1)).map(|_| self.sweep_until_done());
        let mut affected: u64 = 0;
        let mut error = None;
        for (expired, failed) in futures::future::join_all(sweeps).await {
            affected += expired;
            error = error.or(failed);
        }
        let finished_at = self.now();
        let run = JobRun {
            id: JobRunId::generate(),
            job: jobs::EXPIRE_HOLDS.to_owned(),
            started_at,
            finished_at,
            outcome: if error.is_some() {
                JobOutcome::Failed
            } else {
                JobOutcome::Succeeded
            },
            affected,
            error: error.as_ref().map(|err| error_chain(err)),
        };
        self.store
            .record_job_run(&run, minus(finished_at, JOB_RUN_RETENTION))
            .await?;
        match error {
            Some(err) => Err(Error::Store(err)),
            None => Ok(run),
        }
    }

    /// One sweeper: expires batches until a batch comes back short (nothing left that
    /// another sweeper has not locked) or fails. Returns how many it expired and the error.
    async fn sweep_until_done(&self) -> (u64, Option<StoreError>) {
        let mut expired_total = 0;
        loop {
            // Each batch uses a fresh `now`, so a long run keeps up with the clock.
            match self.store.expire_holds(self.now(), self.settings.sweep_batch).await {
                Ok(expired) => {
                    expired_total += expired;
                    if expired < u64::from(self.settings.sweep_batch) {
                        return (expired_total, None);
                    }
                }
                Err(err) => return (expired_total, Some(err)),
            }
        }
    }
    /// The latest runs of a job, newest first.
    pub async fn list_job_runs(&self, caller: &Caller, job: &str, limit: u32) -> Result<Vec<JobRun>, Error> {
        require_operator(caller)?;
        Ok(self.store.list_job_runs(job, limit).await?)
    }
}

impl BoxOffice {
    // ----- payments -------------------------------------------------------------------

    fn provider(&self) -> Result<&Arc<dyn PaymentProvider>, Error> {
        self.provider
            .as_ref()
            .ok_or_else(|| Error::ProviderUnavailable("no payment provider is configured".into()))
    }

    /// Creates (or replays) the PaymentIntent of a reservation, idempotently under the
    /// client's key; see `crate::payments` for the phases.
    pub async fn create_payment_intent(&self, request: PaymentRequest) -> Result<PaymentAnswer, Error> {
        self.provider()?;
        // Fast path, one read: a finished record never changes, so replays and mismatches
        // need no lock and no write (which would cost a durable commit each).
        if let Some(existing) = self
            .store
            .find_idempotent_request(&request.scope, request.key.as_str())
            .await?
        {
            if existing.fingerprint != request.fingerprint {
                return Err(Error::KeyReused);
            }
            if let Some(response) = existing.response {
                return Ok(PaymentAnswer::Replayed(response));
            }
        }
        // An unknown reservation is a plain 404, not a key spent on nothing.
        self.store.get_hold(&request.hold_id).await?;
        let now = self.now();
        let record = IdempotencyRecord {
            scope: request.scope,
            key: request.key.as_str().to_owned(),
            hold_id: request.hold_id,
            fingerprint: request.fingerprint,
            recovery_point: RecoveryPoint::Started,
            order_id: None,
            response: None,
            created_at: now,
        };
        match self
            .store
            .begin_idempotent_request(&record, now.plus(self.settings.idempotency_lock), now)
            .await?
        {
            Begun::Replay(response) => Ok(PaymentAnswer::Replayed(response)),
            Begun::Mismatch => Err(Error::KeyReused),
            Begun::InUse { locked_until } => {
                let retry_after_seconds = u64::try_from(now.seconds_until(locked_until)).unwrap_or(0).max(1);
                Err(Error::KeyInUse { retry_after_seconds })
            }
            Begun::Proceed(record) => self.drive_payment(record).await.map(PaymentAnswer::Fresh),
        }
    }

    /// Drives a record whose lock this caller holds from its recovery point to the end.
    /// Requests and the completer share it, so a crash anywhere is finished the same way.
    async fn drive_payment(&self, record: IdempotencyRecord) -> Result<StoredResponse, Error> {
        let provider = self.provider()?.clone();
        let (scope, key) = (record.scope.as_str(), record.key.as_str());
        let order = match (record.recovery_point, &record.order_id) {
            (RecoveryPoint::Finished, _) => {
                return record
                    .response
                    .ok_or_else(|| Error::Invalid("a finished record without an answer".into()));
            }
            (RecoveryPoint::OrderCreated, Some(order_id)) => self.store.get_order(order_id).await?,
            _ => {
                let phase = self
                    .store
                    .create_order_for_request(
                        scope,
                        key,
                        &OrderId::generate(),
                        self.settings.payment_grace,
                        self.now(),
                    )
                    .await?;
                match phase {
                    OrderPhase::Ready(order) => order,
                    OrderPhase::HoldNotActive(status) => {
                        let response = hold_not_active(status);
                        self.store
                            .finish_idempotent_request(scope, key, &response, None, self.now())
                            .await?;
                        return Ok(response);
                    }
                }
            }
        };

        // A record older than the provider's memory of keys is never re-driven with the
        // key: the PaymentIntent, if any, is looked up by the order instead.
        let too_old_to_redrive = self.now() >= record.created_at.plus(PROVIDER_KEY_SAFE_AGE);
        let outcome = if too_old_to_redrive {
            provider.find_payment_intent_for_order(&order.id).await
        } else {
            let request = IntentRequest {
                amount: order.amount,
                currency: order.currency,
                metadata: [
                    ("order_id".to_owned(), order.id.to_string()),
                    ("reservation_id".to_owned(), order.hold_id.to_string()),
                ]
                .into(),
            };
            provider
                .create_payment_intent(&request, &order.provider_idempotency_key())
                .await
                .map(Some)
        };
        let response = match outcome {
            Ok(Some(intent)) => {
                let response = intent_created(&order, &intent);
                self.store
                    .finish_idempotent_request(scope, key, &response, Some((&order.id, &intent)), self.now())
                    .await?;
                return Ok(response);
            }
            // Looked up and absent: the create call never reached the provider, and the
            // hold ran out long ago.
            Ok(None) => error_response(
                409,
                "hold_expired",
                "the reservation expired before its payment was created",
            ),
            Err(ProviderError::Refused(message)) => error_response(
                422,
                "invalid_request",
                &format!("the payment provider refused: {message}"),
            ),
            Err(ProviderError::Indeterminate(message)) => {
                // Nothing is stored: the next request with this key resumes right here.
                self.store.release_idempotency_lock(scope, key).await?;
                return Err(Error::ProviderUnavailable(message));
            }
        };
        self.store
            .finish_idempotent_request(scope, key, &response, None, self.now())
            .await?;
        Ok(response)
    }

    /// The completer: finishes payment requests that stopped after their order was
    /// created (a crash, or an indeterminate provider answer whose client never retried),
    /// and records the run. Indeterminate failures leave a record for the next run.
    pub async fn complete_stalled_payments(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let claimed = self
            .store
            .claim_stalled_requests(
                started_at,
                started_at.plus(self.settings.idempotency_lock),
                COMPLETER_BATCH,
            )
            .await?;
        let mut affected = 0;
        let mut errors = Vec::new();
        for record in claimed {
            match self.drive_payment(record).await {
                Ok(_) => affected += 1,
                Err(err) => errors.push(error_chain(&err)),
            }
        }
        self.record_run(jobs::PAYMENT_COMPLETER, started_at, affected, errors)
            .await
    }

    /// The reaper: removes idempotency records past their retention, and records the run.
    pub async fn reap_idempotency_records(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let finished_before = minus(started_at, self.settings.idempotency_retention);
        let abandoned_before = minus(started_at, ABANDONED_RECORD_AGE);
        let mut affected = 0;
        loop {
            let deleted = self
                .store
                .delete_idempotency_records(finished_before, abandoned_before, REAPER_BATCH)
                .await?;
            affected += deleted;
            if deleted < u64::from(REAPER_BATCH) {
                break;
            }
        }
        self.record_run(jobs::IDEMPOTENCY_REAPER, started_at, affected, Vec::new())
            .await
    }

    async fn record_run(
        &self,
        job: &str,
        started_at: Timestamp,
        affected: u64,
        errors: Vec<String>,
    ) -> Result<JobRun, Error> {
        let finished_at = self.now();
        let run = JobRun {
            id: JobRunId::generate(),
            job: job.to_owned(),
            started_at,
            finished_at,
            outcome: if errors.is_empty() {
                JobOutcome::Succeeded
            } else {
                JobOutcome::Failed
            },
            affected,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        };
        self.store
            .record_job_run(&run, minus(finished_at, JOB_RUN_RETENTION))
            .await?;
        Ok(run)
    }

    /// Reads an order (public: knowing its id is the credential).
    pub async fn get_order(&self, id: &OrderId) -> Result<Order, Error> {
        Ok(self.store.get_order(id).await?)
    }
}

/// How long a failed webhook waits before the worker tries it again.
const WEBHOOK_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Reconciliation looks this far back (Stripe resends for three days).
const RECONCILE_WINDOW: Duration = Duration::from_secs(3 * 24 * 60 * 60);

/// What handling a webhook event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookResult {
    /// Already applied or ignored earlier: nothing changed.
    Duplicate,
    /// The effect took place (or the order's state said it already had).
    Applied(String),
    /// Nothing to do.
    Ignored(String),
    /// Paid after the hold ran out with the tickets gone: refunded automatically.
    LateRefund {
        /// The refunded order.
        order_id: OrderId,
    },
    /// Stored, but applying failed; the webhook worker tries again.
    Failed(String),
}

impl BoxOffice {
    // ----- webhooks -------------------------------------------------------------------

    /// Handles a delivered event: stores it durably (the caller acknowledges only after
    /// this returns `Ok`), then applies it. A failure to apply is recorded and retried by
    /// the worker; it does not fail the delivery, since the event is safely stored.
    pub async fn receive_webhook(&self, event: StripeEvent) -> Result<WebhookResult, Error> {
        let now = self.now();
        let (status, _) = self
            .store
            .record_webhook_event(&event, true, now.plus(WEBHOOK_RETRY_DELAY), now)
            .await?;
        if status.is_final() {
            return Ok(WebhookResult::Duplicate);
        }
        Ok(self.apply_stored_event(&event.id).await)
    }

    /// Applies one stored event; see [`WebhookResult`].
    pub async fn apply_stored_event(&self, event_id: &str) -> WebhookResult {
        let result = match self.store.apply_webhook_event(event_id, self.now()).await {
            Ok(ApplyOutcome::Applied(what)) => return WebhookResult::Applied(what),
            Ok(ApplyOutcome::Ignored(why)) => return WebhookResult::Ignored(why),
            Ok(ApplyOutcome::RefundNeeded {
                order_id,
                payment_intent_id,
            }) => self
                .refund_late_payment(event_id, &order_id, &payment_intent_id)
                .await
                .map(|()| order_id),
            Err(err) => Err(error_chain(&err)),
        };
        match result {
            Ok(order_id) => {
                self.failures.report(Failure::new(
                    Severity::Error,
                    "webhooks",
                    format!(
                        "order {order_id} was paid after its reservation ran out and its tickets were sold \
                         meanwhile; the payment was refunded automatically (event {event_id})"
                    ),
                ));
                WebhookResult::LateRefund { order_id }
            }
            Err(message) => {
                let retry_at = self.now().plus(WEBHOOK_RETRY_DELAY);
                if let Err(err) = self.store.record_webhook_failure(event_id, &message, retry_at).await {
                    // The event stays pending either way; the worker will find it.
                    tracing::warn!(event_id, error = %error_chain(&err), "could not record a webhook failure");
                }
                self.failures.report(Failure::new(
                    Severity::Error,
                    "webhooks",
                    format!("applying webhook event {event_id} failed (will retry): {message}"),
                ));
                WebhookResult::Failed(message)
            }
        }
    }

    async fn refund_late_payment(
        &self,
        event_id: &str,
        order_id: &OrderId,
        payment_intent_id: &str,
    ) -> Result<(), String> {
        let provider = self.provider().map_err(|err| err.to_string())?;
        provider
            .refund(payment_intent_id, &Order::refund_idempotency_key(order_id))
            .await
            .map_err(|err| err.to_string())?;
        self.store
            .complete_late_refund(event_id, order_id, self.now())
            .await
            .map_err(|err| error_chain(&err))
    }

    /// The webhook worker: applies stored events that are not applied yet (a failure
    /// earlier, or a crash between storing and applying), and records the run.
    pub async fn apply_due_webhooks(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let mut affected = 0;
        let mut errors = Vec::new();
        for id in self.store.due_webhook_events(started_at, 100).await? {
            match self.apply_stored_event(&id).await {
                WebhookResult::Failed(message) => errors.push(format!("{id}: {message}")),
                _ => affected += 1,
            }
        }
        self.record_run(jobs::WEBHOOK_WORKER, started_at, affected, errors)
            .await
    }

    /// The reconciler: lists the provider's recent events and stores and applies any that
    /// never arrived as a webhook, so a delivery outage heals by itself. `affected` counts
    /// the events it found missing.
    pub async fn reconcile_webhooks(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let since = minus(started_at, RECONCILE_WINDOW).as_millis() / 1000;
        let payloads = self
            .provider()?
            .recent_events(since)
            .await
            .map_err(|err| Error::ProviderUnavailable(err.to_string()))?;
        let mut affected = 0;
        let mut errors = Vec::new();
        for payload in payloads {
            let event = match StripeEvent::parse(payload.as_bytes()) {
                Ok(event) => event,
                Err(err) => {
                    errors.push(err.to_string());
                    continue;
                }
            };
            let (status, new) = self
                .store
                .record_webhook_event(&event, false, self.now(), self.now())
                .await?;
            if new {
                affected += 1;
            }
            if !status.is_final()
                && let WebhookResult::Failed(message) = self.apply_stored_event(&event.id).await
            {
                errors.push(format!("{}: {message}", event.id));
            }
        }
        self.record_run(jobs::WEBHOOK_RECONCILER, started_at, affected, errors)
            .await
    }

    /// Stored webhook events, newest first.
    pub async fn list_webhook_events(&self, caller: &Caller, limit: u32) -> Result<Vec<StoredStripeEvent>, Error> {
        require_operator(caller)?;
        Ok(self.store.list_webhook_events(limit).await?)
    }

    /// The tickets of an order.
    pub async fn order_tickets(&self, order_id: &OrderId) -> Result<Vec<Ticket>, Error> {
        Ok(self.store.order_tickets(order_id).await?)
    }
}

fn minus(at: Timestamp, duration: Duration) -> Timestamp {
    Timestamp::from_millis(
        at.as_millis()
            .saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
    )
}

/// The stored answer for a hold that cannot be paid any more.
fn hold_not_active(status: HoldStatus) -> StoredResponse {
    match status {
        HoldStatus::Completed => error_response(409, "hold_completed", "the reservation is already paid"),
        HoldStatus::Cancelled => error_response(409, "hold_expired", "the reservation was cancelled"),
        _ => error_response(409, "hold_expired", "the reservation has expired"),
    }
}

fn intent_created(order: &Order, intent: &ProviderIntent) -> StoredResponse {
    let body = PaymentIntentCreated {
        order_id: order.id.to_string(),
        payment_intent_id: intent.id.clone(),
        client_secret: intent.client_secret.clone(),
        amount_cents: order.amount.get(),
        currency: order.currency.to_string(),
        status: intent.status.clone(),
    };
    StoredResponse {
        status: 201,
        body: serde_json::to_string(&body).unwrap_or_default(),
    }
}

/// An error answer in the API's error shape, for storing and replaying.
fn error_response(status: u16, code: &str, message: &str) -> StoredResponse {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    StoredResponse {
        status,
        body: body.to_string(),
    }
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
