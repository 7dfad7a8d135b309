//! Holds (the API's reservations, SPEC §4): placed in batches that share one commit,
//! cancelled, expired by the sweeper, counted.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::holds::{Hold, Placement, ReservationStats};
use crate::ids::{HoldId, TicketTypeId};
use crate::store::StoreError;
use crate::store::place_in_rounds;

/// Holds: placing them in batches, cancelling, expiring, counting.
#[async_trait]
pub trait HoldStore: Send + Sync + 'static {
    /// Places a batch of holds in ONE transaction (one commit for all of them: the lever
    /// against a hot ticket type's per-transaction ceiling). Each hold arrives complete and
    /// `active`, its items sorted by ticket type id, and is placed whole or not at all, in
    /// the order given, by [`allocate`](crate::holds::allocate); the answer has one
    /// [`Placement`] per hold. Holds that expired but were not released still count as held
    /// here: releasing them is [`HoldStore::release_expired_holds`], called by
    /// [`place_in_rounds`] for the ticket types that came up short. Never lets `sold + held`
    /// exceed `capacity`, under any concurrency. On `Err` nothing of the batch is held.
    async fn place_holds(&self, holds: &[&Hold], now: Timestamp) -> Result<Vec<Placement>, StoreError>;

    /// Marks every hold containing `ticket_type` that expired by `now` as expired and
    /// releases its tickets, in bounded transactions of its own; returns how many it marked.
    /// All of them: however many expired holds there are, they never block a sale (SPEC §4).
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
}
