//! Background jobs: in-process tokio tasks, stopped by a cancellation token. Each has a
//! one-step function (`run_once`) that the loop, the admin API, the CLI and tests call.
//! Every job is safe with several instances on one database: the store hands each item
//! to one caller only.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::BoxOffice;
use boxoffice_core::failures::{Failure, Severity};
use boxoffice_core::jobs::{self, JobOutcome, JobRun};
use boxoffice_core::service::{self, error_chain};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the idempotency reaper runs.
pub const REAPER_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Runs one step of `job`, counts it and records a failure. `None` for an unknown job.
pub async fn run_once(job: &str, boxoffice: &BoxOffice, metrics: &Metrics) -> Option<Result<JobRun, service::Error>> {
    let result = match job {
        jobs::EXPIRE_HOLDS => boxoffice.sweep_expired_holds().await,
        jobs::PAYMENT_COMPLETER => boxoffice.complete_stalled_payments().await,
        jobs::IDEMPOTENCY_REAPER => boxoffice.reap_idempotency_records().await,
        jobs::WEBHOOK_WORKER => boxoffice.apply_due_webhooks().await,
        jobs::WEBHOOK_RECONCILER => boxoffice.reconcile_webhooks().await,
        jobs::ALERT_SENDER => boxoffice.deliver_alerts().await,
        jobs::ERROR_RETENTION => boxoffice.prune_errors().await.map(|(run, _)| run),
        jobs::EMAIL_SENDER => boxoffice.deliver_emails().await,
        _ => return None,
    };
    if job == jobs::EMAIL_SENDER {
        // The outbox gauges, refreshed with each run; a failed count leaves the last ones.
        if let Ok((queued, sent, failed)) = boxoffice.email_counts().await {
            metrics.email_counts(queued, sent, failed);
        }
    }
    match &result {
        Ok(run) => {
            let succeeded = run.outcome == JobOutcome::Succeeded;
            metrics.job_run(job, succeeded, run.affected);
            if job == jobs::WEBHOOK_RECONCILER {
                metrics.webhooks_reconciled(run.affected);
            }
            if !succeeded {
                let error = run.error.as_deref().unwrap_or("failed");
                boxoffice.report_failure(job_failure(job, error));
            } else if run.affected > 0 {
                tracing::info!(job, affected = run.affected, "job run");
            }
        }
        Err(err) => {
            metrics.job_run(job, false, 0);
            boxoffice.report_failure(job_failure(job, &error_chain(err)));
        }
    }
    Some(result)
}

/// A failed job run, for the error store: the component names the job, so each job's
/// failures group apart.
fn job_failure(job: &str, error: &str) -> Failure {
    Failure::new(
        Severity::Error,
        format!("job:{job}"),
        format!("job {job} failed: {error}"),
    )
}

/// Runs `job` now and then every `interval` until `stop` is cancelled. A step in progress
/// finishes its current transaction before the task ends.
pub fn spawn(
    job: &'static str,
    boxoffice: BoxOffice,
    metrics: Arc<Metrics>,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                // Failures are recorded inside; the next tick tries again.
                _ = run_once(job, &boxoffice, &metrics) => {}
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}
