//! The storage contract.
//!
//! Each method is a whole use case that owns its transaction: no pool, connection or
//! transaction crosses this trait, so the rules about locking and atomicity live next to
//! the SQL that needs them, once per engine. The contract test suite
//! (`boxoffice-server/tests/store_contract.rs`) runs every method against both engines.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;

use crate::auth::StoredApiKey;
use crate::catalog::{Event, EventWithTicketTypes, TicketType, TicketTypeChanges};
use crate::clock::Timestamp;
use crate::error_store::reports::{
    AlertDelivery, AlertPolicy, ErrorGroup, ErrorProject, ErrorReport, GroupFilter, PendingAlert, Pruned, Recorded,
    StoredError,
};
use crate::holds::{Hold, Placement, ReservationStats};
use crate::ids::{ApiKeyId, EventId, HoldId, OrderId, OrganizationId, TicketTypeId};
use crate::ids::{EmailId, ErrorGroupId};
use crate::jobs::JobRun;
use crate::mail::{EmailAttempt, EmailDelivery, EmailStatus, EmailToSend, QueuedEmail};
use crate::organizations::Organization;
use crate::payments::{Begun, IdempotencyRecord, Order, OrderPhase, ProviderIntent, StoredResponse};
use crate::webhooks::{ApplyOutcome, EventStatus, StoredStripeEvent, StripeEvent, Ticket};

/// A boxed error from a storage engine, kept whole for logs and the error store.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store method.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A hold could not be placed: this ticket type lacks capacity. Nothing was held.
    #[error("{ticket_type_name} is sold out")]
    SoldOut {
        /// The ticket type that lacks capacity.
        ticket_type_id: TicketTypeId,
        /// Its name, for the buyer.
        ticket_type_name: String,
    },
    /// The hold is paid and can no longer be cancelled.
    #[error("the hold is completed")]
    HoldCompleted,
    /// A capacity change would leave fewer tickets than are sold and held.
    #[error("capacity cannot go below {committed} (sold + held)")]
    CapacityBelowCommitted {
        /// Tickets sold plus tickets in unexpired holds.
        committed: i64,
    },
    /// The database cannot be reached (connection refused, pool timed out).
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else the engine reported.
    #[error("storage error")]
    Other(#[source] BoxError),
}

impl StoreError {
    /// A copy of this error for each of several callers that shared the operation that
    /// failed (a batch of holds). Sources are kept as text.
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::NotFound(what) => StoreError::NotFound(what),
            StoreError::SoldOut {
                ticket_type_id,
                ticket_type_name,
            } => StoreError::SoldOut {
                ticket_type_id: ticket_type_id.clone(),
                ticket_type_name: ticket_type_name.clone(),
            },
            StoreError::HoldCompleted => StoreError::HoldCompleted,
            StoreError::CapacityBelowCommitted { committed } => {
                StoreError::CapacityBelowCommitted { committed: *committed }
            }
            StoreError::Unavailable(source) => StoreError::Unavailable(source_text(source.as_ref()).into()),
            StoreError::Other(source) => StoreError::Other(source_text(source.as_ref()).into()),
        }
    }
}

/// An error and its causes on one line.
fn source_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Places a batch of holds and answers each one: [`Store::place_holds`] first; for the
/// ticket types that came up short, releases their expired holds (each in its own
/// transaction, never inside a placing one: the lock order) and tries the short holds
/// again, at most once per ticket type. A hold still short after that is `SoldOut`.
///
/// `Err` only when the first transaction fails, and then nothing was placed. Later
/// failures answer the holds still waiting with a copy of the error; holds placed earlier
/// stay placed (they are committed).
pub async fn place_in_rounds<S: Store + ?Sized>(
    store: &S,
    holds: &[&Hold],
    now: Timestamp,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut answers: Vec<Option<Result<(), StoreError>>> = holds.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..holds.len()).collect();
    let mut released: HashSet<TicketTypeId> = HashSet::new();
    let mut first_round = true;
    while !pending.is_empty() {
        let batch: Vec<&Hold> = pending.iter().map(|&i| holds[i]).collect();
        let placements = match store.place_holds(&batch, now).await {
            Ok(placements) => placements,
            Err(err) if first_round => return Err(err),
            Err(err) => {
                for &i in &pending {
                    answers[i] = Some(Err(err.duplicate()));
                }
                break;
            }
        };
        first_round = false;
        // Short holds by ticket type, in id order (releases lock in that order too).
        let mut short: BTreeMap<TicketTypeId, Vec<(usize, String)>> = BTreeMap::new();
        for (&i, placement) in pending.iter().zip(placements) {
            match placement {
                Placement::Placed => answers[i] = Some(Ok(())),
                Placement::UnknownTicketType(_) => answers[i] = Some(Err(StoreError::NotFound("ticket type"))),
                Placement::Short {
                    ticket_type_id,
                    ticket_type_name,
                } => short.entry(ticket_type_id).or_default().push((i, ticket_type_name)),
            }
        }
        let mut retry = Vec::new();
        for (ticket_type_id, waiting) in short {
            let freed = if released.insert(ticket_type_id.clone()) {
                store.release_expired_holds(&ticket_type_id, now).await
            } else {
                Ok(0)
            };
            for (i, ticket_type_name) in waiting {
                match &freed {
                    Ok(0) => {
                        answers[i] = Some(Err(StoreError::SoldOut {
                            ticket_type_id: ticket_type_id.clone(),
                            ticket_type_name,
                        }))
                    }
                    Ok(_) => retry.push(i),
                    Err(err) => answers[i] = Some(Err(err.duplicate())),
                }
            }
        }
        retry.sort_unstable();
        pending = retry;
    }
    // Every round answers or retries each of its holds, so every hold has its answer.
    Ok(answers
        .into_iter()
        .map(|answer| answer.unwrap_or(Err(StoreError::NotFound("reservation"))))
        .collect())
}

/// One page of a list request, as Stripe pages: newest first, after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<C> {
    /// At most this many (1..=500).
    pub limit: u32,
    /// Only items older than this one.
    pub starting_after: Option<C>,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, newest first.
    pub data: Vec<T>,
    /// Whether more items follow the last one.
    pub has_more: bool,
}

/// The storage engine. Implemented by the SQLite and PostgreSQL stores.
///
/// Every method that takes `now` treats holds with `expires_at <= now` as expired, whether
/// or not they are marked: such a hold never blocks a sale and is never counted as held.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Reads an installation-wide setting.
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Writes a setting unless it exists; returns whether it was written. Several
    /// instances starting at once agree on one value.
    async fn insert_setting_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError>;

    /// Creates an organization together with its error project (SPEC §7; the numeric
    /// project id is assigned by the database), atomically.
    async fn create_organization(
        &self,
        organization: &Organization,
        error_public_key: &str,
    ) -> Result<ErrorProject, StoreError>;

    /// Reads an organization.
    async fn get_organization(&self, id: &OrganizationId) -> Result<Organization, StoreError>;

    /// How many organizations exist (the demo seeds only an empty installation).
    async fn count_organizations(&self) -> Result<i64, StoreError>;

    /// Stores an API key's hash. `NotFound` when the organization does not exist.
    async fn create_api_key(&self, key: &StoredApiKey, created_at: Timestamp) -> Result<(), StoreError>;

    /// Looks up an API key for authentication.
    async fn find_api_key(&self, id: &ApiKeyId) -> Result<Option<StoredApiKey>, StoreError>;

    /// Creates an event. `NotFound` when the organization does not exist.
    async fn create_event(&self, event: &Event) -> Result<(), StoreError>;

    /// Reads an event with its ticket types and their inventory at `now`.
    async fn get_event(&self, id: &EventId, now: Timestamp) -> Result<EventWithTicketTypes, StoreError>;

    /// Lists events, newest first, optionally of one organization only.
    async fn list_events(
        &self,
        organization: Option<&OrganizationId>,
        page: &PageRequest<EventId>,
        now: Timestamp,
    ) -> Result<Page<EventWithTicketTypes>, StoreError>;

    /// Creates a ticket type with nothing sold or held. `NotFound` when the event does not exist.
    async fn create_ticket_type(&self, ticket_type: &TicketType) -> Result<(), StoreError>;

    /// Reads a ticket type with its inventory at `now`.
    async fn get_ticket_type(&self, id: &TicketTypeId, now: Timestamp) -> Result<TicketType, StoreError>;

    /// Changes a ticket type. A capacity below sold + held (held at `now`) is refused with
    /// `CapacityBelowCommitted` and nothing changes.
    async fn update_ticket_type(
        &self,
        id: &TicketTypeId,
        changes: &TicketTypeChanges,
        now: Timestamp,
    ) -> Result<TicketType, StoreError>;

    /// Places a batch of holds in ONE transaction (one commit for all of them: the lever
    /// against a hot ticket type's per-transaction ceiling). Each hold arrives complete and
    /// `active`, its items sorted by ticket type id, and is placed whole or not at all, in
    /// the order given, by [`allocate`](crate::holds::allocate); the answer has one
    /// [`Placement`] per hold. Holds that expired but were not released still count as held
    /// here: releasing them is [`Store::release_expired_holds`], called by
    /// [`place_in_rounds`] for the ticket types that came up short. Never lets `sold + held`
    /// exceed `capacity`, under any concurrency. On `Err` nothing of the batch is held.
    async fn place_holds(&self, holds: &[&Hold], now: Timestamp) -> Result<Vec<Placement>, StoreError>;

    /// Marks the holds containing `ticket_type` that expired by `now` as expired and
    /// releases their tickets, in its own transaction; returns how many it marked (at
    /// most a bounded number per call, enough to free any one request's quantity).
    async fn release_expired_holds(&self, ticket_type: &TicketTypeId, now: Timestamp) -> Result<u64, StoreError>;

    /// Places one hold, all items or none: [`place_in_rounds`] with a batch of one. When a
    /// ticket type lacks capacity at `now` — after holds that expired by `now` have been
    /// released — answers `SoldOut` naming it, and nothing is held.
    async fn place_hold(&self, hold: &Hold, now: Timestamp) -> Result<(), StoreError> {
        let mut answers = place_in_rounds(self, &[hold], now).await?;
        answers.pop().unwrap_or(Err(StoreError::NotFound("reservation")))
    }

    /// Reads a hold.
    async fn get_hold(&self, id: &HoldId) -> Result<Hold, StoreError>;

    /// Cancels a hold and releases its tickets. Idempotent: a cancelled hold stays
    /// cancelled; a hold expired at `now` is marked expired (released once) and returned
    /// as such; a completed hold answers `HoldCompleted`.
    async fn cancel_hold(&self, id: &HoldId, now: Timestamp) -> Result<Hold, StoreError>;

    /// Marks up to `limit` holds that expired by `now` as expired and releases their
    /// tickets, in one transaction. Returns how many it marked. Concurrent callers (other
    /// instances) never mark the same hold.
    async fn expire_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError>;

    /// Counts holds by their status at `now`.
    async fn reservation_stats(&self, now: Timestamp) -> Result<ReservationStats, StoreError>;

    /// Records a job run, and forgets runs of the same job started before `keep_after`.
    async fn record_job_run(&self, run: &JobRun, keep_after: Timestamp) -> Result<(), StoreError>;

    /// Lists runs of a job, newest first.
    async fn list_job_runs(&self, job: &str, limit: u32) -> Result<Vec<JobRun>, StoreError>;

    // ----- payments (see `crate::payments` for the phases) ---------------------------

    /// Phase 1. Records `record` (at `started`) and locks it until `lock_until`, or finds
    /// the earlier record with its scope and key: `Replay` when finished, `Mismatch` when
    /// its fingerprint differs, `InUse` while another request holds an unexpired lock,
    /// otherwise takes over the lock and answers `Proceed` with the stored record.
    /// Concurrent callers with one key: exactly one gets `Proceed`.
    async fn begin_idempotent_request(
        &self,
        record: &IdempotencyRecord,
        lock_until: Timestamp,
        now: Timestamp,
    ) -> Result<Begun, StoreError>;

    /// Phase 2, in one transaction: unless the record's hold is no longer active at `now`,
    /// creates its order (with `new_order_id`; or reuses the hold's existing order — one per
    /// reservation), extends the hold so that at least `grace` remains (once per hold), and
    /// moves the record to `order_created`.
    async fn create_order_for_request(
        &self,
        scope: &str,
        key: &str,
        new_order_id: &OrderId,
        grace: std::time::Duration,
        now: Timestamp,
    ) -> Result<OrderPhase, StoreError>;

    /// Reads a record without locking it: the fast path for replays, since a finished
    /// record never changes.
    async fn find_idempotent_request(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Phase 4, in one transaction: stores the answer, moves the record to `finished`,
    /// releases its lock and, with `intent`, records the PaymentIntent on the order.
    async fn finish_idempotent_request(
        &self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
        intent: Option<(&OrderId, &ProviderIntent)>,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Releases a record's lock without moving it, after an indeterminate failure, so the
    /// next request with the key resumes at once.
    async fn release_idempotency_lock(&self, scope: &str, key: &str) -> Result<(), StoreError>;

    /// For the completer: locks until `lock_until` and returns up to `limit` records
    /// stopped at `order_created` whose lock is released or expired at `now`. Concurrent
    /// callers (other instances) never get the same record.
    async fn claim_stalled_requests(
        &self,
        now: Timestamp,
        lock_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<IdempotencyRecord>, StoreError>;

    /// For the reaper: deletes up to `limit` finished records created before
    /// `finished_before` and unfinished ones created before `abandoned_before`.
    async fn delete_idempotency_records(
        &self,
        finished_before: Timestamp,
        abandoned_before: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// Reads an order.
    async fn get_order(&self, id: &OrderId) -> Result<Order, StoreError>;

    // ----- webhooks (see `crate::webhooks`) ----------------------------------------------

    /// Stores an event durably, or counts another delivery of one already stored
    /// (`delivered` is false when the reconciliation job found it). Returns its status and
    /// whether it was new. The event becomes due for the worker at `due_at`.
    async fn record_webhook_event(
        &self,
        event: &StripeEvent,
        delivered: bool,
        due_at: Timestamp,
        now: Timestamp,
    ) -> Result<(EventStatus, bool), StoreError>;

    /// Applies a stored event and records the outcome in one transaction. Idempotent: an
    /// applied or ignored event changes nothing; effects are guarded by the order's state.
    async fn apply_webhook_event(&self, event_id: &str, now: Timestamp) -> Result<ApplyOutcome, StoreError>;

    /// After a late payment's automatic refund was created at the provider: the order
    /// becomes `refunded` and the event `applied`, in one transaction.
    async fn complete_late_refund(&self, event_id: &str, order_id: &OrderId, now: Timestamp) -> Result<(), StoreError>;

    /// Records a failed attempt to apply; the worker tries again from `retry_at`.
    async fn record_webhook_failure(&self, event_id: &str, error: &str, retry_at: Timestamp) -> Result<(), StoreError>;

    /// Ids of events not applied yet whose retry time has come, oldest first.
    async fn due_webhook_events(&self, now: Timestamp, limit: u32) -> Result<Vec<String>, StoreError>;

    /// Stored events, newest first.
    async fn list_webhook_events(&self, limit: u32) -> Result<Vec<StoredStripeEvent>, StoreError>;

    /// The tickets of an order.
    async fn order_tickets(&self, order_id: &OrderId) -> Result<Vec<Ticket>, StoreError>;

    // ----- the error store (see `crate::error_store`) ------------------------------------------

    /// Records scrubbed, fingerprinted reports in their groups, all in one transaction
    /// (the ingestion pipeline batches concurrent reports into one commit). For each group:
    /// created if new, counted, `last_seen` advanced, severity raised to the most severe
    /// occurrence, reopened if resolved (a regression). A report whose event id is stored
    /// already, or repeated within the batch, changes nothing (`duplicate`). When `policy`
    /// decides an alert for a group, it is queued in the alert outbox in the same
    /// transaction and the group's last alert time set, so the cooldown holds across
    /// instances. Answers one [`Recorded`] per report, in order.
    ///
    /// Groups are locked in (scope, fingerprint) order, so concurrent batches on several
    /// instances cannot deadlock.
    async fn record_errors(&self, reports: &[ErrorReport], policy: &AlertPolicy) -> Result<Vec<Recorded>, StoreError>;

    /// The error project of an organization.
    async fn get_error_project(&self, organization_id: &OrganizationId) -> Result<ErrorProject, StoreError>;

    /// The error project with this numeric id, if any.
    async fn find_error_project(&self, project_id: i64) -> Result<Option<ErrorProject>, StoreError>;

    /// Claims up to `limit` queued alerts due at `now` for delivery: each claimed alert is
    /// hidden from other claimers until `now + lease_ms` (so two instances never deliver
    /// one alert at once; a claimer that dies releases it when the lease ends). Oldest
    /// first.
    async fn claim_alerts(&self, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<PendingAlert>, StoreError>;

    /// Records how one delivery attempt ended; counts the attempt.
    async fn finish_alert(&self, alert_id: &str, delivery: &AlertDelivery, now: Timestamp) -> Result<(), StoreError>;

    /// Retention: removes occurrences received before `older_than` and those beyond the
    /// newest `per_group_cap` of each group; groups left with no occurrence and last seen
    /// before `older_than`; sent or abandoned alerts created before `older_than`.
    async fn prune_errors(&self, older_than: Timestamp, per_group_cap: u32) -> Result<Pruned, StoreError>;

    /// Groups, most recently seen first.
    async fn list_error_groups(&self, filter: &GroupFilter, limit: u32) -> Result<Vec<ErrorGroup>, StoreError>;

    /// A group with its latest `events` occurrences, newest first.
    async fn get_error_group(
        &self,
        id: &ErrorGroupId,
        events: u32,
    ) -> Result<(ErrorGroup, Vec<StoredError>), StoreError>;

    /// Marks a group resolved; a new occurrence reopens it.
    async fn resolve_error_group(&self, id: &ErrorGroupId, now: Timestamp) -> Result<ErrorGroup, StoreError>;

    // ----- the operator's dashboard ------------------------------------------------------

    /// The `limit` most recently created orders, newest first (ties broken by id,
    /// descending, so the order is total and stable).
    async fn list_recent_orders(&self, limit: u32) -> Result<Vec<Order>, StoreError>;

    // ----- buyer e-mail (see `crate::mail`) ----------------------------------------------
    //
    // Messages are queued by the transactions that mark an order paid or refunded
    // (`apply_webhook_event`, `complete_late_refund`): at most one per order and kind,
    // and only when the order's hold has a `customer_email`.

    /// Claims up to `limit` queued messages due at `now`, oldest first, each with what
    /// sending it needs. A claimed message is hidden from other claimers until
    /// `now + lease_ms` (its `next_attempt_at` moves there), so two instances never send
    /// one message at once; a claimer that dies releases it when the lease ends.
    async fn claim_emails(&self, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<EmailToSend>, StoreError>;

    /// Records how one attempt to send a message ended, in one transaction: an attempt
    /// row (at `now`, with its outcome and the reply or error), `attempts` counted, and
    /// `Sent` → `sent` (with `sent_at`), `Retry` → due again at `retry_at`, `GaveUp` →
    /// `failed`. A message that is not queued (an operator moved it, or it was sent)
    /// changes nothing. `NotFound("email")` for an unknown id.
    async fn finish_email(&self, id: &EmailId, delivery: &EmailDelivery, now: Timestamp) -> Result<(), StoreError>;

    /// Messages, newest first (ties by id, descending), optionally with one status only,
    /// each with its attempts, oldest first.
    async fn list_emails(
        &self,
        status: Option<EmailStatus>,
        limit: u32,
    ) -> Result<Vec<(QueuedEmail, Vec<EmailAttempt>)>, StoreError>;

    /// Queues a failed (or queued) message again, due at `now`. A sent message is
    /// returned unchanged. `NotFound("email")` for an unknown id.
    async fn retry_email(&self, id: &EmailId, now: Timestamp) -> Result<QueuedEmail, StoreError>;

    /// How many messages are queued, sent and failed (for metrics).
    async fn email_counts(&self) -> Result<(i64, i64, i64), StoreError>;
}
