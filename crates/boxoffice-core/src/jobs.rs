//! Records of background job runs, so an operator can see that the sweeper is alive.

use crate::clock::Timestamp;
use crate::ids::JobRunId;

/// The hold expiry sweeper's job name.
pub const EXPIRE_HOLDS: &str = "expire-holds";

/// The job that finishes payment requests stopped after their order was created.
pub const PAYMENT_COMPLETER: &str = "payment-completer";

/// The job that removes idempotency records past their retention.
pub const IDEMPOTENCY_REAPER: &str = "idempotency-reaper";

/// The job that applies stored webhook events not applied yet.
pub const WEBHOOK_WORKER: &str = "webhook-worker";

/// The job that fetches the provider's recent events and applies any never delivered.
pub const WEBHOOK_RECONCILER: &str = "webhook-reconciler";

/// The job that delivers queued alerts to the alert webhook.
pub const ALERT_SENDER: &str = "alert-sender";

/// The job that prunes error occurrences and groups past their retention.
pub const ERROR_RETENTION: &str = "error-retention";

/// The job that sends queued buyer e-mail (confirmations and refund notices).
pub const EMAIL_SENDER: &str = "email-sender";

/// Every job whose runs are recorded.
pub const ALL: &[&str] = &[
    EXPIRE_HOLDS,
    PAYMENT_COMPLETER,
    IDEMPOTENCY_REAPER,
    WEBHOOK_WORKER,
    WEBHOOK_RECONCILER,
    ALERT_SENDER,
    ERROR_RETENTION,
    EMAIL_SENDER,
];

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// It did all it found to do.
    Succeeded,
    /// It stopped on an error; `affected` counts what was done before.
    Failed,
}

impl JobOutcome {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed => "failed",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "succeeded" => Some(JobOutcome::Succeeded),
            "failed" => Some(JobOutcome::Failed),
            _ => None,
        }
    }
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// Its id.
    pub id: JobRunId,
    /// Which job (`expire-holds`, …).
    pub job: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
    /// How it ended.
    pub outcome: JobOutcome,
    /// How many items it changed (for `expire-holds`: holds expired).
    pub affected: u64,
    /// The error that stopped it, if it failed.
    pub error: Option<String>,
}
