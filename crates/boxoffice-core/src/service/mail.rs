//! Buyer e-mail use cases (SPEC §9): the sender job, and the operator's view of the
//! outbox. Messages are queued by the store, in the transactions that mark orders paid or
//! refunded; see [`crate::mail`].

use std::sync::Arc;
use std::time::Duration;

use super::{BoxOffice, Error, require_operator};
use crate::auth::Caller;
use crate::clock::Timestamp;
use crate::failures::{Failure, Severity};
use crate::ids::EmailId;
use crate::jobs::{self, JobRun};
use crate::mail::{EmailAttempt, EmailDelivery, EmailStatus, EmailToSend, MailSender, QueuedEmail};

/// The component under which given-up messages are recorded in the error store.
pub const EMAIL_COMPONENT: &str = "email";

/// Messages claimed per run.
const EMAIL_BATCH: u32 = 20;

/// How long claimed messages are hidden from other instances. The whole batch is sent
/// within it: a message is only sent while at least [`SEND_MARGIN`] of the lease is left,
/// so (with a transport that times out within the margin) no other instance can claim a
/// message while it is being sent.
const EMAIL_LEASE_MS: i64 = 5 * 60 * 1000;

/// The lease left at which the run stops sending; the rest of the batch is claimed again
/// when the lease ends. Longer than any transport's timeout.
const SEND_MARGIN: Duration = Duration::from_secs(90);

/// The most messages one listing returns.
const MAX_EMAILS_LISTED: u32 = 500;

impl BoxOffice {
    /// The same use cases, sending buyer e-mail through `sender`.
    pub fn with_mail_sender(mut self, sender: Arc<dyn MailSender>) -> Self {
        self.mail = Some(sender);
        self
    }

    /// The sender job: sends due messages, retrying failed ones with exponential backoff,
    /// and gives a message up when an attempt fails `give_up_after` or later after it was
    /// queued (recorded as a failure of component `email`, which alerts). Every attempt is
    /// recorded. Safe with several instances: each message is claimed by one. Without a
    /// sender, messages stay queued.
    ///
    /// Delivery is at least once: if recording a sent message fails, its lease runs out
    /// and it is sent again.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn deliver_emails(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let Some(sender) = self.mail.clone() else {
            return self.record_run(jobs::EMAIL_SENDER, started_at, 0, Vec::new()).await;
        };
        let claimed = self
            .mail_store()
            .claim_emails(started_at, EMAIL_LEASE_MS, EMAIL_BATCH)
            .await?;
        let send_until = super::minus(
            Timestamp::from_millis(started_at.as_millis().saturating_add(EMAIL_LEASE_MS)),
            SEND_MARGIN,
        );
        let mut affected = 0;
        let mut errors = Vec::new();
        for mail in claimed {
            if self.now() >= send_until {
                // Left claimed; sent by a later run once the lease ends.
                break;
            }
            let delivery = self.attempt(sender.as_ref(), &mail).await;
            match self
                .mail_store()
                .finish_email(&mail.email.id, &delivery, self.now())
                .await
            {
                Ok(()) if matches!(delivery, EmailDelivery::Sent { .. }) => affected += 1,
                Ok(()) => {}
                Err(err) => errors.push(format!("{}: {}", mail.email.id, super::error_chain(&err))),
            }
        }
        self.record_run(jobs::EMAIL_SENDER, started_at, affected, errors).await
    }

    /// Sends one message and decides what its outcome means.
    async fn attempt(&self, sender: &dyn MailSender, mail: &EmailToSend) -> EmailDelivery {
        let error = match sender.send(mail).await {
            Ok(reply) => return EmailDelivery::Sent { reply },
            Err(error) => error,
        };
        let retry = self.settings.mail_retry;
        let now = self.now();
        let email = &mail.email;
        let failed = u32::try_from(email.attempts).unwrap_or(u32::MAX).saturating_add(1);
        let give_up_at = email.created_at.plus(retry.give_up_after);
        if now >= give_up_at {
            self.report_failure(Failure::new(
                Severity::Error,
                EMAIL_COMPONENT,
                format!(
                    "the {} e-mail {} for order {} could not be sent after {failed} attempts: {error}",
                    email.kind.as_str(),
                    email.id,
                    email.order_id
                ),
            ));
            return EmailDelivery::GaveUp { error };
        }
        // The last attempt is made when the time is up, not a backoff step later.
        let retry_at = now.plus(retry.wait_after(failed)).min(give_up_at);
        EmailDelivery::Retry { error, retry_at }
    }

    /// Messages in the outbox with their attempts, newest first, optionally with one status
    /// only (operator). `limit` is clamped to 1..=500.
    #[tracing::instrument(level = "debug", skip_all, fields(status = status.map(EmailStatus::as_str), limit))]
    pub async fn list_emails(
        &self,
        caller: &Caller,
        status: Option<EmailStatus>,
        limit: u32,
    ) -> Result<Vec<(QueuedEmail, Vec<EmailAttempt>)>, Error> {
        require_operator(caller)?;
        Ok(self
            .store
            .list_emails(status, limit.clamp(1, MAX_EMAILS_LISTED))
            .await?)
    }

    /// Queues a failed message again, due now (operator). A sent message is returned
    /// unchanged. A retried message that fails again after its `give_up_after` is failed
    /// again at once (one more attempt per retry).
    #[tracing::instrument(level = "debug", skip_all, fields(email_id = %id))]
    pub async fn retry_email(&self, caller: &Caller, id: &EmailId) -> Result<QueuedEmail, Error> {
        require_operator(caller)?;
        Ok(self.mail_store().retry_email(id, self.now()).await?)
    }

    /// How many messages are queued, sent and failed (for metrics).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn email_counts(&self) -> Result<(i64, i64, i64), Error> {
        Ok(self.mail_store().email_counts().await?)
    }
}
