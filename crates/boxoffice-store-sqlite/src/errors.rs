//! The error store's groups, occurrences and alert outbox (see `boxoffice_core::error_store`).
//!
//! Recording runs one write transaction per batch: each group's count, its occurrences and
//! the alert they call for commit together. The write lock serializes batches, so groups
//! need no row locks here; they are still visited in (scope, fingerprint) order, as on
//! PostgreSQL, so both engines answer alike.

use std::collections::{HashMap, HashSet};

use boxoffice_core::error_store::batch::Batch;
use boxoffice_core::error_store::grouping::GROUPING_VERSION;
use boxoffice_core::error_store::reports::{
    AlertDelivery, AlertKind, AlertPolicy, ErrorGroup, ErrorReport, GroupFilter, Occurrence, PendingAlert, Pruned,
    Recorded, StoredError,
};
use boxoffice_core::failures::Severity;
use boxoffice_core::ids::{self, ErrorGroupId};
use boxoffice_core::rows::{self, ERROR_GROUP_COLUMNS, STORED_ERROR_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::rows::Columns;
use crate::{SqliteStore, map_error};

/// Rows per multi-row statement: far below SQLite's limit of 32766 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// Rows one retention transaction deletes at most, so that ingestion, queued behind the
/// write lock, never waits long for a pruning pass.
const PRUNE_BATCH: i64 = 5_000;

/// Records a batch of reports (see `Store::record_errors`). Runs inside a write transaction.
pub(crate) async fn record(
    conn: &mut SqliteConnection,
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
    for members in groups.values() {
        let members_reports: Vec<&ErrorReport> = members.iter().map(|&i| &reports[i]).collect();
        let recorded = record_group(conn, &members_reports, policy, now).await?;
        for (&i, recorded) in members.iter().zip(recorded) {
            match recorded {
                Some(recorded) => batch.answer(i, recorded),
                None => lost.push(i),
            }
        }
    }
    if !lost.is_empty() {
        // Stored since the look-up, so duplicates too. Cannot happen under the write lock;
        // kept in the shape of the PostgreSQL store, where a concurrent batch can.
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
async fn stored_groups(conn: &mut SqliteConnection, event_ids: &[&str]) -> Result<HashMap<String, String>, StoreError> {
    let mut stored = HashMap::new();
    for chunk in event_ids.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<Sqlite>::new("SELECT event_id, group_id FROM error_events WHERE event_id IN (");
        let mut list = select.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        select.push(")");
        for row in select.build().fetch_all(&mut *conn).await.map_err(map_error)? {
            stored.insert(
                row.try_get("event_id").map_err(map_error)?,
                row.try_get("group_id").map_err(map_error)?,
            );
        }
    }
    Ok(stored)
}

/// A group as recording finds it.
struct GroupState {
    id: String,
    new: bool,
    resolved: bool,
    last_alerted_at: Option<Timestamp>,
    component: Option<String>,
}

/// Records the reports of one group, none of them known to be stored, and answers for
/// each what recording did, or `None` when it turned out to be stored already.
async fn record_group(
    conn: &mut SqliteConnection,
    batch: &[&ErrorReport],
    policy: &AlertPolicy,
    now: Timestamp,
) -> Result<Vec<Option<Recorded>>, StoreError> {
    let group = open_group(conn, batch).await?;
    let inserted = insert_events(conn, &group.id, batch).await?;
    let stored: Vec<&ErrorReport> = batch
        .iter()
        .copied()
        .filter(|report| inserted.contains(&report.event_id))
        .collect();
    if stored.is_empty() {
        // All stored already by someone else: nothing counts, and a group created just now
        // must not stay behind without an occurrence.
        if group.new {
            sqlx::query("DELETE FROM error_groups WHERE id = ?")
                .bind(&group.id)
                .execute(&mut *conn)
                .await
                .map_err(map_error)?;
        }
        return Ok(vec![None; batch.len()]);
    }
    let severity = stored
        .iter()
        .map(|report| report.severity)
        .fold(Severity::Debug, Ord::max);
    let last_seen = stored
        .iter()
        .map(|report| report.received_at)
        .fold(stored[0].received_at, Ord::max);
    let regression = group.resolved;
    let alert = policy.decide(
        &Occurrence {
            new_group: group.new,
            regression,
            severity,
            component: group.component.clone(),
        },
        group.last_alerted_at,
        now,
    );
    let rank = severity as i64;
    sqlx::query(
        "UPDATE error_groups SET event_count = event_count + ?,
             last_seen = MAX(last_seen, ?),
             severity = CASE WHEN ? > severity_rank THEN ? ELSE severity END,
             severity_rank = MAX(severity_rank, ?),
             resolved = FALSE, resolved_at = NULL,
             last_alerted_at = COALESCE(?, last_alerted_at)
         WHERE id = ?",
    )
    .bind(i64::try_from(stored.len()).unwrap_or(i64::MAX))
    .bind(last_seen.as_millis())
    .bind(rank)
    .bind(severity.as_str())
    .bind(rank)
    .bind(alert.map(|_| now.as_millis()))
    .bind(&group.id)
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    if let Some(kind) = alert {
        queue_alert(conn, &group.id, kind, now).await?;
    }

    // The group's news (new, regressed, alerted) goes to its first stored report only.
    let mut first = true;
    Ok(batch
        .iter()
        .map(|report| {
            if !inserted.contains(&report.event_id) {
                return None;
            }
            let recorded = Recorded {
                group_id: ErrorGroupId::from_trusted(group.id.clone()),
                new_group: first && group.new,
                regression: first && regression,
                duplicate: false,
                alert: if first { alert } else { None },
            };
            first = false;
            Some(recorded)
        })
        .collect())
}

/// Finds the batch's group, or creates it. A new group starts empty and at the lowest
/// severity: the update after its occurrences are stored counts and ranks it, as it does
/// an existing group.
async fn open_group(conn: &mut SqliteConnection, batch: &[&ErrorReport]) -> Result<GroupState, StoreError> {
    let first = batch[0];
    let found = sqlx::query(
        "SELECT id, resolved, last_alerted_at, component FROM error_groups WHERE scope = ? AND fingerprint = ?",
    )
    .bind(&first.scope)
    .bind(first.fingerprint.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_error)?;
    if let Some(row) = found {
        return Ok(GroupState {
            id: row.try_get("id").map_err(map_error)?,
            new: false,
            resolved: row.try_get("resolved").map_err(map_error)?,
            last_alerted_at: row
                .try_get::<Option<i64>, _>("last_alerted_at")
                .map_err(map_error)?
                .map(Timestamp::from_millis),
            component: row.try_get("component").map_err(map_error)?,
        });
    }
    // The write lock is held: nobody can have created the group since the look-up.
    let id = ErrorGroupId::generate();
    let first_seen = batch
        .iter()
        .map(|report| report.received_at)
        .fold(first.received_at, Ord::min);
    sqlx::query(
        "INSERT INTO error_groups (id, scope, fingerprint, grouping_version, title, severity, severity_rank,
             component, event_count, first_seen, last_seen)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
    )
    .bind(id.as_str())
    .bind(&first.scope)
    .bind(first.fingerprint.as_str())
    .bind(i64::from(GROUPING_VERSION))
    .bind(&first.title)
    .bind(Severity::Debug.as_str())
    .bind(Severity::Debug as i64)
    .bind(first.component.as_deref())
    .bind(first_seen.as_millis())
    .bind(first_seen.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(GroupState {
        id: id.as_str().to_owned(),
        new: true,
        resolved: false,
        last_alerted_at: None,
        component: first.component.clone(),
    })
}

/// Stores the occurrences of one group; answers the event ids actually inserted.
async fn insert_events(
    conn: &mut SqliteConnection,
    group_id: &str,
    batch: &[&ErrorReport],
) -> Result<HashSet<String>, StoreError> {
    let mut inserted = HashSet::with_capacity(batch.len());
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO error_events (event_id, group_id, severity, message, request_id, release, environment,
                 payload, received_at) ",
        );
        insert.push_values(chunk, |mut row, report| {
            row.push_bind(&report.event_id)
                .push_bind(group_id)
                .push_bind(report.severity.as_str())
                .push_bind(&report.message)
                .push_bind(report.request_id.as_deref())
                .push_bind(report.release.as_deref())
                .push_bind(report.environment.as_deref())
                .push_bind(&report.payload)
                .push_bind(report.received_at.as_millis());
        });
        insert.push(" ON CONFLICT (event_id) DO NOTHING RETURNING event_id");
        let ids: Vec<String> = insert
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await
            .map_err(map_error)?;
        inserted.extend(ids);
    }
    Ok(inserted)
}

/// Queues an alert, due at once.
async fn queue_alert(
    conn: &mut SqliteConnection,
    group_id: &str,
    kind: AlertKind,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_outbox (id, group_id, kind, status, attempts, next_attempt_at, created_at)
         VALUES (?, ?, ?, 'pending', 0, ?, ?)",
    )
    .bind(format!("alr_{}", ids::random_hex()))
    .bind(group_id)
    .bind(kind.as_str())
    .bind(now.as_millis())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(())
}

/// Claims due alerts (see `Store::claim_alerts`). Runs inside a write transaction, which
/// on SQLite is exclusive, so no two claimers get the same alert.
pub(crate) async fn claim_alerts(
    conn: &mut SqliteConnection,
    now: Timestamp,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<PendingAlert>, StoreError> {
    // The alert's columns are renamed so that the group's keep their own names.
    let found = sqlx::query(&format!(
        "SELECT a.alert_id, a.kind, a.attempts, a.alert_created_at, {ERROR_GROUP_COLUMNS}
         FROM (SELECT id AS alert_id, group_id, kind, attempts, created_at AS alert_created_at
               FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= ?
               ORDER BY created_at, id LIMIT ?) a
         JOIN error_groups ON error_groups.id = a.group_id
         ORDER BY a.alert_created_at, a.alert_id"
    ))
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    let claimed = found
        .iter()
        .map(|row| rows::pending_alert(&Columns(row)))
        .collect::<Result<Vec<_>, _>>()?;
    if claimed.is_empty() {
        return Ok(claimed);
    }
    let mut lease = QueryBuilder::<Sqlite>::new("UPDATE alert_outbox SET next_attempt_at = ");
    lease
        .push_bind(now.as_millis().saturating_add(lease_ms))
        .push(" WHERE id IN (");
    let mut list = lease.separated(", ");
    for alert in &claimed {
        list.push_bind(&alert.id);
    }
    lease.push(")");
    lease.build().execute(&mut *conn).await.map_err(map_error)?;
    Ok(claimed)
}

/// Records how a delivery attempt ended. An alert that is no longer pending (finished by
/// another claimer after this one's lease ran out) stays as it is.
pub(crate) async fn finish_alert(
    conn: &mut SqliteConnection,
    id: &str,
    delivery: &AlertDelivery,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (status, retry_at, error, sent_at) = match delivery {
        AlertDelivery::Sent => ("sent", None, None, Some(now.as_millis())),
        AlertDelivery::Retry { error, retry_at } => ("pending", Some(retry_at.as_millis()), Some(error.as_str()), None),
        AlertDelivery::GaveUp { error } => ("failed", None, Some(error.as_str()), None),
    };
    let done = sqlx::query(
        "UPDATE alert_outbox SET attempts = attempts + 1, status = ?,
             next_attempt_at = COALESCE(?, next_attempt_at),
             last_error = COALESCE(?, last_error),
             sent_at = COALESCE(?, sent_at)
         WHERE id = ? AND status = 'pending'",
    )
    .bind(status)
    .bind(retry_at)
    .bind(error)
    .bind(sent_at)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    if done.rows_affected() == 0 {
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM alert_outbox WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_error)?;
        if exists.is_none() {
            return Err(StoreError::NotFound("alert"));
        }
    }
    Ok(())
}

/// Retention (see `Store::prune_errors`), in bounded transactions of its own.
pub(crate) async fn prune(
    store: &SqliteStore,
    older_than: Timestamp,
    per_group_cap: u32,
) -> Result<Pruned, StoreError> {
    let older_than = older_than.as_millis();
    let mut pruned = Pruned::default();
    pruned.events += delete_in_batches(
        store,
        "DELETE FROM error_events WHERE event_id IN (
             SELECT event_id FROM error_events WHERE received_at < ? LIMIT ?)",
        |query| query.bind(older_than),
    )
    .await?;

    // Groups over the cap, then for each the newest occurrence beyond it: it and all
    // older ones go.
    let cap = i64::from(per_group_cap);
    let over: Vec<String> =
        sqlx::query_scalar("SELECT group_id FROM error_events GROUP BY group_id HAVING COUNT(*) > ?")
            .bind(cap)
            .fetch_all(&store.pool)
            .await
            .map_err(map_error)?;
    for group_id in &over {
        let Some(cutoff) = sqlx::query(
            "SELECT received_at, event_id FROM error_events WHERE group_id = ?
             ORDER BY received_at DESC, event_id DESC LIMIT 1 OFFSET ?",
        )
        .bind(group_id)
        .bind(cap)
        .fetch_optional(&store.pool)
        .await
        .map_err(map_error)?
        else {
            continue;
        };
        let received_at: i64 = cutoff.try_get("received_at").map_err(map_error)?;
        let event_id: String = cutoff.try_get("event_id").map_err(map_error)?;
        pruned.events += delete_in_batches(
            store,
            "DELETE FROM error_events WHERE event_id IN (
                 SELECT event_id FROM error_events
                 WHERE group_id = ? AND (received_at < ? OR (received_at = ? AND event_id <= ?)) LIMIT ?)",
            |query| query.bind(group_id).bind(received_at).bind(received_at).bind(&event_id),
        )
        .await?;
    }

    // Groups left empty, with their alerts (which reference them).
    loop {
        let mut tx = store.write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM error_groups WHERE last_seen < ?
                 AND NOT EXISTS (SELECT 1 FROM error_events WHERE error_events.group_id = error_groups.id)
             LIMIT ?",
        )
        .bind(older_than)
        .bind(PRUNE_BATCH)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        if !ids.is_empty() {
            pruned.alerts += delete_where_in(&mut tx, "DELETE FROM alert_outbox WHERE group_id IN (", &ids).await?;
            pruned.groups += delete_where_in(&mut tx, "DELETE FROM error_groups WHERE id IN (", &ids).await?;
        }
        tx.commit().await?;
        if ids.len() < PRUNE_BATCH as usize {
            break;
        }
    }

    pruned.alerts += delete_in_batches(
        store,
        "DELETE FROM alert_outbox WHERE id IN (
             SELECT id FROM alert_outbox WHERE status IN ('sent', 'failed') AND created_at < ? LIMIT ?)",
        |query| query.bind(older_than),
    )
    .await?;
    Ok(pruned)
}

/// Runs a bounded `DELETE`, whose last parameter is the batch size, in write transactions
/// of its own until a batch comes back short.
async fn delete_in_batches<'q, F>(store: &SqliteStore, sql: &'q str, bind: F) -> Result<u64, StoreError>
where
    F: Fn(Query<'q, Sqlite, SqliteArguments<'q>>) -> Query<'q, Sqlite, SqliteArguments<'q>>,
{
    let mut total = 0;
    loop {
        let mut tx = store.write().await?;
        let deleted = bind(sqlx::query(sql))
            .bind(PRUNE_BATCH)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected();
        tx.commit().await?;
        total += deleted;
        if deleted < PRUNE_BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}

/// Runs `<sql> id, id, …)`.
async fn delete_where_in(conn: &mut SqliteConnection, sql: &str, ids: &[String]) -> Result<u64, StoreError> {
    let mut delete = QueryBuilder::<Sqlite>::new(sql);
    let mut list = delete.separated(", ");
    for id in ids {
        list.push_bind(id);
    }
    delete.push(")");
    Ok(delete
        .build()
        .execute(&mut *conn)
        .await
        .map_err(map_error)?
        .rows_affected())
}

pub(crate) async fn list(
    conn: &mut SqliteConnection,
    filter: &GroupFilter,
    limit: u32,
) -> Result<Vec<ErrorGroup>, StoreError> {
    let mut query = QueryBuilder::<Sqlite>::new(format!("SELECT {ERROR_GROUP_COLUMNS} FROM error_groups WHERE 1 = 1"));
    if let Some(severity) = filter.severity {
        query.push(" AND severity = ").push_bind(severity.as_str());
    }
    if let Some(resolved) = filter.resolved {
        query.push(" AND resolved = ").push_bind(resolved);
    }
    query
        .push(" ORDER BY last_seen DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit));
    let found = query.build().fetch_all(&mut *conn).await.map_err(map_error)?;
    found.iter().map(|row| rows::error_group(&Columns(row))).collect()
}

pub(crate) async fn get(
    conn: &mut SqliteConnection,
    id: &ErrorGroupId,
    events: u32,
) -> Result<(ErrorGroup, Vec<StoredError>), StoreError> {
    let row = sqlx::query(&format!("SELECT {ERROR_GROUP_COLUMNS} FROM error_groups WHERE id = ?"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("error group"))?;
    let group = rows::error_group(&Columns(&row))?;
    let found = sqlx::query(&format!(
        "SELECT {STORED_ERROR_COLUMNS} FROM error_events
         WHERE group_id = ? ORDER BY received_at DESC, event_id DESC LIMIT ?"
    ))
    .bind(id.as_str())
    .bind(i64::from(events))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    let events = found
        .iter()
        .map(|row| rows::stored_error(&Columns(row)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((group, events))
}

pub(crate) async fn resolve(conn: &mut SqliteConnection, id: &ErrorGroupId, now: Timestamp) -> Result<(), StoreError> {
    let done = sqlx::query("UPDATE error_groups SET resolved = TRUE, resolved_at = ? WHERE id = ?")
        .bind(now.as_millis())
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("error group"));
    }
    Ok(())
}
