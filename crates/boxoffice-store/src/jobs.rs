//! The job log: one record per run of a background job.

use async_trait::async_trait;
use boxoffice_core::jobs::JobRun;
use boxoffice_core::store::JobLog;
use boxoffice_core::{StoreError, Timestamp};

use crate::rows::{self, JOB_RUN_COLUMNS};
use crate::sql::query;
use crate::{SqlStore, in_transaction, with_connection};

#[async_trait]
impl JobLog for SqlStore {
    #[tracing::instrument(name = "store.record_job_run", skip_all, fields(job = %run.job))]
    async fn record_job_run(&self, run: &JobRun, keep_after: Timestamp) -> Result<(), StoreError> {
        in_transaction!(self, |conn| {
            query(
                "INSERT INTO job_runs (id, job, started_at, finished_at, outcome, affected, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(run.id.as_str())
            .bind(&run.job)
            .bind(run.started_at.as_millis())
            .bind(run.finished_at.as_millis())
            .bind(run.outcome.as_str())
            .bind(i64::try_from(run.affected).unwrap_or(i64::MAX))
            .bind(run.error.as_deref())
            .execute(conn)
            .await?;
            query("DELETE FROM job_runs WHERE job = $1 AND started_at < $2")
                .bind(&run.job)
                .bind(keep_after.as_millis())
                .execute(conn)
                .await?;
        })
    }

    #[tracing::instrument(name = "store.list_job_runs", skip(self))]
    async fn list_job_runs(&self, job: &str, limit: u32) -> Result<Vec<JobRun>, StoreError> {
        let found = with_connection!(self, |conn| query(format!(
            "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE job = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
        ))
        .bind(job)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await?);
        found.iter().map(rows::job_run).collect()
    }
}
