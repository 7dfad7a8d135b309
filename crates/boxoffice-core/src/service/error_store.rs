//! The error store's use cases (SPEC §7): preparing reports (scrub, then fingerprint),
//! recording them, the operator's view of groups, alert delivery, retention, and the
//! failures boxoffice reports about itself.

use std::sync::Arc;

use super::{BoxOffice, Error, minus, require_operator};
use crate::auth::Caller;
use crate::clock::Timestamp;
use crate::error_store::alerts::AlertSender;
use crate::error_store::cut_text as cut;
use crate::error_store::grouping::{self, Frame};
use crate::error_store::reports::{
    ALERTS_COMPONENT, AlertDelivery, ErrorGroup, ErrorProject, ErrorReport, GroupFilter, Pruned, Recorded,
    SERVER_SCOPE, StoredError, organization_scope,
};
use crate::error_store::scrub::{scrub_text, scrub_value};
use crate::failures::{Failure, Severity};
use crate::ids::ErrorGroupId;
use crate::jobs::{self, JobRun};

/// Alerts claimed per delivery run.
const ALERT_BATCH: u32 = 50;

/// How long a claimed alert is hidden from other instances: longer than one delivery
/// attempt (the sender's timeout), so an alert is never sent twice at once.
const ALERT_LEASE_MS: i64 = 60_000;

/// An error as a client reports it (`POST /api/v1/errors`), before scrubbing.
#[derive(Debug, Clone, Default)]
pub struct ErrorInput {
    /// How bad.
    pub severity: Option<Severity>,
    /// What happened.
    pub message: String,
    /// Where in the code, as text.
    pub stack_trace: Option<String>,
    /// Which part of the system (`checkout`, `payments`).
    pub component: Option<String>,
    /// Anything else, as JSON.
    pub context: Option<serde_json::Value>,
    /// An explicit grouping, as Sentry's `fingerprint`.
    pub fingerprint: Option<Vec<String>>,
    /// The request it happened in.
    pub request_id: Option<String>,
}

/// Turns a reported error into a report ready to store: scrubbed first, then
/// fingerprinted, as received at `now`. Nothing is stored yet (see
/// [`BoxOffice::record_errors`]); the server's ingestion pipeline batches reports into one
/// commit. A free function so the pipeline can prepare without a [`BoxOffice`].
pub fn prepare_error(caller: &Caller, input: ErrorInput, now: Timestamp) -> Result<ErrorReport, Error> {
    let scope = match caller {
        Caller::Operator => SERVER_SCOPE.to_owned(),
        Caller::Organization { organization_id, .. } => organization_scope(organization_id),
    };
    let severity = input.severity.unwrap_or(Severity::Error);
    let message = cut(&scrub_text(input.message.trim()));
    if message.is_empty() {
        return Err(Error::Invalid("message must not be empty".into()));
    }
    let stack_trace = input.stack_trace.as_deref().map(|trace| cut(&scrub_text(trace)));
    let component = input.component.as_deref().map(|c| cut(&scrub_text(c.trim())));
    // The top lines of a stack trace stand in for frames; line numbers are normalized away.
    let frames: Vec<Frame> = stack_trace
        .iter()
        .flat_map(|trace| trace.lines())
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take(grouping::GROUPING_FRAMES)
        .map(|line| Frame {
            function: Some(grouping::normalize_message(line)),
            ..Frame::default()
        })
        .collect();
    let explicit: Option<Vec<String>> = input
        .fingerprint
        .map(|parts| parts.iter().map(|part| scrub_text(part).into_owned()).collect());
    let fingerprint = grouping::fingerprint(explicit.as_deref(), component.as_deref(), &message, &frames);
    let mut context = input.context.unwrap_or(serde_json::Value::Null);
    scrub_value(&mut context);
    let event_id = crate::ids::random_hex();
    let payload = serde_json::json!({
        "severity": severity.as_str(),
        "message": message,
        "stack_trace": stack_trace,
        "component": component,
        "context": context,
        "fingerprint": explicit,
    });
    Ok(ErrorReport {
        event_id,
        scope,
        fingerprint,
        title: grouping::title(None, &message),
        severity,
        component,
        message,
        request_id: input.request_id,
        release: None,
        environment: None,
        payload: payload.to_string(),
        received_at: now,
    })
}

fn has_nul(report: &ErrorReport) -> bool {
    [
        Some(&report.event_id),
        Some(&report.scope),
        Some(&report.title),
        Some(&report.message),
        Some(&report.payload),
        report.component.as_ref(),
        report.request_id.as_ref(),
        report.release.as_ref(),
        report.environment.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|text| text.contains('\0'))
}

fn without_nul(mut report: ErrorReport) -> ErrorReport {
    let clean = |text: &mut String| {
        if text.contains('\0') {
            *text = text.replace('\0', "\u{fffd}");
        }
    };
    for text in [
        &mut report.event_id,
        &mut report.scope,
        &mut report.title,
        &mut report.message,
        &mut report.payload,
    ] {
        clean(text);
    }
    for text in [
        &mut report.component,
        &mut report.request_id,
        &mut report.release,
        &mut report.environment,
    ]
    .into_iter()
    .flatten()
    {
        clean(text);
    }
    report
}

/// Turns one of boxoffice's own failures into a report for the `server` scope, as received
/// at `now`.
pub fn prepare_failure(failure: Failure, now: Timestamp) -> Result<ErrorReport, Error> {
    let input = ErrorInput {
        severity: Some(failure.severity),
        message: failure.message,
        stack_trace: failure.backtrace,
        component: Some(failure.component),
        context: None,
        fingerprint: None,
        request_id: failure.request_id,
    };
    prepare_error(&Caller::Operator, input, now)
}

impl BoxOffice {
    /// Turns a reported error into a report ready to store (see [`prepare_error`]).
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn prepare_error(&self, caller: &Caller, input: ErrorInput) -> Result<ErrorReport, Error> {
        prepare_error(caller, input, self.now())
    }

    /// Stores prepared reports in one transaction, queueing the alerts they call for.
    /// One [`Recorded`] per report, in order.
    #[tracing::instrument(level = "debug", skip_all, fields(reports = reports.len()))]
    pub async fn record_errors(&self, reports: &[ErrorReport]) -> Result<Vec<Recorded>, Error> {
        if reports.iter().any(has_nul) {
            // PostgreSQL text cannot hold NUL; a hostile report must not fail its batch.
            let cleaned: Vec<ErrorReport> = reports.iter().cloned().map(without_nul).collect();
            return Ok(self
                .error_store()
                .record_errors(&cleaned, &self.settings.alerts)
                .await?);
        }
        Ok(self.error_store().record_errors(reports, &self.settings.alerts).await?)
    }

    /// The error project with this numeric id (public: the Sentry key is checked by the
    /// caller against the project's).
    #[tracing::instrument(level = "debug", skip_all, fields(project_id))]
    pub async fn find_error_project(&self, project_id: i64) -> Result<Option<ErrorProject>, Error> {
        Ok(self.error_store().find_error_project(project_id).await?)
    }

    /// Prepares and stores one error at once (for callers without a pipeline: the CLI,
    /// tests). Returns the stored event id and what recording did.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn report_error(&self, caller: &Caller, input: ErrorInput) -> Result<(String, Recorded), Error> {
        let report = self.prepare_error(caller, input)?;
        let mut recorded = self.record_errors(std::slice::from_ref(&report)).await?;
        let recorded = recorded
            .pop()
            .ok_or_else(|| Error::Invalid("nothing recorded".into()))?;
        Ok((report.event_id, recorded))
    }

    /// Error groups, most recently seen first (operator).
    #[tracing::instrument(level = "debug", skip_all, fields(limit))]
    pub async fn list_error_groups(
        &self,
        caller: &Caller,
        filter: &GroupFilter,
        limit: u32,
    ) -> Result<Vec<ErrorGroup>, Error> {
        require_operator(caller)?;
        Ok(self.error_store().list_error_groups(filter, limit).await?)
    }

    /// A group with its latest occurrences (operator).
    #[tracing::instrument(level = "debug", skip_all, fields(group_id = %id))]
    pub async fn get_error_group(
        &self,
        caller: &Caller,
        id: &ErrorGroupId,
    ) -> Result<(ErrorGroup, Vec<StoredError>), Error> {
        require_operator(caller)?;
        Ok(self.error_store().get_error_group(id, 20).await?)
    }

    /// Marks a group resolved (operator); a new occurrence reopens it.
    #[tracing::instrument(level = "debug", skip_all, fields(group_id = %id))]
    pub async fn resolve_error_group(&self, caller: &Caller, id: &ErrorGroupId) -> Result<ErrorGroup, Error> {
        require_operator(caller)?;
        Ok(self.error_store().resolve_error_group(id, self.now()).await?)
    }

    /// The same use cases, sending alerts through `sender`: recording errors now queues
    /// alerts, and the alert job delivers them.
    pub fn with_alert_sender(mut self, sender: Arc<dyn AlertSender>) -> Self {
        self.alerts = Some(sender);
        self.settings.alerts.enabled = true;
        self
    }

    /// Reports a failure of boxoffice itself to the failure sink (the server's error
    /// pipeline: stored, grouped, alerted; spooled while the database is down).
    pub fn report_failure(&self, failure: Failure) {
        self.failures.report(failure);
    }

    /// The alert job: delivers due alerts, retrying failed ones with backoff and giving up
    /// after the configured attempts (recorded as a failure of component `alerts`, which
    /// never alerts itself). Safe with several instances: each alert is claimed by one.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn deliver_alerts(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let Some(sender) = self.alerts.clone() else {
            return self.record_run(jobs::ALERT_SENDER, started_at, 0, Vec::new()).await;
        };
        let retry = self.settings.alert_retry;
        let mut affected = 0;
        let mut errors = Vec::new();
        let claimed = self
            .error_store()
            .claim_alerts(started_at, ALERT_LEASE_MS, ALERT_BATCH)
            .await?;
        for alert in claimed {
            let delivery = match sender.send(&alert).await {
                Ok(()) => AlertDelivery::Sent,
                Err(error) => {
                    let failed = u32::try_from(alert.attempts).unwrap_or(u32::MAX).saturating_add(1);
                    if failed >= retry.max_attempts {
                        self.report_failure(Failure::new(
                            Severity::Error,
                            ALERTS_COMPONENT,
                            format!(
                                "alert {} ({} in group {}: {}) could not be delivered after {failed} attempts: {error}",
                                alert.id,
                                alert.kind.as_str(),
                                alert.group.id,
                                alert.group.title
                            ),
                        ));
                        AlertDelivery::GaveUp { error }
                    } else {
                        AlertDelivery::Retry {
                            retry_at: self.now().plus(retry.wait_after(failed)),
                            error,
                        }
                    }
                }
            };
            match self.error_store().finish_alert(&alert.id, &delivery, self.now()).await {
                Ok(()) if delivery == AlertDelivery::Sent => affected += 1,
                Ok(()) => {}
                // The lease runs out and the alert is claimed again: at worst sent twice,
                // never lost.
                Err(err) => errors.push(format!("{}: {}", alert.id, super::error_chain(&err))),
            }
        }
        self.record_run(jobs::ALERT_SENDER, started_at, affected, errors).await
    }

    /// The retention job: removes occurrences older than the retention or beyond each
    /// group's cap, emptied old groups, and finished alerts.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn prune_errors(&self) -> Result<(JobRun, Pruned), Error> {
        let started_at = self.now();
        let pruned = self
            .store
            .prune_errors(
                minus(started_at, self.settings.error_retention),
                self.settings.error_events_per_group,
            )
            .await?;
        let run = self
            .record_run(
                jobs::ERROR_RETENTION,
                started_at,
                pruned.events + pruned.groups + pruned.alerts,
                Vec::new(),
            )
            .await?;
        Ok((run, pruned))
    }
}
