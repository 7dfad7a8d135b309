//! The hold expiry sweeper.
//!
//! Correctness never waits for it: an expired hold stops counting the instant it expires.
//! The sweeper makes the stored status match and keeps the `held` counters tidy, in
//! bounded batches; several instances may sweep at once (the store guarantees that no
//! hold is taken twice).

use std::time::Duration;

use boxoffice_core::BoxOffice;
use boxoffice_core::jobs::{self, JobRun};
use boxoffice_core::service::{self, error_chain};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::telemetry::{self, Component};

/// One sweep: expire what has run out, record the run, count it.
pub async fn sweep_once(boxoffice: &BoxOffice, metrics: &Metrics) -> Result<JobRun, service::Error> {
    match boxoffice.sweep_expired_holds().await {
        Ok(run) => {
            metrics.sweeper_run(true, run.affected);
            if run.affected > 0 {
                tracing::info!(job = jobs::EXPIRE_HOLDS, expired = run.affected, "expired holds");
            }
            Ok(run)
        }
        Err(err) => {
            metrics.sweeper_run(false, 0);
            telemetry::record_failure(Component::Job(jobs::EXPIRE_HOLDS), None, &error_chain(&err));
            Err(err)
        }
    }
}

/// Sweeps now and then every `interval` until `stop` is cancelled. A sweep in progress
/// finishes its current batch's transaction before the task ends.
pub fn spawn(
    boxoffice: BoxOffice,
    metrics: std::sync::Arc<Metrics>,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                // A failure is recorded inside; the next tick tries again.
                _ = sweep_once(&boxoffice, &metrics) => {}
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}
