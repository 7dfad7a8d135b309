//! `GET /admin`: hold statistics, open error groups, the latest sweeper and reconciliation
//! runs.

use axum::extract::State;
use axum::response::Response;
use boxoffice_core::auth::Caller;
use boxoffice_core::error_store::reports::GroupFilter;
use boxoffice_core::jobs::{self, JobRun};
use serde::Serialize;

use super::{LIST_ROWS, Layout, Session, When, truncate, when};
use crate::http::api_error::ApiError;
use crate::state::AppState;

/// Job runs shown per job on the overview.
const OVERVIEW_RUNS: u32 = 10;

#[derive(Serialize)]
struct RunView {
    started_at: When,
    duration_ms: i64,
    outcome: &'static str,
    affected: u64,
    error: Option<String>,
}

impl From<JobRun> for RunView {
    fn from(run: JobRun) -> Self {
        Self {
            duration_ms: (run.finished_at.as_millis() - run.started_at.as_millis()).max(0),
            started_at: when(run.started_at),
            outcome: run.outcome.as_str(),
            affected: run.affected,
            error: run.error,
        }
    }
}

#[derive(Serialize)]
struct HoldStatsView {
    active: i64,
    expired: i64,
    completed: i64,
    cancelled: i64,
    total: i64,
    oldest_active: Option<When>,
}

#[derive(Serialize)]
struct OverviewPage {
    #[serde(flatten)]
    layout: Layout,
    holds: HoldStatsView,
    open_groups: usize,
    open_groups_more: bool,
    sweeper_runs: Vec<RunView>,
    reconciler_runs: Vec<RunView>,
}

/// `GET /admin`: hold statistics, open error groups, the latest sweeper and
/// reconciliation runs.
pub(super) async fn overview(State(state): State<AppState>, session: Session) -> Result<Response, ApiError> {
    let caller = Caller::Operator;
    let stats = state.boxoffice.reservation_stats(&caller).await?;
    let open_filter = GroupFilter {
        severity: None,
        resolved: Some(false),
    };
    let open = state
        .boxoffice
        .list_error_groups(&caller, &open_filter, LIST_ROWS + 1)
        .await?;
    let (open, open_groups_more) = truncate(open, LIST_ROWS);
    let sweeper_runs = state
        .boxoffice
        .list_job_runs(&caller, jobs::EXPIRE_HOLDS, OVERVIEW_RUNS)
        .await?;
    let reconciler_runs = state
        .boxoffice
        .list_job_runs(&caller, jobs::WEBHOOK_RECONCILER, OVERVIEW_RUNS)
        .await?;
    let page = OverviewPage {
        layout: session.layout("overview"),
        holds: HoldStatsView {
            active: stats.active,
            expired: stats.expired,
            completed: stats.completed,
            cancelled: stats.cancelled,
            total: stats.active + stats.expired + stats.completed + stats.cancelled,
            oldest_active: stats.oldest_active_created_at.map(when),
        },
        open_groups: open.len(),
        open_groups_more,
        sweeper_runs: sweeper_runs.into_iter().map(Into::into).collect(),
        reconciler_runs: reconciler_runs.into_iter().map(Into::into).collect(),
    };
    Ok(state.pages.render("admin_overview.html", page))
}
