//! Job run records.

use boxoffice_core::jobs::JobRun;
use boxoffice_core::rows::{self, JOB_RUN_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{PgConnection, PgPool};

use crate::map_error;
use crate::rows::Columns;

pub(crate) async fn record(conn: &mut PgConnection, run: &JobRun, keep_after: Timestamp) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO job_runs (id, job, started_at, finished_at, outcome, affected, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(run.id.as_str())
    .bind(&run.job)
    .bind(run.started_at.as_millis())
    .bind(run.finished_at.as_millis())
    .bind(run.outcome.as_str())
    .bind(i64::try_from(run.affected).unwrap_or(i64::MAX))
    .bind(run.error.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    sqlx::query("DELETE FROM job_runs WHERE job = $1 AND started_at < $2")
        .bind(&run.job)
        .bind(keep_after.as_millis())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(())
}

pub(crate) async fn list(pool: &PgPool, job: &str, limit: u32) -> Result<Vec<JobRun>, StoreError> {
    let found = sqlx::query(&format!(
        "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE job = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
    ))
    .bind(job)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map_error)?;
    found.iter().map(|row| rows::job_run(&Columns(row))).collect()
}
