//! The error store's groups, occurrences and alert outbox (see
//! `boxoffice_core::error_store`).
//!
//! Recording runs one transaction per batch: each group's count, its occurrences and the
//! alert they call for commit together. What a batch does to a group is decided by
//! `boxoffice_core::error_store::batch::record_in_group`; this module locks the groups,
//! creates the missing ones, inserts the occurrences, and writes the decisions, each step
//! a bounded number of multi-row statements. Group rows are locked (`FOR UPDATE`, on
//! PostgreSQL) in (scope, fingerprint) order before their occurrences are counted, so
//! concurrent batches on any number of instances count one after the other, agree on the
//! alert cooldown and cannot deadlock. Races that remain (two batches creating one group,
//! or storing one event id) end in `ON CONFLICT DO NOTHING`.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use boxoffice_core::error_store::batch::{self, Batch, GroupKey, GroupState};
use boxoffice_core::error_store::grouping::GROUPING_VERSION;
use boxoffice_core::error_store::reports::{
    AlertDelivery, AlertKind, AlertPolicy, ErrorGroup, ErrorProject, ErrorReport, GroupFilter, PendingAlert, Pruned,
    Recorded, StoredError,
};
use boxoffice_core::failures::Severity;
use boxoffice_core::ids::{self, ErrorGroupId, OrganizationId};
use boxoffice_core::store::ErrorStore;
use boxoffice_core::{StoreError, Timestamp};

use crate::rows::{self, ERROR_GROUP_COLUMNS, STORED_ERROR_COLUMNS, StoredRow};
use crate::sql::{Conn, Query, query};
use crate::{SqlStore, catalog, in_transaction, is_unique_violation, with_connection};

/// Rows one retention transaction deletes at most, so that its locks and its WAL stay
/// small and ingestion (on SQLite, queued behind the write lock) never waits long.
const PRUNE_BATCH: i64 = 5_000;

/// Rows per multi-row statement: far below SQLite's limit of 32,766 bound parameters
/// (and PostgreSQL's 65,535) at nine values a row.
const ROWS_PER_STATEMENT: usize = 500;

#[async_trait]
impl ErrorStore for SqlStore {
    #[tracing::instrument(name = "store.record_errors", skip_all, fields(reports = reports.len()))]
    async fn record_errors(&self, reports: &[ErrorReport], policy: &AlertPolicy) -> Result<Vec<Recorded>, StoreError> {
        // `ON CONFLICT` settles the races of groups and event ids; a unique violation all
        // the same (say, two alert ids alike) is worth another try too.
        in_transaction!(self, retry_if = |err| is_unique_violation(&err), |conn| record(
            conn, reports, policy
        )
        .await?)
    }

    #[tracing::instrument(name = "store.get_error_project", skip_all, fields(organization = %organization_id.as_str()))]
    async fn get_error_project(&self, organization_id: &OrganizationId) -> Result<ErrorProject, StoreError> {
        with_connection!(self, |conn| catalog::error_project(conn, organization_id).await)
    }

    #[tracing::instrument(name = "store.find_error_project", skip(self))]
    async fn find_error_project(&self, project_id: i64) -> Result<Option<ErrorProject>, StoreError> {
        with_connection!(self, |conn| catalog::find_error_project(conn, project_id).await)
    }

    #[tracing::instrument(name = "store.claim_alerts", skip_all, fields(limit))]
    async fn claim_alerts(&self, now: Timestamp, lease_ms: i64, limit: u32) -> Result<Vec<PendingAlert>, StoreError> {
        in_transaction!(self, |conn| claim_alerts(conn, now, lease_ms, limit).await?)
    }

    #[tracing::instrument(name = "store.finish_alert", skip_all, fields(alert = %alert_id))]
    async fn finish_alert(&self, alert_id: &str, delivery: &AlertDelivery, now: Timestamp) -> Result<(), StoreError> {
        with_connection!(self, |conn| finish_alert(conn, alert_id, delivery, now).await)
    }

    #[tracing::instrument(name = "store.prune_errors", skip_all)]
    async fn prune_errors(&self, older_than: Timestamp, per_group_cap: u32) -> Result<Pruned, StoreError> {
        self.prune(older_than, per_group_cap).await
    }

    #[tracing::instrument(name = "store.list_error_groups", skip_all, fields(limit))]
    async fn list_error_groups(&self, filter: &GroupFilter, limit: u32) -> Result<Vec<ErrorGroup>, StoreError> {
        let mut listing = query(format!("SELECT {ERROR_GROUP_COLUMNS} FROM error_groups WHERE 1 = 1"));
        if let Some(severity) = filter.severity {
            listing = listing.push(" AND severity = ").push_bind(severity.as_str());
        }
        if let Some(resolved) = filter.resolved {
            listing = listing.push(" AND resolved = ").push_bind(resolved);
        }
        let listing = listing
            .push(" ORDER BY last_seen DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let found = with_connection!(self, |conn| listing.fetch_all(conn).await?);
        found.iter().map(rows::error_group).collect()
    }

    #[tracing::instrument(name = "store.get_error_group", skip_all, fields(group = %id.as_str()))]
    async fn get_error_group(
        &self,
        id: &ErrorGroupId,
        events: u32,
    ) -> Result<(ErrorGroup, Vec<StoredError>), StoreError> {
        with_connection!(self, |conn| get_group(conn, id, events).await)
    }

    #[tracing::instrument(name = "store.resolve_error_group", skip_all, fields(group = %id.as_str()))]
    async fn resolve_error_group(&self, id: &ErrorGroupId, now: Timestamp) -> Result<ErrorGroup, StoreError> {
        with_connection!(self, |conn| {
            let done = query("UPDATE error_groups SET resolved = TRUE, resolved_at = $1 WHERE id = $2")
                .bind(now.as_millis())
                .bind(id.as_str())
                .execute(conn)
                .await?;
            if done == 0 {
                return Err(StoreError::NotFound("error group"));
            }
            Ok(get_group(conn, id, 0).await?.0)
        })
    }
}

/// Records a batch of reports (see `ErrorStore::record_errors`), in the caller's
/// transaction.
async fn record(
    conn: &mut dyn Conn,
    reports: &[ErrorReport],
    policy: &AlertPolicy,
) -> Result<Vec<Recorded>, StoreError> {
    let mut batch = Batch::new(reports);
    let Some(now) = batch.now() else {
        return Ok(Vec::new());
    };
    let stored = stored_groups(conn, &batch.event_ids()).await?;
    let groups = batch.group(&stored);
    let mut lost = Vec::new();
    if !groups.is_empty() {
        for (i, recorded) in record_groups(conn, reports, &groups, policy, now).await? {
            match recorded {
                Some(recorded) => batch.answer(i, recorded),
                None => lost.push(i),
            }
        }
    }
    if !lost.is_empty() {
        // Stored by a concurrent batch since the look-up: duplicates too.
        let event_ids: Vec<&str> = lost.iter().map(|&i| reports[i].event_id.as_str()).collect();
        let stored = stored_groups(conn, &event_ids).await?;
        for i in lost {
            if let Some(group) = stored.get(&reports[i].event_id) {
                batch.answer_duplicate(i, group);
            }
        }
    }
    batch.finish()
}

/// The groups of those of `event_ids` that are stored already.
async fn stored_groups(conn: &mut dyn Conn, event_ids: &[&str]) -> Result<HashMap<String, String>, StoreError> {
    let mut stored = HashMap::with_capacity(event_ids.len());
    for chunk in event_ids.chunks(ROWS_PER_STATEMENT) {
        let found = query("SELECT event_id, group_id FROM error_events WHERE event_id IN (")
            .push_list(chunk.iter().copied())
            .push(")")
            .fetch_all(conn)
            .await?;
        for row in found {
            stored.insert(row.text("event_id")?, row.text("group_id")?);
        }
    }
    Ok(stored)
}

/// Records the reports of every group in the batch (none of them known to be stored):
/// lock the existing groups, create the missing ones, insert every occurrence, write each
/// group's decision, queue the alerts. Answers, per report index, what recording did, or
/// `None` when it turned out to be stored already by a concurrent batch.
async fn record_groups(
    conn: &mut dyn Conn,
    reports: &[ErrorReport],
    groups: &BTreeMap<GroupKey<'_>, Vec<usize>>,
    policy: &AlertPolicy,
    now: Timestamp,
) -> Result<Vec<(usize, Option<Recorded>)>, StoreError> {
    let keys: Vec<GroupKey<'_>> = groups.keys().copied().collect();
    let mut states = lock_groups(conn, &keys).await?;
    let missing: Vec<GroupKey<'_>> = keys.iter().copied().filter(|key| !states.contains_key(key)).collect();
    if !missing.is_empty() {
        create_groups(conn, reports, groups, &missing, &mut states).await?;
    }
    let members: Vec<(usize, &str)> = groups
        .iter()
        .flat_map(|(key, members)| {
            let id = states.get(key).map_or("", |state| state.id.as_str());
            members.iter().map(move |&i| (i, id))
        })
        .collect();
    let inserted = insert_events(conn, reports, &members).await?;

    let mut answers = Vec::with_capacity(members.len());
    let mut emptied = Vec::new();
    let mut alerts = Vec::new();
    for (key, indexes) in groups {
        let state = states
            .get(key)
            .ok_or_else(|| StoreError::Other("an error group vanished while recording".into()))?;
        let group_members: Vec<&ErrorReport> = indexes.iter().map(|&i| &reports[i]).collect();
        let recording = batch::record_in_group(state, &group_members, &inserted, policy, now);
        if recording.remove_empty_group {
            emptied.push(state.id.as_str());
        }
        if let Some(update) = &recording.update {
            let rank = update.severity as i64;
            query(
                "UPDATE error_groups SET event_count = event_count + $1,
                     last_seen = CASE WHEN last_seen > $2 THEN last_seen ELSE $2 END,
                     severity = CASE WHEN $3 > severity_rank THEN $4 ELSE severity END,
                     severity_rank = CASE WHEN $3 > severity_rank THEN $3 ELSE severity_rank END,
                     resolved = FALSE, resolved_at = NULL,
                     last_alerted_at = COALESCE($5, last_alerted_at)
                 WHERE id = $6",
            )
            .bind(update.count)
            .bind(update.last_seen.as_millis())
            .bind(rank)
            .bind(update.severity.as_str())
            .bind(update.alert.map(|_| now.as_millis()))
            .bind(state.id.as_str())
            .execute(conn)
            .await?;
            if let Some(kind) = update.alert {
                alerts.push((state.id.as_str(), kind));
            }
        }
        answers.extend(indexes.iter().copied().zip(recording.answers));
    }
    for chunk in emptied.chunks(ROWS_PER_STATEMENT) {
        query("DELETE FROM error_groups WHERE id IN (")
            .push_list(chunk.iter().copied())
            .push(")")
            .execute(conn)
            .await?;
    }
    queue_alerts(conn, &alerts, now).await?;
    Ok(answers)
}

/// `(scope, fingerprint) IN (VALUES …)` for a chunk of keys.
fn keys_in(sql: String, keys: &[GroupKey<'_>]) -> Query {
    let mut selected = query(sql).push(" (scope, fingerprint) IN (VALUES ");
    for (n, (scope, fingerprint)) in keys.iter().enumerate() {
        if n > 0 {
            selected = selected.push(", ");
        }
        selected = selected
            .push("(")
            .push_bind(*scope)
            .push(", ")
            .push_bind(*fingerprint)
            .push(")");
    }
    selected.push(")")
}

/// Reads and locks the groups with these keys that exist, in key order (the order every
/// batch locks in, so concurrent batches wait for each other instead of deadlocking).
async fn lock_groups<'a>(
    conn: &mut dyn Conn,
    keys: &[GroupKey<'a>],
) -> Result<HashMap<GroupKey<'a>, GroupState>, StoreError> {
    let lock = conn.dialect().for_update();
    let mut states = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let found = keys_in(
            "SELECT id, scope, fingerprint, resolved, last_alerted_at, component FROM error_groups WHERE".into(),
            chunk,
        )
        .push(" ORDER BY scope, fingerprint")
        .push(lock)
        .fetch_all(conn)
        .await?;
        read_states(&found, chunk, false, &mut states)?;
    }
    Ok(states)
}

/// Reads locked or created group rows (`id, scope, fingerprint, resolved,
/// last_alerted_at, component`) into `states`, under the batch's own keys.
fn read_states<'a>(
    found: &[crate::sql::Row],
    keys: &[GroupKey<'a>],
    new: bool,
    states: &mut HashMap<GroupKey<'a>, GroupState>,
) -> Result<(), StoreError> {
    for row in found {
        let scope = row.text("scope")?;
        let fingerprint = row.text("fingerprint")?;
        let Some(key) = keys
            .iter()
            .copied()
            .find(|(s, f)| *s == scope.as_str() && *f == fingerprint.as_str())
        else {
            continue;
        };
        states.insert(
            key,
            GroupState {
                id: row.text("id")?,
                new,
                resolved: row.boolean("resolved")?,
                last_alerted_at: row.optional_integer("last_alerted_at")?.map(Timestamp::from_millis),
                component: row.optional_text("component")?,
            },
        );
    }
    Ok(())
}

/// Creates the missing groups, in key order. A new group starts empty and at the lowest
/// severity: the update after its occurrences are stored counts and ranks it, as it does
/// an existing group. A group a concurrent batch created meanwhile (the insert waited for
/// that batch to commit) is locked as it now exists.
async fn create_groups<'a>(
    conn: &mut dyn Conn,
    reports: &[ErrorReport],
    groups: &BTreeMap<GroupKey<'a>, Vec<usize>>,
    missing: &[GroupKey<'a>],
    states: &mut HashMap<GroupKey<'a>, GroupState>,
) -> Result<(), StoreError> {
    for chunk in missing.chunks(ROWS_PER_STATEMENT / 2) {
        let mut insert = query(
            "INSERT INTO error_groups (id, scope, fingerprint, grouping_version, title, severity, severity_rank,
                 component, event_count, first_seen, last_seen) VALUES ",
        );
        let mut any = false;
        for key in chunk {
            let members = groups.get(key).map(Vec::as_slice).unwrap_or_default();
            let Some(&first) = members.first() else { continue };
            let first = &reports[first];
            let first_seen = members
                .iter()
                .map(|&i| reports[i].received_at)
                .fold(first.received_at, Ord::min)
                .as_millis();
            if any {
                insert = insert.push(", ");
            }
            any = true;
            insert = insert
                .push("(")
                .push_bind(ErrorGroupId::generate().as_str())
                .push(", ")
                .push_bind(key.0)
                .push(", ")
                .push_bind(key.1)
                .push(", ")
                .push_bind(i64::from(GROUPING_VERSION))
                .push(", ")
                .push_bind(first.title.as_str())
                .push(", ")
                .push_bind(Severity::Debug.as_str())
                .push(", ")
                .push_bind(Severity::Debug as i64)
                .push(", ")
                .push_bind(first.component.as_deref())
                .push(", 0, ")
                .push_bind(first_seen)
                .push(", ")
                .push_bind(first_seen)
                .push(")");
        }
        if !any {
            continue;
        }
        let created = insert
            .push(
                " ON CONFLICT (scope, fingerprint) DO NOTHING
                  RETURNING id, scope, fingerprint, resolved, last_alerted_at, component",
            )
            .fetch_all(conn)
            .await?;
        read_states(&created, chunk, true, states)?;
    }
    let raced: Vec<GroupKey<'a>> = missing
        .iter()
        .copied()
        .filter(|key| !states.contains_key(key))
        .collect();
    if !raced.is_empty() {
        states.extend(lock_groups(conn, &raced).await?);
    }
    Ok(())
}

/// Stores the occurrences, a few multi-row statements whatever their number; answers the
/// event ids actually inserted.
async fn insert_events(
    conn: &mut dyn Conn,
    reports: &[ErrorReport],
    members: &[(usize, &str)],
) -> Result<HashSet<String>, StoreError> {
    let mut inserted = HashSet::with_capacity(members.len());
    for chunk in members.chunks(ROWS_PER_STATEMENT) {
        let mut insert = query(
            "INSERT INTO error_events (event_id, group_id, severity, message, request_id, release, environment,
                 payload, received_at) VALUES ",
        );
        for (n, &(i, group_id)) in chunk.iter().enumerate() {
            let report = &reports[i];
            if n > 0 {
                insert = insert.push(", ");
            }
            insert = insert
                .push("(")
                .push_list([
                    crate::sql::Value::from(report.event_id.as_str()),
                    group_id.into(),
                    report.severity.as_str().into(),
                    report.message.as_str().into(),
                    report.request_id.as_deref().into(),
                    report.release.as_deref().into(),
                    report.environment.as_deref().into(),
                    report.payload.as_str().into(),
                    report.received_at.as_millis().into(),
                ])
                .push(")");
        }
        let found = insert
            .push(" ON CONFLICT (event_id) DO NOTHING RETURNING event_id")
            .fetch_all(conn)
            .await?;
        for row in found {
            inserted.insert(row.text("event_id")?);
        }
    }
    Ok(inserted)
}

/// Queues alerts, due at once.
async fn queue_alerts(conn: &mut dyn Conn, alerts: &[(&str, AlertKind)], now: Timestamp) -> Result<(), StoreError> {
    for chunk in alerts.chunks(ROWS_PER_STATEMENT) {
        let mut insert = query(
            "INSERT INTO alert_outbox (id, group_id, kind, status, attempts, next_attempt_at, created_at) VALUES ",
        );
        for (n, (group_id, kind)) in chunk.iter().enumerate() {
            if n > 0 {
                insert = insert.push(", ");
            }
            insert = insert
                .push("(")
                .push_list([
                    format!("alr_{}", ids::random_hex()),
                    (*group_id).to_owned(),
                    kind.as_str().to_owned(),
                ])
                .push(", 'pending', 0, ")
                .push_bind(now.as_millis())
                .push(", ")
                .push_bind(now.as_millis())
                .push(")");
        }
        insert.execute(conn).await?;
    }
    Ok(())
}

/// Claims due alerts (see `ErrorStore::claim_alerts`): rows another claimer holds are
/// skipped, not waited for; the claimed ones are leased until `now + lease_ms`.
async fn claim_alerts(
    conn: &mut dyn Conn,
    now: Timestamp,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<PendingAlert>, StoreError> {
    let skip_locked = conn.dialect().skip_locked();
    let claimed = query(format!(
        "UPDATE alert_outbox SET next_attempt_at = $1
         WHERE id IN (
             SELECT id FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= $2
             ORDER BY created_at, id LIMIT $3{skip_locked})
         RETURNING id"
    ))
    .bind(now.as_millis().saturating_add(lease_ms))
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| row.text("id"))
    .collect::<Result<Vec<_>, _>>()?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    // The alert's columns are renamed so that the group's keep their own names.
    let found = query(format!(
        "SELECT a.alert_id, a.kind, a.attempts, a.alert_created_at, {ERROR_GROUP_COLUMNS}
         FROM (SELECT id AS alert_id, group_id, kind, attempts, created_at AS alert_created_at
               FROM alert_outbox WHERE id IN ("
    ))
    .push_list(claimed)
    .push(
        ")) a
         JOIN error_groups ON error_groups.id = a.group_id
         ORDER BY a.alert_created_at, a.alert_id",
    )
    .fetch_all(conn)
    .await?;
    found.iter().map(rows::pending_alert).collect()
}

/// Records how a delivery attempt ended. An alert that is no longer pending (finished by
/// another claimer after this one's lease ran out) stays as it is.
async fn finish_alert(
    conn: &mut dyn Conn,
    id: &str,
    delivery: &AlertDelivery,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (status, retry_at, error, sent_at) = match delivery {
        AlertDelivery::Sent => ("sent", None, None, Some(now.as_millis())),
        AlertDelivery::Retry { error, retry_at } => ("pending", Some(retry_at.as_millis()), Some(error.as_str()), None),
        AlertDelivery::GaveUp { error } => ("failed", None, Some(error.as_str()), None),
    };
    let done = query(
        "UPDATE alert_outbox SET attempts = attempts + 1, status = $1,
             next_attempt_at = COALESCE($2, next_attempt_at),
             last_error = COALESCE($3, last_error),
             sent_at = COALESCE($4, sent_at)
         WHERE id = $5 AND status = 'pending'",
    )
    .bind(status)
    .bind(retry_at)
    .bind(error)
    .bind(sent_at)
    .bind(id)
    .execute(conn)
    .await?;
    if done == 0 {
        query("SELECT id FROM alert_outbox WHERE id = $1")
            .bind(id)
            .fetch_one(conn, "alert")
            .await?;
    }
    Ok(())
}

async fn get_group(
    conn: &mut dyn Conn,
    id: &ErrorGroupId,
    events: u32,
) -> Result<(ErrorGroup, Vec<StoredError>), StoreError> {
    let row = query(format!("SELECT {ERROR_GROUP_COLUMNS} FROM error_groups WHERE id = $1"))
        .bind(id.as_str())
        .fetch_one(conn, "error group")
        .await?;
    let group = rows::error_group(&row)?;
    let found = query(format!(
        "SELECT {STORED_ERROR_COLUMNS} FROM error_events
         WHERE group_id = $1 ORDER BY received_at DESC, event_id DESC LIMIT $2"
    ))
    .bind(id.as_str())
    .bind(i64::from(events))
    .fetch_all(conn)
    .await?;
    let events = found.iter().map(rows::stored_error).collect::<Result<Vec<_>, _>>()?;
    Ok((group, events))
}

impl SqlStore {
    /// Retention (see `ErrorStore::prune_errors`), in bounded transactions of its own.
    async fn prune(&self, older_than: Timestamp, per_group_cap: u32) -> Result<Pruned, StoreError> {
        let older_than = older_than.as_millis();
        let mut pruned = Pruned::default();
        pruned.events += self
            .delete_in_batches(|skip_locked| {
                query(format!(
                    "DELETE FROM error_events WHERE event_id IN (
                         SELECT event_id FROM error_events WHERE received_at < $1 LIMIT $2{skip_locked})"
                ))
                .bind(older_than)
            })
            .await?;

        // Groups over the cap, then for each the newest occurrence beyond it: it and all
        // older ones go.
        let cap = i64::from(per_group_cap);
        let over = with_connection!(self, |conn| query(
            "SELECT group_id FROM error_events GROUP BY group_id HAVING COUNT(*) > $1"
        )
        .bind(cap)
        .fetch_all(conn)
        .await?);
        for group in &over {
            let group_id = group.text("group_id")?;
            let cutoff = with_connection!(self, |conn| query(
                "SELECT received_at, event_id FROM error_events WHERE group_id = $1
                 ORDER BY received_at DESC, event_id DESC LIMIT 1 OFFSET $2"
            )
            .bind(group_id.as_str())
            .bind(cap)
            .fetch_optional(conn)
            .await?);
            let Some(cutoff) = cutoff else { continue };
            let received_at = cutoff.integer("received_at")?;
            let event_id = cutoff.text("event_id")?;
            pruned.events += self
                .delete_in_batches(|skip_locked| {
                    query(format!(
                        "DELETE FROM error_events WHERE event_id IN (
                             SELECT event_id FROM error_events
                             WHERE group_id = $1 AND (received_at < $2 OR (received_at = $2 AND event_id <= $3))
                             LIMIT $4{skip_locked})"
                    ))
                    .bind(group_id.as_str())
                    .bind(received_at)
                    .bind(event_id.as_str())
                })
                .await?;
        }

        // Groups left empty, with their alerts (which reference them). Locked first: an
        // occurrence being recorded holds its group's lock, and one inserted later waits
        // for ours (its foreign key check), so the groups confirmed empty below stay empty.
        loop {
            let (found, alerts, groups) = in_transaction!(self, |conn| {
                let skip_locked = conn.dialect().skip_locked();
                let ids = query(format!(
                    "SELECT id FROM error_groups WHERE last_seen < $1
                         AND NOT EXISTS (SELECT 1 FROM error_events WHERE error_events.group_id = error_groups.id)
                     LIMIT $2{skip_locked}"
                ))
                .bind(older_than)
                .bind(PRUNE_BATCH)
                .fetch_all(conn)
                .await?
                .iter()
                .map(|row| row.text("id"))
                .collect::<Result<Vec<_>, _>>()?;
                let (mut alerts, mut groups) = (0, 0);
                // Checked again in statements of their own: the look-up's snapshot
                // predates occurrences committed while it ran.
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    alerts += query("DELETE FROM alert_outbox WHERE group_id IN (")
                        .push_list(chunk.iter().map(String::as_str))
                        .push(
                            ") AND NOT EXISTS (SELECT 1 FROM error_events
                                              WHERE error_events.group_id = alert_outbox.group_id)",
                        )
                        .execute(conn)
                        .await?;
                    groups += query("DELETE FROM error_groups WHERE id IN (")
                        .push_list(chunk.iter().map(String::as_str))
                        .push(
                            ") AND NOT EXISTS (SELECT 1 FROM error_events
                                              WHERE error_events.group_id = error_groups.id)",
                        )
                        .execute(conn)
                        .await?;
                }
                (ids.len(), alerts, groups)
            })?;
            pruned.alerts += alerts;
            pruned.groups += groups;
            if found < PRUNE_BATCH.unsigned_abs() as usize {
                break;
            }
        }

        pruned.alerts += self
            .delete_in_batches(|skip_locked| {
                query(format!(
                    "DELETE FROM alert_outbox WHERE id IN (
                         SELECT id FROM alert_outbox WHERE status IN ('sent', 'failed') AND created_at < $1
                         LIMIT $2{skip_locked})"
                ))
                .bind(older_than)
            })
            .await?;
        Ok(pruned)
    }

    /// Runs a bounded `DELETE` (built for the engine's `SKIP LOCKED` clause; its last
    /// parameter, bound here, is the batch size) in transactions of its own until a batch
    /// comes back short.
    async fn delete_in_batches(&self, statement: impl Fn(&str) -> Query + Send + Sync) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = in_transaction!(self, |conn| {
                let skip_locked = conn.dialect().skip_locked();
                statement(skip_locked).bind(PRUNE_BATCH).execute(conn).await?
            })?;
            total += deleted;
            if deleted < PRUNE_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }
}
