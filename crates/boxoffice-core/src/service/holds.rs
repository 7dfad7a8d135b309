//! Holds: placing them, reading and cancelling them, and the sweeper that expires them.
//!
//! Placing is batched: group commit in the application.
//!
//! A flash sale is one hot ticket type hammered by a crowd. One hold per transaction is
//! bound by the database's commit rate (every transaction on the hot row waits for its
//! own WAL flush); a batch of holds costs the same one commit. So concurrent hold requests
//! for the same event queue in a *lane*, and one task per busy lane takes whatever queued
//! while its previous batch ran and places it with
//! [`Store::place_holds`](crate::store::Store::place_holds) in one transaction. There is no
//! timer by default: on an idle system a batch is the one request (no added latency);
//! under a crowd batches grow by themselves. No request waits longer than the batch in
//! flight when it arrived (plus the optional window) and then its own.
//!
//! Every request is still answered on its own: a hold that does not fit gets `sold_out`,
//! a multi-item hold is all or nothing ([`crate::holds::allocate`]). When a batch's
//! transaction fails with an error that may belong to one request, its holds are placed
//! again one by one, so a single bad request cannot fail its neighbours; when the database
//! is unavailable, every request gets that answer at once. Each instance batches its own
//! requests; instances share nothing but the database, whose row locks order their batches.
//!
//! A batch runs in its lane's task, not in the requests that queued it, so each request
//! carries its span into the lane: the batch's span follows from every request's, and the
//! line logged about each hold is logged in the span of the request that asked for it (so
//! it carries that request's id).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::Instrument;

use super::{BoxOffice, Error, error_chain, require_operator};
use crate::auth::Caller;
use crate::catalog::{EventWithTicketTypes, HoldSeconds};
use crate::clock::Timestamp;
use crate::holds::{Hold, HoldItem, HoldRequest, HoldStatus, ReservationStats};
use crate::ids::{EventId, HoldId};
use crate::jobs::{self, JobRun};
use crate::money::Cents;
use crate::store::{StoreError, place_in_rounds};

/// Called with the size of every batch placed (for metrics).
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

/// How holds are batched.
#[derive(Debug, Clone, Copy)]
pub struct HoldBatching {
    /// The most holds one transaction places; 1 turns batching off (one transaction per
    /// request, the requests running concurrently).
    pub max_batch: usize,
    /// How long a lane that starts from idle waits for more requests before its first
    /// batch. Zero (the default) adds no latency: batches form from what queues while the
    /// previous one runs.
    pub window: Duration,
}

impl Default for HoldBatching {
    fn default() -> Self {
        Self {
            max_batch: 128,
            window: Duration::ZERO,
        }
    }
}

/// A request waiting in a lane.
struct Waiting {
    request: HoldRequest,
    reply: Reply,
}

/// Where a waiting request's answer goes, and the span of the request that waits for it.
struct Reply {
    answer: oneshot::Sender<Result<Hold, Error>>,
    span: tracing::Span,
}

impl Reply {
    /// Logs the outcome in the requesting span (the batch runs in another task), then
    /// answers. A request that stopped waiting (its client left) is not an error.
    fn send(self, result: Result<Hold, Error>, batch: usize) {
        match &result {
            Ok(hold) => tracing::debug!(parent: &self.span, hold_id = %hold.id, batch, "hold placed in a batch"),
            Err(err) => tracing::debug!(parent: &self.span, batch, error = %err, "hold refused in a batch"),
        }
        let _ = self.answer.send(result);
    }
}

/// The lanes of busy events. A lane exists exactly while its task runs.
#[derive(Default)]
pub(crate) struct HoldLanes {
    lanes: Mutex<HashMap<EventId, Vec<Waiting>>>,
    observer: Option<BatchObserver>,
}

impl HoldLanes {
    pub(crate) fn with_observer(observer: BatchObserver) -> Self {
        Self {
            lanes: Mutex::default(),
            observer: Some(observer),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, Vec<Waiting>>> {
        // The map stays consistent under a panic (each change is one call), so a poisoned
        // lock is still usable.
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the next batch of `event`'s lane, or removes the lane when it is empty.
    fn next_batch(&self, event: &EventId, max_batch: usize) -> Vec<Waiting> {
        let mut lanes = self.lock();
        let Some(queue) = lanes.get_mut(event) else {
            return Vec::new();
        };
        if queue.is_empty() {
            lanes.remove(event);
            return Vec::new();
        }
        let take = queue.len().min(max_batch);
        queue.drain(..take).collect()
    }
}

/// Removes its lane if the lane's task ends by panicking, so later requests start a new
/// task instead of queueing behind a dead one; the requests it held see their answer
/// channel closed.
struct LaneGuard {
    office: BoxOffice,
    event: EventId,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.office.hold_lanes.lock().remove(&self.event);
        }
    }
}

impl BoxOffice {
    /// Places a hold: every item or none. Batched with concurrent requests for the same
    /// event unless batching is off; see the module docs.
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = %request.event_id))]
    pub async fn place_hold(&self, request: HoldRequest) -> Result<Hold, Error> {
        if self.settings.hold_batching.max_batch <= 1 {
            return self.place_alone(request).await;
        }
        let (answer, answered) = oneshot::channel();
        let event = request.event_id.clone();
        let waiting = Waiting {
            request,
            reply: Reply {
                answer,
                span: tracing::Span::current(),
            },
        };
        let start_lane = match self.hold_lanes.lock().entry(event.clone()) {
            Entry::Occupied(mut lane) => {
                lane.get_mut().push(waiting);
                false
            }
            Entry::Vacant(lane) => {
                lane.insert(vec![waiting]);
                true
            }
        };
        if start_lane {
            tokio::spawn(self.clone().run_lane(event));
        }
        answered.await.unwrap_or_else(|_| {
            Err(Error::Store(StoreError::Other(
                "the hold batch stopped unexpectedly".into(),
            )))
        })
    }

    /// One request, one transaction (batching off).
    async fn place_alone(&self, request: HoldRequest) -> Result<Hold, Error> {
        let now = self.now();
        let event = self.catalog_store().get_event(&request.event_id, now).await?;
        let hold = self.new_hold(&event, request, now)?;
        self.hold_store().place_hold(&hold, now).await?;
        Ok(hold)
    }

    /// A lane's task: places batches until the lane is empty, then removes it.
    async fn run_lane(self, event: EventId) {
        let _guard = LaneGuard {
            office: self.clone(),
            event: event.clone(),
        };
        if !self.settings.hold_batching.window.is_zero() {
            tokio::time::sleep(self.settings.hold_batching.window).await;
        }
        loop {
            let batch = self
                .hold_lanes
                .next_batch(&event, self.settings.hold_batching.max_batch);
            if batch.is_empty() {
                return;
            }
            if let Some(observer) = &self.hold_lanes.observer {
                observer(batch.len());
            }
            let span = tracing::debug_span!("hold_batch", event_id = %event, holds = batch.len());
            for waiting in &batch {
                span.follows_from(&waiting.reply.span);
            }
            self.place_batch(&event, batch).instrument(span).await;
        }
    }

    /// Places one batch of one event's requests and answers each.
    async fn place_batch(&self, event_id: &EventId, batch: Vec<Waiting>) {
        let now = self.now();
        let size = batch.len();
        // One read of the event for the whole batch: prices, limits, hold length.
        let event = match self.catalog_store().get_event(event_id, now).await {
            Ok(event) => event,
            Err(err) => {
                for waiting in batch {
                    waiting.reply.send(Err(err.duplicate().into()), size);
                }
                return;
            }
        };
        let mut holds = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for waiting in batch {
            match self.new_hold(&event, waiting.request, now) {
                Ok(hold) => {
                    holds.push(hold);
                    replies.push(waiting.reply);
                }
                Err(err) => waiting.reply.send(Err(err), size),
            }
        }
        if holds.is_empty() {
            return;
        }
        let refs: Vec<&Hold> = holds.iter().collect();
        let results = match place_in_rounds(self.hold_store(), &refs, now).await {
            Ok(results) => results,
            Err(err) if refs.len() > 1 && !matches!(err, StoreError::Unavailable(_)) => {
                // Possibly one request's fault: isolate it by placing each on its own.
                let mut results = Vec::with_capacity(refs.len());
                for hold in &refs {
                    results.push(self.hold_store().place_hold(hold, now).await);
                }
                results
            }
            Err(err) => refs.iter().map(|_| Err(err.duplicate())).collect(),
        };
        for ((hold, result), reply) in holds.into_iter().zip(results).zip(replies) {
            reply.send(result.map(|()| hold).map_err(Error::from), size);
        }
    }

    /// Checks a request against its event and prices it: the hold to place.
    fn new_hold(&self, event: &EventWithTicketTypes, request: HoldRequest, now: Timestamp) -> Result<Hold, Error> {
        let mut items = Vec::with_capacity(request.items.len());
        for (ticket_type_id, quantity) in &request.items {
            let ticket_type = event
                .ticket_types
                .iter()
                .find(|tt| &tt.id == ticket_type_id)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "ticket type {ticket_type_id} is not part of event {}",
                        event.event.id
                    ))
                })?;
            if !ticket_type.on_sale {
                return Err(Error::Invalid(format!("{} is not on sale", ticket_type.name.as_str())));
            }
            if quantity.get() > ticket_type.max_per_order.get() {
                return Err(Error::Invalid(format!(
                    "at most {} tickets of {} per order",
                    ticket_type.max_per_order.get(),
                    ticket_type.name.as_str()
                )));
            }
            items.push(HoldItem {
                ticket_type_id: ticket_type_id.clone(),
                quantity: *quantity,
                unit_price: ticket_type.price,
            });
        }
        // One lock order for every transaction that touches several ticket types, so
        // concurrent multi-item holds cannot deadlock on PostgreSQL.
        items.sort_by(|a, b| a.ticket_type_id.cmp(&b.ticket_type_id));
        let amount = items.iter().fold(Cents::from_trusted(0), |sum, item| {
            sum.plus(item.unit_price.times(item.quantity.get()))
        });
        let hold_length = event
            .event
            .hold_seconds
            .map_or(self.settings.default_hold, HoldSeconds::duration);
        Ok(Hold {
            id: HoldId::generate(),
            event_id: event.event.id.clone(),
            stored_status: HoldStatus::Active,
            customer_email: request.customer_email,
            items,
            amount,
            currency: event.event.currency,
            created_at: now,
            expires_at: now.plus(hold_length),
        })
    }

    /// Reads a hold (public: knowing its id is the credential).
    #[tracing::instrument(level = "debug", skip_all, fields(hold_id = %id))]
    pub async fn get_hold(&self, id: &HoldId) -> Result<Hold, Error> {
        Ok(self.hold_store().get_hold(id).await?)
    }

    /// Cancels a hold (public). Idempotent.
    #[tracing::instrument(level = "debug", skip_all, fields(hold_id = %id))]
    pub async fn cancel_hold(&self, id: &HoldId) -> Result<Hold, Error> {
        Ok(self.hold_store().cancel_hold(id, self.now()).await?)
    }

    /// Hold counts by status, now.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn reservation_stats(&self, caller: &Caller) -> Result<ReservationStats, Error> {
        require_operator(caller)?;
        Ok(self.hold_store().reservation_stats(self.now()).await?)
    }

    /// Runs the expiry sweeper once: expires every hold that has run out, in bounded
    /// batches, and records the run. A failed run is recorded too (when the store lets
    /// us) and returned as a run with outcome `failed`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn sweep_expired_holds(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let sweeps = (0..self.settings.sweep_workers.max(1)).map(|_| self.sweep_until_done());
        let mut affected: u64 = 0;
        let mut error = None;
        for (expired, failed) in futures::future::join_all(sweeps).await {
            affected += expired;
            error = error.or(failed);
        }
        let errors = error.iter().map(|err| error_chain(err)).collect();
        let run = self
            .record_run(jobs::EXPIRE_HOLDS, started_at, affected, errors)
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
            match self
                .hold_store()
                .expire_holds(self.now(), self.settings.sweep_batch)
                .await
            {
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
}
