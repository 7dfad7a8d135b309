//! Payments (SPEC §5): the phases of an idempotent PaymentIntent request (see
//! `crate::payments`), the orders they create and the tickets of paid orders.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::holds::Hold;
use crate::ids::{HoldId, OrderId};
use crate::payments::{Begun, IdempotencyRecord, Order, OrderPhase, ProviderIntent, StoredResponse};
use crate::store::StoreError;
use crate::tickets::Ticket;

/// Idempotent payment requests and the orders they create.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
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

    // ----- the operator's dashboard ------------------------------------------------------

    /// The `limit` most recently created orders, newest first (ties broken by id,
    /// descending, so the order is total and stable).
    async fn list_recent_orders(&self, limit: u32) -> Result<Vec<Order>, StoreError>;

    /// The tickets of an order.
    async fn order_tickets(&self, order_id: &OrderId) -> Result<Vec<Ticket>, StoreError>;

    /// Marks that the checkout page is confirming the order's PaymentIntent at the provider
    /// until `until` (`None`: the confirmation ended). Taken under the order's hold lock, so
    /// it orders itself with [`PaymentStore::release_left_checkout`]. `NotFound("order")`
    /// for an unknown order.
    async fn mark_confirming(&self, order: &OrderId, until: Option<Timestamp>) -> Result<(), StoreError>;

    /// The buyer left the checkout page: cancels the hold (as `HoldStore::cancel_hold`
    /// does) in one transaction with the hold locked, unless its order is being confirmed
    /// at `now` ([`Order::is_confirming`]); then answers `None` and changes nothing.
    async fn release_left_checkout(&self, hold: &HoldId, now: Timestamp) -> Result<Option<Hold>, StoreError>;
}
