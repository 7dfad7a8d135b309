//! Stripe webhook events (SPEC §6): stored durably before they are acknowledged, applied
//! exactly once with their effect, retried when applying fails.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::ids::OrderId;
use crate::store::StoreError;
use crate::webhooks::{ApplyOutcome, EventStatus, StoredStripeEvent, StripeEvent};

/// Stripe events: stored durably, applied exactly once.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
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
}
