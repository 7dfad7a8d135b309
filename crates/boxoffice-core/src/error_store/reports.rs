//! The error store's records: reports as accepted (already scrubbed and fingerprinted),
//! groups with their counts, and what recording one did.

use crate::clock::Timestamp;
use crate::error_store::grouping::Fingerprint;
use crate::failures::Severity;
use crate::ids::{ErrorGroupId, OrganizationId};

/// One error occurrence, scrubbed and fingerprinted, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// 32 lowercase hex; a report sent twice with one id is stored once.
    pub event_id: String,
    /// Whose error: `org:<id>` for an organization, `server` for boxoffice's own.
    pub scope: String,
    /// Its group's fingerprint.
    pub fingerprint: Fingerprint,
    /// Its group's title (type: normalized message).
    pub title: String,
    /// How bad.
    pub severity: Severity,
    /// Where (`checkout`, `payments`, `http`, …).
    pub component: Option<String>,
    /// The scrubbed message.
    pub message: String,
    /// The request it happened in, if known.
    pub request_id: Option<String>,
    /// The whole scrubbed report, as JSON.
    pub payload: String,
    /// The release the reporter runs (Sentry's `release`), if it said.
    pub release: Option<String>,
    /// The environment (`production`, `staging`), if it said.
    pub environment: Option<String>,
    /// When it was received.
    pub received_at: Timestamp,
}

/// What recording a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The group it counted in.
    pub group_id: ErrorGroupId,
    /// A group seen for the first time.
    pub new_group: bool,
    /// A resolved group seen again: reopened.
    pub regression: bool,
    /// The event id was already stored: nothing changed.
    pub duplicate: bool,
    /// The alert this report queued, if any (at most one per group per transaction).
    pub alert: Option<AlertKind>,
}

/// A group of occurrences of one error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorGroup {
    /// `grp_…`.
    pub id: ErrorGroupId,
    /// Whose errors.
    pub scope: String,
    /// The fingerprint.
    pub fingerprint: String,
    /// The grouping algorithm's version that made the fingerprint.
    pub grouping_version: i64,
    /// Type: normalized message.
    pub title: String,
    /// The most severe occurrence so far.
    pub severity: Severity,
    /// The component of the first occurrence.
    pub component: Option<String>,
    /// Occurrences.
    pub count: i64,
    /// First occurrence.
    pub first_seen: Timestamp,
    /// Latest occurrence.
    pub last_seen: Timestamp,
    /// Marked resolved (reopened by a new occurrence).
    pub resolved: bool,
}

/// One stored occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredError {
    /// The event id.
    pub event_id: String,
    /// Severity of this occurrence.
    pub severity: Severity,
    /// The scrubbed message.
    pub message: String,
    /// The request it happened in.
    pub request_id: Option<String>,
    /// The reporter's release.
    pub release: Option<String>,
    /// The reporter's environment.
    pub environment: Option<String>,
    /// The whole scrubbed report.
    pub payload: String,
    /// When received.
    pub received_at: Timestamp,
}

/// Filters for listing groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFilter {
    /// Only groups whose severity is this.
    pub severity: Option<Severity>,
    /// Only resolved (true) or open (false) groups.
    pub resolved: Option<bool>,
}

/// An organization's Sentry-compatible project: its DSN is
/// `http://<public_key>@<host>/<project_id>` (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorProject {
    /// The numeric project id, assigned by the database (1, 2, …).
    pub project_id: i64,
    /// The organization whose errors these are.
    pub organization_id: OrganizationId,
    /// The DSN's public key (32 lowercase hex). Public by design: browsers embed it.
    pub public_key: String,
}

impl ErrorProject {
    /// The scope under which this project's errors are grouped.
    pub fn scope(&self) -> String {
        organization_scope(&self.organization_id)
    }
}

/// The scope of boxoffice's own errors.
pub const SERVER_SCOPE: &str = "server";

/// The scope of an organization's errors.
pub fn organization_scope(id: &OrganizationId) -> String {
    format!("org:{id}")
}

/// Why an alert is sent (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A group seen for the first time, of severity `error` or worse.
    NewGroup,
    /// A resolved group seen again.
    Regression,
    /// A `critical` occurrence in a group that is neither new nor regressed.
    Critical,
}

impl AlertKind {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NewGroup => "new_group",
            AlertKind::Regression => "regression",
            AlertKind::Critical => "critical",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "new_group" => Some(AlertKind::NewGroup),
            "regression" => Some(AlertKind::Regression),
            "critical" => Some(AlertKind::Critical),
            _ => None,
        }
    }
}

/// When recording errors queues alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertPolicy {
    /// Whether alerts are queued at all (an alert webhook is configured).
    pub enabled: bool,
    /// At most one alert per group per this many milliseconds (10 minutes).
    pub cooldown_ms: i64,
}

impl AlertPolicy {
    /// No alerts (no alert webhook configured).
    pub const OFF: AlertPolicy = AlertPolicy {
        enabled: false,
        cooldown_ms: 10 * 60 * 1000,
    };

    /// Whether one occurrence (or a batch of occurrences of one group, summarized) queues
    /// an alert, and why. `last_alerted_at` is the group's last queued alert, if any.
    ///
    /// Reports from the `alerts` component never alert: a failing alert webhook must not
    /// feed alerts about itself into the queue it cannot deliver.
    pub fn decide(
        &self,
        occurrence: &Occurrence,
        last_alerted_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Option<AlertKind> {
        if !self.enabled || occurrence.component.as_deref() == Some(ALERTS_COMPONENT) {
            return None;
        }
        let kind = if occurrence.new_group && occurrence.severity >= Severity::Error {
            AlertKind::NewGroup
        } else if occurrence.regression {
            AlertKind::Regression
        } else if occurrence.severity >= Severity::Critical {
            AlertKind::Critical
        } else {
            return None;
        };
        let cooled = last_alerted_at.is_none_or(|at| now.as_millis() - at.as_millis() >= self.cooldown_ms);
        cooled.then_some(kind)
    }
}

/// The component under which failed alert deliveries are recorded; it never alerts.
pub const ALERTS_COMPONENT: &str = "alerts";

/// What a store tells [`AlertPolicy::decide`] about the new occurrences of one group in one
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// The group was created by this transaction.
    pub new_group: bool,
    /// The group was resolved before this transaction.
    pub regression: bool,
    /// The most severe of the new occurrences.
    pub severity: Severity,
    /// The group's component.
    pub component: Option<String>,
}

/// An alert waiting in the durable outbox, with what its message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAlert {
    /// `alr_…`.
    pub id: String,
    /// Why.
    pub kind: AlertKind,
    /// The group, as it is now.
    pub group: ErrorGroup,
    /// Delivery attempts made before this one.
    pub attempts: i64,
    /// When it was queued.
    pub created_at: Timestamp,
}

/// How one delivery attempt of an alert ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertDelivery {
    /// Delivered; never sent again.
    Sent,
    /// Not delivered; try again at `retry_at`.
    Retry {
        /// Why it failed.
        error: String,
        /// When to try next.
        retry_at: Timestamp,
    },
    /// Not delivered, and given up on (the failure is recorded in the error store).
    GaveUp {
        /// Why the last attempt failed.
        error: String,
    },
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Occurrences older than the age limit or beyond a group's cap.
    pub events: u64,
    /// Groups left with no occurrence and last seen before the age limit.
    pub groups: u64,
    /// Delivered or abandoned alerts older than the age limit.
    pub alerts: u64,
}
