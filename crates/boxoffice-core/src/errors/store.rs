//! The error store's records: reports as accepted (already scrubbed and fingerprinted),
//! groups with their counts, and what recording one did.

use crate::clock::Timestamp;
use crate::errors::grouping::Fingerprint;
use crate::failures::Severity;
use crate::ids::ErrorGroupId;

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
