//! The record of job runs: every background job step records what it did, so the operator
//! sees when each job last ran, how much it did and why it failed.

use std::time::Duration;

use super::{BoxOffice, Error, minus, require_operator};
use crate::auth::Caller;
use crate::clock::Timestamp;
use crate::ids::JobRunId;
use crate::jobs::{JobOutcome, JobRun};

/// How long job run records are kept.
const JOB_RUN_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

impl BoxOffice {
    /// The latest runs of a job, newest first.
    #[tracing::instrument(level = "debug", skip_all, fields(job, limit))]
    pub async fn list_job_runs(&self, caller: &Caller, job: &str, limit: u32) -> Result<Vec<JobRun>, Error> {
        require_operator(caller)?;
        Ok(self.job_log().list_job_runs(job, limit).await?)
    }

    /// Records a finished run of `job`: failed when there are `errors` (joined into its
    /// error text), succeeded otherwise. Old runs past the retention are removed with it.
    pub(super) async fn record_run(
        &self,
        job: &str,
        started_at: Timestamp,
        affected: u64,
        errors: Vec<String>,
    ) -> Result<JobRun, Error> {
        let finished_at = self.now();
        let run = JobRun {
            id: JobRunId::generate(),
            job: job.to_owned(),
            started_at,
            finished_at,
            outcome: if errors.is_empty() {
                JobOutcome::Succeeded
            } else {
                JobOutcome::Failed
            },
            affected,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        };
        self.job_log()
            .record_job_run(&run, minus(finished_at, JOB_RUN_RETENTION))
            .await?;
        Ok(run)
    }
}
