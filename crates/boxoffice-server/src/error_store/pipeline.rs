//! The ingestion pipeline: every error report — from the JSON API, a Sentry envelope or
//! boxoffice's own failures — passes through here on its way to the database.
//!
//! Reports are gathered into batches by the writer tasks and stored in one transaction per
//! batch (group commit): under load, many reports share one commit; on an idle server a
//! report is written at once, with no added wait. When the database refuses a batch, the
//! batch goes to the [local spool](super::spool) and is written when the database is back;
//! only when the spool is full too is a report refused. A report is answered (200 to an
//! SDK) only once it is stored or spooled — durably either way.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::error_store::reports::{ErrorReport, Recorded, SERVER_SCOPE};
use boxoffice_core::failures::{Failure, FailureSink};
use boxoffice_core::service::{error_chain, prepare_failure};
use boxoffice_core::{BoxOffice, Clock};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::forward::SentryForwarder;
use super::spool::Spool;
use crate::metrics::Metrics;

/// Reports waiting for the writer; beyond this, submitters wait (backpressure) and
/// the server's own failures go straight to the spool.
const QUEUE_CAPACITY: usize = 16_384;

/// The most reports stored in one transaction.
const MAX_BATCH: usize = 512;

/// Batches in flight at once. One: measured with 8 senders on PostgreSQL, two writers
/// split the same load into half-size batches, which cost more per event (each batch is a
/// fixed number of statements and a flush) and gave no more throughput; while the one
/// writer commits, the next batch gathers in the queue. The writers share the queue, so
/// raising this is safe (groups are locked in one order: batches wait, never deadlock).
const WRITERS: usize = 1;

/// How often the spool is checked for reports to write back.
const DRAIN_INTERVAL: Duration = Duration::from_secs(2);

/// The longest a batch waits for the database before it is spooled instead: SDKs and
/// HTTP clients give up after some seconds, and an error report must be kept, not
/// waited on. A batch that commits just after this is spooled too; the spooled copy is
/// then a duplicate by event id and changes nothing when drained.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a report was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored in the database.
    Stored(Recorded),
    /// Kept in the local spool; stored when the database is back.
    Spooled,
}

/// Why a report was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refused {
    /// Neither the database nor the spool could take it.
    #[error("the error store is unavailable: {0}")]
    Unavailable(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

struct Job {
    report: ErrorReport,
    reply: Option<oneshot::Sender<Result<Accepted, Refused>>>,
}

struct Shared {
    sender: mpsc::Sender<Job>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    forwarder: Option<SentryForwarder>,
}

/// The handle to the pipeline: cheap to clone, shared by handlers and the use cases (as
/// their [`FailureSink`]).
#[derive(Clone)]
pub struct ErrorPipeline {
    shared: Arc<Shared>,
}

/// The writer side, started once the use cases exist (they need the handle first).
pub struct PipelineWriter {
    receiver: Mutex<mpsc::Receiver<Job>>,
    shared: Arc<Shared>,
}

impl ErrorPipeline {
    /// A pipeline over `spool`; nothing is written until [`PipelineWriter::spawn`].
    pub fn new(
        spool: Arc<Spool>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        forwarder: Option<SentryForwarder>,
    ) -> (Self, PipelineWriter) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            sender,
            spool,
            metrics,
            clock,
            forwarder,
        });
        (
            Self { shared: shared.clone() },
            PipelineWriter {
                receiver: Mutex::new(receiver),
                shared,
            },
        )
    }

    /// Stores a prepared report (or spools it) and answers how.
    pub async fn submit(&self, report: ErrorReport) -> Result<Accepted, Refused> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .sender
            .send(Job {
                report,
                reply: Some(reply),
            })
            .await
            .map_err(|_| Refused::ShuttingDown)?;
        answer.await.map_err(|_| Refused::ShuttingDown)?
    }

    /// Sends what is queued for Sentry (at shutdown), waiting at most `timeout`.
    pub fn flush_forwarding(&self, timeout: Duration) {
        if let Some(forwarder) = &self.shared.forwarder {
            forwarder.flush(timeout);
        }
    }

    /// The spool, for health and tests.
    pub fn spool(&self) -> &Spool {
        &self.shared.spool
    }
}

impl FailureSink for ErrorPipeline {
    /// Scrubs the failure, logs it, then queues it for storing; when the queue is full or
    /// closed (shutdown), spools it at once. Never blocks on the database. The log line
    /// carries the scrubbed text only: logs are kept and shipped too.
    fn report(&self, failure: Failure) {
        let report = match prepare_failure(failure, self.shared.clock.now()) {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(error = %error_chain(&err), "a failure could not be prepared for the error store");
                return;
            }
        };
        tracing::error!(
            severity = report.severity.as_str(),
            component = report.component.as_deref(),
            request_id = report.request_id.as_deref(),
            event_id = %report.event_id,
            error = %report.message,
            "failure recorded"
        );
        self.shared.metrics.errors_received("server", 1);
        if let Err(refused) = self.shared.sender.try_send(Job { report, reply: None }) {
            let job = match refused {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => job,
            };
            // Refused reports are counted and logged inside; nothing more can be done here.
            let _ = self.shared.spool_or_drop(std::slice::from_ref(&job.report));
        }
    }
}

impl Shared {
    /// Spools reports the database could not take; counts what is lost when even that fails.
    fn spool_or_drop(&self, reports: &[ErrorReport]) -> Result<(), Refused> {
        match self.spool.write(reports) {
            Ok(()) => {
                self.metrics.errors_spooled(reports.len() as u64);
                Ok(())
            }
            Err(err) => {
                self.metrics.errors_dropped("spool_full", reports.len() as u64);
                tracing::error!(
                    error = %error_chain(&err),
                    count = reports.len(),
                    "error reports could be neither stored nor spooled"
                );
                Err(Refused::Unavailable(err.to_string()))
            }
        }
    }
}

impl PipelineWriter {
    /// Starts the writers and the spool drainer. On `stop`, the writers store what is
    /// queued and end.
    pub fn spawn(self, boxoffice: BoxOffice, stop: CancellationToken) -> Vec<JoinHandle<()>> {
        let drainer = {
            let shared = self.shared.clone();
            let boxoffice = boxoffice.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    if !shared.spool.is_empty() {
                        drain(&shared, &boxoffice).await;
                    }
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(DRAIN_INTERVAL) => {}
                    }
                }
            })
        };
        let writer = Arc::new(self);
        let mut tasks: Vec<JoinHandle<()>> = (0..WRITERS)
            .map(|_| tokio::spawn(writer.clone().run(boxoffice.clone(), stop.clone())))
            .collect();
        tasks.push(drainer);
        tasks
    }

    async fn run(self: Arc<Self>, boxoffice: BoxOffice, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            {
                // One writer gathers a batch at a time; it lets go of the queue before
                // writing, so the next batch gathers while this one commits.
                let mut receiver = self.receiver.lock().await;
                let first = tokio::select! {
                    biased;
                    job = receiver.recv() => job,
                    () = stop.cancelled() => {
                        // Refuse new reports, then store what is queued.
                        receiver.close();
                        receiver.recv().await
                    }
                };
                let Some(first) = first else { break };
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
            self.write(&boxoffice, &mut batch).await;
        }
    }

    async fn write(&self, boxoffice: &BoxOffice, batch: &mut Vec<Job>) {
        let reports: Vec<ErrorReport> = batch.iter().map(|job| job.report.clone()).collect();
        let outcomes: Vec<Result<Accepted, Refused>> = match record_within(boxoffice, &reports).await {
            Ok(recorded) => {
                self.shared.metrics.errors_stored(reports.len() as u64);
                recorded.into_iter().map(|r| Ok(Accepted::Stored(r))).collect()
            }
            // The database is down: everything waits in the spool.
            Err(err) if err.is_database_unavailable() || reports.len() == 1 => {
                tracing::warn!(
                    error = %error_chain(&err),
                    count = reports.len(),
                    "the database refused error reports; spooling them"
                );
                let spooled = self.shared.spool_or_drop(&reports);
                reports
                    .iter()
                    .map(|_| spooled.clone().map(|()| Accepted::Spooled))
                    .collect()
            }
            // The database is up but refused the batch: one report may be at fault, so
            // each is tried alone and only what still fails is spooled.
            Err(_) => {
                let mut outcomes = Vec::with_capacity(reports.len());
                for report in &reports {
                    let one = std::slice::from_ref(report);
                    outcomes.push(match record_within(boxoffice, one).await {
                        Ok(mut recorded) => {
                            self.shared.metrics.errors_stored(1);
                            recorded
                                .pop()
                                .map(Accepted::Stored)
                                .ok_or_else(|| Refused::Unavailable("nothing recorded".into()))
                        }
                        Err(err) => {
                            tracing::warn!(error = %error_chain(&err), event_id = %report.event_id, "spooling an error report");
                            self.shared.spool_or_drop(one).map(|()| Accepted::Spooled)
                        }
                    });
                }
                outcomes
            }
        };
        if let Some(forwarder) = &self.shared.forwarder {
            for (report, outcome) in reports.iter().zip(&outcomes) {
                if report.scope == SERVER_SCOPE && outcome.is_ok() {
                    forwarder.forward(report);
                }
            }
        }
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            if let Some(reply) = job.reply {
                // The submitter may have gone (client disconnected); the report is kept.
                let _ = reply.send(outcome);
            }
        }
    }
}

/// Records reports, or fails as "unavailable" when the database takes longer than
/// [`WRITE_TIMEOUT`].
async fn record_within(
    boxoffice: &BoxOffice,
    reports: &[ErrorReport],
) -> Result<Vec<Recorded>, boxoffice_core::service::Error> {
    match tokio::time::timeout(WRITE_TIMEOUT, boxoffice.record_errors(reports)).await {
        Ok(result) => result,
        Err(_) => Err(boxoffice_core::service::Error::Store(
            boxoffice_core::StoreError::Unavailable(
                format!("the database did not answer within {WRITE_TIMEOUT:?}").into(),
            ),
        )),
    }
}

async fn drain(shared: &Shared, boxoffice: &BoxOffice) {
    match shared.spool.drain(boxoffice).await {
        Ok(drained) => {
            if drained.stored > 0 {
                shared.metrics.errors_stored(drained.stored);
                tracing::info!(
                    stored = drained.stored,
                    files_left = drained.left,
                    "spooled error reports written"
                );
            }
        }
        Err(err) => tracing::error!(error = %err, "reading the error spool failed"),
    }
}
