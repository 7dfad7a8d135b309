//! The error store (SPEC §7): scrubbed reports recorded in their groups, the alert outbox,
//! retention, and the error projects that Sentry SDKs report to.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error_store::reports::{
    AlertDelivery, AlertPolicy, ErrorGroup, ErrorProject, ErrorReport, GroupFilter, PendingAlert, Pruned, Recorded,
    StoredError,
};
use crate::ids::{ErrorGroupId, OrganizationId};
use crate::store::StoreError;

/// The error store: grouped reports, alerts, retention.
#[async_trait]
pub trait ErrorStore: Send + Sync + 'static {
    // ----- the error store (see `crate::error_store`) ------------------------------------------

    /// Records scrubbed, fingerprinted reports in their groups, all in one transaction
    /// (the ingestion pipeline batches concurrent reports into one commit). For each group:
    /// created if new, counted, `last_seen` advanced, severity raised to the most severe
    /// occurrence, reopened if resolved (a regression). A report whose event id is stored
    /// already, or repeated within the batch, changes nothing (`duplicate`). When `policy`
    /// decides an alert for a group, it is queued in the alert outbox in the same
    /// transaction and the group's last alert time set, so the cooldown holds across
    /// instances. Answers one [`Recorded`] per report, in order.
    ///
    /// Groups are locked in (scope, fingerprint) order, so concurrent batches on several
    /// instances cannot deadlock.
    async fn record_errors(&self, reports: &[ErrorReport], policy: &AlertPolicy) -> Result<Vec<Recorded>, StoreError>;

    /// The error project of an organization.
    async fn get_error_project(&self, organization_id: &OrganizationId) -> Result<ErrorProject, StoreError>;

    /// The error project with this numeric id, if any.
    async fn find_error_project(&self, project_id: i64) -> Result<Option<ErrorProject>, StoreError>;

    /// Claims up to `limit` queued alerts due at `now` for delivery: each claimed alert is
    /// hidden from other claimers until `now + lease_ms` (so two instances never deliver
    /// one alert at once; a claimer that dies releases it when the lease ends). Oldest
    /// first.
    async fn claim_alerts(&self, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<PendingAlert>, StoreError>;

    /// Records how one delivery attempt ended; counts the attempt.
    async fn finish_alert(&self, alert_id: &str, delivery: &AlertDelivery, now: Timestamp) -> Result<(), StoreError>;

    /// Retention: removes occurrences received before `older_than` and those beyond the
    /// newest `per_group_cap` of each group; groups left with no occurrence and last seen
    /// before `older_than`; sent or abandoned alerts created before `older_than`.
    async fn prune_errors(&self, older_than: Timestamp, per_group_cap: u32) -> Result<Pruned, StoreError>;

    /// Groups, most recently seen first.
    async fn list_error_groups(&self, filter: &GroupFilter, limit: u32) -> Result<Vec<ErrorGroup>, StoreError>;

    /// A group with its latest `events` occurrences, newest first.
    async fn get_error_group(
        &self,
        id: &ErrorGroupId,
        events: u32,
    ) -> Result<(ErrorGroup, Vec<StoredError>), StoreError>;

    /// Marks a group resolved; a new occurrence reopens it.
    async fn resolve_error_group(&self, id: &ErrorGroupId, now: Timestamp) -> Result<ErrorGroup, StoreError>;
}
