//! The buyer e-mail outbox (SPEC §9). Messages are queued by the transactions that mark an
//! order paid or refunded (`WebhookStore::apply_webhook_event`,
//! `WebhookStore::complete_late_refund`): at most one per order and kind, and only when the
//! order's hold has a `customer_email`.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::ids::EmailId;
use crate::mail::{EmailAttempt, EmailDelivery, EmailStatus, EmailToSend, QueuedEmail};
use crate::store::StoreError;

/// The buyer e-mail outbox.
#[async_trait]
pub trait MailStore: Send + Sync + 'static {
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
