//! Background jobs: in-process tokio tasks, stopped by a cancellation token. Each has a
//! one-step function (`run_once`) that the loop, the admin API, the CLI and tests call.
//! Every job is safe with several instances on one database: the store hands each item
//! to one caller only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::BoxOffice;
use boxoffice_core::failures::{Failure, Severity};
use boxoffice_core::jobs::{self, JobOutcome, JobRun};
use boxoffice_core::service::{self, error_chain};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::metrics::Metrics;

/// How often the idempotency reaper runs.
pub const REAPER_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Runs one step of `job`, counts it and records a failure. `None` for an unknown job.
pub async fn run_once(job: &str, boxoffice: &BoxOffice, metrics: &Metrics) -> Option<Result<JobRun, service::Error>> {
    let (span, step) = step(job, boxoffice)?;
    let result = async {
        let result = step.await;
        account(job, &result, boxoffice, metrics).await;
        result
    }
    .instrument(span)
    .await;
    Some(result)
}

/// One step of a job, boxed so that one `match` picks both the step and its span.
type Step<'a> = Pin<Box<dyn Future<Output = Result<JobRun, service::Error>> + Send + 'a>>;

/// The one-step function of `job` and its span, named after the job (`job.expire_holds`) so
/// that traces group by job; `None` for an unknown job. A span's name must be a literal,
/// hence one per arm.
fn step<'a>(job: &str, boxoffice: &'a BoxOffice) -> Option<(Span, Step<'a>)> {
    // `outcome` and `affected` are filled in by `account` once the step is done.
    macro_rules! job_span {
        ($name:literal) => {
            tracing::info_span!($name, outcome = Empty, affected = Empty)
        };
    }
    let picked: (Span, Step<'a>) = match job {
        jobs::EXPIRE_HOLDS => (job_span!("job.expire_holds"), Box::pin(boxoffice.sweep_expired_holds())),
        jobs::PAYMENT_COMPLETER => (
            job_span!("job.payment_completer"),
            Box::pin(boxoffice.complete_stalled_payments()),
        ),
        jobs::IDEMPOTENCY_REAPER => (
            job_span!("job.idempotency_reaper"),
            Box::pin(boxoffice.reap_idempotency_records()),
        ),
        jobs::WEBHOOK_WORKER => (
            job_span!("job.webhook_worker"),
            Box::pin(boxoffice.apply_due_webhooks()),
        ),
        jobs::WEBHOOK_RECONCILER => (
            job_span!("job.webhook_reconciler"),
            Box::pin(boxoffice.reconcile_webhooks()),
        ),
        jobs::ALERT_SENDER => (job_span!("job.alert_sender"), Box::pin(boxoffice.deliver_alerts())),
        jobs::ERROR_RETENTION => (
            job_span!("job.error_retention"),
            Box::pin(async { boxoffice.prune_errors().await.map(|(run, _)| run) }),
        ),
        jobs::EMAIL_SENDER => (job_span!("job.email_sender"), Box::pin(boxoffice.deliver_emails())),
        _ => return None,
    };
    Some(picked)
}

/// Counts a finished step, records its failure, and fills in its span.
async fn account(job: &str, result: &Result<JobRun, service::Error>, boxoffice: &BoxOffice, metrics: &Metrics) {
    if job == jobs::EMAIL_SENDER {
        // The outbox gauges, refreshed with each run; a failed count leaves the last ones.
        if let Ok((queued, sent, failed)) = boxoffice.email_counts().await {
            metrics.email_counts(queued, sent, failed);
        }
    }
    let span = Span::current();
    match result {
        Ok(run) => {
            span.record("outcome", run.outcome.as_str());
            span.record("affected", run.affected);
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
            span.record("outcome", JobOutcome::Failed.as_str());
            metrics.job_run(job, false, 0);
            boxoffice.report_failure(job_failure(job, &error_chain(err)));
        }
    }
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
/// finishes its current transaction before the task ends. The task carries the caller's
/// span; each step opens its own inside it.
pub fn spawn(
    job: &'static str,
    boxoffice: BoxOffice,
    metrics: Arc<Metrics>,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(
        async move {
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
        }
        .in_current_span(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use boxoffice_core::{Settings, SystemClock};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    /// Every span's name and the fields recorded on it, as they are recorded: what the
    /// operator's log shows for it, read without waiting for the span to close (sqlx's SQLite
    /// worker holds clones of the spans it ran queries in, so a close can come late).
    #[derive(Clone, Default)]
    struct Spans(Arc<Mutex<HashMap<u64, SpanSeen>>>);

    /// A span's name and its fields (name, value) in the order they were recorded.
    type SpanSeen = (String, Vec<(String, String)>);

    struct Fields<'a>(&'a mut Vec<(String, String)>);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Spans {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
            let mut fields = Vec::new();
            attrs.record(&mut Fields(&mut fields));
            let name = attrs.metadata().name().to_owned();
            self.0.lock().expect("spans").insert(id.into_u64(), (name, fields));
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
            if let Some((_, fields)) = self.0.lock().expect("spans").get_mut(&id.into_u64()) {
                values.record(&mut Fields(fields));
            }
        }
    }

    #[tokio::test]
    async fn each_step_runs_in_a_span_named_after_its_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
        let store = crate::store::connect(&url).await.expect("store");
        let boxoffice = BoxOffice::new(store, Arc::new(SystemClock), Settings::default());
        let metrics = Metrics::new();
        let spans = Spans::default();
        let subscriber = tracing_subscriber::registry().with(spans.clone());
        let _default = tracing::subscriber::set_default(subscriber);

        let run = run_once(jobs::EXPIRE_HOLDS, &boxoffice, &metrics)
            .await
            .expect("a known job")
            .expect("ran");
        assert_eq!(run.outcome, JobOutcome::Succeeded);
        assert!(run_once("no-such-job", &boxoffice, &metrics).await.is_none());

        let spans = spans.0.lock().expect("spans");
        let job_spans: Vec<&Vec<(String, String)>> = spans
            .values()
            .filter(|(name, _)| name == "job.expire_holds")
            .map(|(_, fields)| fields)
            .collect();
        assert_eq!(job_spans.len(), 1, "one span per step: {spans:?}");
        let recorded: HashMap<&str, &str> = job_spans[0]
            .iter()
            .map(|(field, value)| (field.as_str(), value.as_str()))
            .collect();
        assert_eq!(recorded.get("outcome"), Some(&"succeeded"), "{recorded:?}");
        assert_eq!(recorded.get("affected"), Some(&"0"), "{recorded:?}");
        assert!(
            spans.values().any(|(name, _)| name == "store.expire_holds"),
            "the store's spans run inside it: {spans:?}"
        );
    }
}
