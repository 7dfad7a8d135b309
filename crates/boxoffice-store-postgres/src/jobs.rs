//! Job run records.

use boxoffice_core::ids::JobRunId;
use boxoffice_core::jobs::{JobOutcome, JobRun};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{PgConnection, PgPool, Row};

use crate::{corrupt, map_error};

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
    let rows = sqlx::query(
        "SELECT id, job, started_at, finished_at, outcome, affected, error FROM job_runs
         WHERE job = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
    )
    .bind(job)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map_error)?;
    rows.iter()
        .map(|row| {
            let outcome: String = row.try_get("outcome").map_err(map_error)?;
            let affected: i64 = row.try_get("affected").map_err(map_error)?;
            Ok(JobRun {
                id: JobRunId::from_trusted(row.try_get("id").map_err(map_error)?),
                job: row.try_get("job").map_err(map_error)?,
                started_at: Timestamp::from_millis(row.try_get("started_at").map_err(map_error)?),
                finished_at: Timestamp::from_millis(row.try_get("finished_at").map_err(map_error)?),
                outcome: JobOutcome::parse(&outcome).ok_or_else(|| corrupt("job outcome"))?,
                affected: u64::try_from(affected).unwrap_or(0),
                error: row.try_get("error").map_err(map_error)?,
            })
        })
        .collect()
}
