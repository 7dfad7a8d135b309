//! Operator endpoints: hold statistics and background job runs (SPEC §4). Organization
//! keys get 404 here: these cover the whole installation.

use axum::Json;
use axum::extract::State;
use boxoffice_core::jobs::{self, JobRun};
use boxoffice_core::service;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api_error::{ApiError, ErrorBody};
use super::auth::Authenticated;
use super::extract::ApiPath;
use super::extract::{ApiQuery, parse_limit};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ReservationStatsResponse {
    pub active: i64,
    pub expired: i64,
    pub completed: i64,
    pub cancelled: i64,
    pub oldest_active_created_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct JobRunResponse {
    pub id: String,
    pub job: String,
    pub started_at: String,
    pub finished_at: String,
    /// `succeeded` or `failed`.
    pub outcome: &'static str,
    /// For `expire-holds`: holds expired.
    pub affected: u64,
    pub error: Option<String>,
}

impl From<JobRun> for JobRunResponse {
    fn from(run: JobRun) -> Self {
        Self {
            id: run.id.to_string(),
            job: run.job,
            started_at: run.started_at.to_rfc3339(),
            finished_at: run.finished_at.to_rfc3339(),
            outcome: run.outcome.as_str(),
            affected: run.affected,
            error: run.error,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct JobRunList {
    pub data: Vec<JobRunResponse>,
    pub has_more: bool,
}

#[derive(Deserialize, IntoParams)]
pub struct JobRunsParams {
    /// The job; default `expire-holds`.
    pub job: Option<String>,
    /// 1 to 500; default 20.
    pub limit: Option<i64>,
}

/// Hold counts by status, with expiry by the clock (not by the sweeper).
#[utoipa::path(get, path = "/api/v1/admin/stats/reservations", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = ReservationStatsResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reservation_stats(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<ReservationStatsResponse>, ApiError> {
    let stats = state.boxoffice.reservation_stats(&caller).await?;
    Ok(Json(ReservationStatsResponse {
        active: stats.active,
        expired: stats.expired,
        completed: stats.completed,
        cancelled: stats.cancelled,
        oldest_active_created_at: stats.oldest_active_created_at.map(|at| at.to_rfc3339()),
    }))
}

/// The latest runs of a job, newest first.
#[utoipa::path(get, path = "/api/v1/admin/jobs/runs", tag = "admin",
    params(JobRunsParams),
    security(("bearer" = [])),
    responses((status = 200, body = JobRunList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn job_runs(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(params): ApiQuery<JobRunsParams>,
) -> Result<Json<JobRunList>, ApiError> {
    let job = params.job.as_deref().unwrap_or(jobs::EXPIRE_HOLDS);
    if !jobs::ALL.contains(&job) {
        return Err(ApiError::bad_request(format!(
            "unknown job {job:?}; known jobs: {}",
            jobs::ALL.join(", ")
        )));
    }
    let limit = parse_limit(params.limit)?;
    // One more than asked tells whether more exist.
    let mut runs = state.boxoffice.list_job_runs(&caller, job, limit + 1).await?;
    let has_more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    Ok(Json(JobRunList {
        data: runs.into_iter().map(Into::into).collect(),
        has_more,
    }))
}

/// Run a job now (`expire-holds`, `payment-completer`, `idempotency-reaper`); answers the run record.
#[utoipa::path(post, path = "/api/v1/admin/jobs/{job}/run", tag = "admin",
    params(("job" = String, Path, description = "expire-holds, payment-completer or idempotency-reaper")),
    security(("bearer" = [])),
    responses((status = 200, body = JobRunResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn run_job(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(job): ApiPath<String>,
) -> Result<Json<JobRunResponse>, ApiError> {
    // The jobs' one-step functions serve the scheduler too, so the check is made here.
    service::require_operator(&caller)?;
    let run = crate::jobs::run_once(&job, &state.boxoffice, &state.metrics)
        .await
        .ok_or_else(|| ApiError::not_found("job"))??;
    Ok(Json(run.into()))
}
