//! Buyer e-mail (SPEC §9): the confirmation of a paid order with its tickets, and the
//! notice of a refund.
//!
//! Mail goes through a durable outbox. The transaction that marks an order paid (or
//! refunded) queues its message, so a paid order always has exactly one confirmation
//! queued — `UNIQUE (order_id, kind)` makes a redelivered webhook queue nothing — and a
//! crash between payment and sending loses nothing. The sender job claims due messages
//! with a lease (so two instances never send one message at once), sends them through a
//! [`MailSender`], and records every attempt; failures are retried with exponential
//! backoff until [`MailRetry::give_up_after`], when the failure goes to the error store.

use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::ids::{EmailId, OrderId};
use crate::payments::Order;
use crate::tickets::Ticket;

/// Which message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailKind {
    /// A paid order's confirmation, with its tickets.
    Confirmation,
    /// A refunded order's notice.
    Refund,
}

impl EmailKind {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            EmailKind::Confirmation => "confirmation",
            EmailKind::Refund => "refund",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "confirmation" => Some(EmailKind::Confirmation),
            "refund" => Some(EmailKind::Refund),
            _ => None,
        }
    }
}

/// Where a message is in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailStatus {
    /// Waiting to be sent (first attempt or a retry).
    Queued,
    /// Accepted by the mail server; never sent again.
    Sent,
    /// Given up on (recorded in the error store); an operator may retry it.
    Failed,
}

impl EmailStatus {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            EmailStatus::Queued => "queued",
            EmailStatus::Sent => "sent",
            EmailStatus::Failed => "failed",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "queued" => Some(EmailStatus::Queued),
            "sent" => Some(EmailStatus::Sent),
            "failed" => Some(EmailStatus::Failed),
            _ => None,
        }
    }
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEmail {
    /// Its id (`eml_…`).
    pub id: EmailId,
    /// The order it is about.
    pub order_id: OrderId,
    /// Which message.
    pub kind: EmailKind,
    /// The buyer's address (the hold's `customer_email`).
    pub recipient: String,
    /// Where it is.
    pub status: EmailStatus,
    /// Attempts made so far.
    pub attempts: i64,
    /// When it is due next (while queued; also the end of a claim's lease).
    pub next_attempt_at: Timestamp,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When it was queued (with the order's payment or refund).
    pub created_at: Timestamp,
    /// When the mail server accepted it.
    pub sent_at: Option<Timestamp>,
}

/// One attempt to send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAttempt {
    /// When.
    pub attempted_at: Timestamp,
    /// `sent` or `failed`.
    pub outcome: String,
    /// What the mail server answered (or the error, when it failed).
    pub reply: String,
}

/// Everything one message needs, as claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailToSend {
    /// The message.
    pub email: QueuedEmail,
    /// Its order.
    pub order: Order,
    /// The event's name.
    pub event_name: String,
    /// When the event starts.
    pub event_starts_at: Timestamp,
    /// The order's tickets with their ticket type's name, sorted by ticket type then code
    /// (empty for an order that never got tickets, e.g. a refunded late payment).
    pub tickets: Vec<(Ticket, String)>,
}

/// Where mail goes (the server's SMTP or HTTP transport).
#[async_trait]
pub trait MailSender: Send + Sync + 'static {
    /// Sends one message. `Ok` carries the mail server's reply, `Err` what went wrong;
    /// either is recorded with the attempt.
    async fn send(&self, mail: &EmailToSend) -> Result<String, String>;
}

/// How mail delivery retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailRetry {
    /// The wait after the first failed attempt; it doubles after each one.
    pub base: Duration,
    /// The longest wait between attempts.
    pub max_wait: Duration,
    /// How long after a message was queued a failed attempt gives it up (the failure is
    /// then recorded in the error store, component `email`).
    pub give_up_after: Duration,
}

impl Default for MailRetry {
    /// 30 s, 1 min, 2 min … capped at 30 minutes, given up after 24 hours: a mail server
    /// down for a night still delivers the tickets in the morning.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max_wait: Duration::from_secs(30 * 60),
            give_up_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl MailRetry {
    /// The wait after `failed_attempts` failed attempts (1 for the first failure).
    pub fn wait_after(&self, failed_attempts: u32) -> Duration {
        let doublings = failed_attempts.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << doublings).min(self.max_wait)
    }
}

/// How one attempt to send a message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailDelivery {
    /// Accepted by the mail server; never sent again.
    Sent {
        /// What the server answered.
        reply: String,
    },
    /// Not sent; try again at `retry_at`.
    Retry {
        /// Why it failed.
        error: String,
        /// When to try next.
        retry_at: Timestamp,
    },
    /// Not sent, and given up on (the failure is recorded in the error store).
    GaveUp {
        /// Why the last attempt failed.
        error: String,
    },
}

impl EmailDelivery {
    /// The attempt's recorded outcome: `sent` or `failed`.
    pub fn outcome(&self) -> &'static str {
        match self {
            EmailDelivery::Sent { .. } => "sent",
            EmailDelivery::Retry { .. } | EmailDelivery::GaveUp { .. } => "failed",
        }
    }

    /// The attempt's recorded reply: the server's answer, or the error.
    pub fn reply(&self) -> &str {
        match self {
            EmailDelivery::Sent { reply } => reply,
            EmailDelivery::Retry { error, .. } | EmailDelivery::GaveUp { error } => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let retry = MailRetry::default();
        assert_eq!(retry.wait_after(1), Duration::from_secs(30));
        assert_eq!(retry.wait_after(2), Duration::from_secs(60));
        assert_eq!(retry.wait_after(4), Duration::from_secs(240));
        assert_eq!(retry.wait_after(7), Duration::from_secs(30 * 60));
        assert_eq!(retry.wait_after(u32::MAX), Duration::from_secs(30 * 60));
    }

    #[test]
    fn kinds_and_statuses_round_trip() {
        for kind in [EmailKind::Confirmation, EmailKind::Refund] {
            assert_eq!(EmailKind::parse(kind.as_str()), Some(kind));
        }
        for status in [EmailStatus::Queued, EmailStatus::Sent, EmailStatus::Failed] {
            assert_eq!(EmailStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(EmailStatus::parse("bounced"), None);
    }
}
