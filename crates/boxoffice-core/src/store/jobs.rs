//! The job log: one record per run of a background job (SPEC §4), kept for a while.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::jobs::JobRun;
use crate::store::StoreError;

/// The record of background job runs.
#[async_trait]
pub trait JobLog: Send + Sync + 'static {
    /// Records a job run, and forgets runs of the same job started before `keep_after`.
    async fn record_job_run(&self, run: &JobRun, keep_after: Timestamp) -> Result<(), StoreError>;

    /// Lists runs of a job, newest first.
    async fn list_job_runs(&self, job: &str, limit: u32) -> Result<Vec<JobRun>, StoreError>;
}
