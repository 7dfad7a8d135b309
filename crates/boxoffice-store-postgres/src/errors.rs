//! The error store's groups, occurrences and alert outbox (see `boxoffice_core::errors`).
//!
//! Recording runs one transaction per batch: each group's count, its occurrences and the
//! alert they call for commit together. Each group row is locked (`FOR UPDATE`) before its
//! occurrences are counted, so concurrent batches on any number of instances count one
//! after the other and agree on the alert cooldown; groups are locked in (scope,
//! fingerprint) order, so two batches cannot deadlock on them. Races that remain (two
//! batches creating one group, or storing one event id) end in `ON CONFLICT DO NOTHING`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use boxoffice_core::errors::grouping::GROUPING_VERSION;
use boxoffice_core::errors::store::{
    AlertDelivery, AlertKind, AlertPolicy, ErrorGroup, ErrorReport, GroupFilter, Occurrence, PendingAlert, Pruned,
    Recorded, StoredError,
};
use boxoffice_core::failures::Severity;
use boxoffice_core::ids::{self, ErrorGroupId};
use boxoffice_core::rows::{self, ERROR_GROUP_COLUMNS, STORED_ERROR_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};

use crate::map_error;
use crate::rows::Columns;

/// Rows one retention transaction deletes at most, so that its locks and its WAL stay small.
const PRUNE_BATCH: i64 = 5_000;

/// Records a batch of reports (see `Store::record_errors`). Runs inside a transaction.
pub(crate) async fn record(
    conn: &mut PgConnection,
    reports: &[ErrorReport],
    policy: &AlertPolicy,
) -> Result<Vec<Recorded>, StoreError> {
    let Some(now) = reports.iter().map(|report| report.received_at).max() else {
        return Ok(Vec::new());
    };
    // The first report with an event id stands for it; later ones are duplicates of it.
    let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(reports.len());
    let mut repeats = Vec::new();
    for (i, report) in reports.iter().enumerate() {
        match first_of.entry(&report.event_id) {
            Entry::Occupied(first) => repeats.push((i, *first.get())),
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
    let event_ids: Vec<&str> = first_of.keys().copied().collect();
    let stored = stored_groups(conn, &event_ids).await?;

    let mut results: Vec<Option<Recorded>> = vec![None; reports.len()];
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, report) in reports.iter().enumerate() {
        if first_of.get(report.event_id.as_str()) != Some(&i) {
            continue;
        }
        match stored.get(&report.event_id) {
            Some(group) => results[i] = Some(duplicate(group)),
            None => groups
                .entry((&report.scope, report.fingerprint.as_str()))
                .or_default()
                .push(i),
        }
    }
    let mut lost = Vec::new();
    for members in groups.values() {
        let batch: Vec<&ErrorReport> = members.iter().map(|&i| &reports[i]).collect();
        let recorded = record_group(conn, &batch, policy, now).await?;
        for (&i, recorded) in members.iter().zip(recorded) {
            match recorded {
                Some(recorded) => results[i] = Some(recorded),
                None => lost.push(i),
            }
        }
    }
    if !lost.is_empty() {
        // Stored by a concurrent batch since the look-up: duplicates too.
        let event_ids: Vec<&str> = lost.iter().map(|&i| reports[i].event_id.as_str()).collect();
        let stored = stored_groups(conn, &event_ids).await?;
        for i in lost {
            results[i] = stored.get(&reports[i].event_id).map(|group| duplicate(group));
        }
    }
    for (i, first) in repeats {
        results[i] = results[first].as_ref().map(|first| duplicate(first.group_id.as_str()));
    }
    results
        .into_iter()
        .map(|recorded| recorded.ok_or_else(|| StoreError::Other("an error report was not recorded".into())))
        .collect()
}

/// What recording a report whose event id is stored already did: nothing.
fn duplicate(group_id: &str) -> Recorded {
    Recorded {
        group_id: ErrorGroupId::from_trusted(group_id.to_owned()),
        new_group: false,
        regression: false,
        duplicate: true,
        alert: None,
    }
}

/// The groups of those of `event_ids` that are stored already.
async fn stored_groups(conn: &mut PgConnection, event_ids: &[&str]) -> Result<HashMap<String, String>, StoreError> {
    let found = sqlx::query("SELECT event_id, group_id FROM error_events WHERE event_id = ANY($1)")
        .bind(event_ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_error)?;
    let mut stored = HashMap::with_capacity(found.len());
    for row in found {
        stored.insert(
            row.try_get("event_id").map_err(map_error)?,
            row.try_get("group_id").map_err(map_error)?,
        );
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
    conn: &mut PgConnection,
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
            sqlx::query("DELETE FROM error_groups WHERE id = $1")
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
        "UPDATE error_groups SET event_count = event_count + $1,
             last_seen = GREATEST(last_seen, $2),
             severity = CASE WHEN $3 > severity_rank THEN $4 ELSE severity END,
             severity_rank = GREATEST(severity_rank, $5),
             resolved = FALSE, resolved_at = NULL,
             last_alerted_at = COALESCE($6, last_alerted_at)
         WHERE id = $7",
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

/// Finds and locks the batch's group, or creates it. A new group starts empty and at the
/// lowest severity: the update after its occurrences are stored counts and ranks it, as it
/// does an existing group.
async fn open_group(conn: &mut PgConnection, batch: &[&ErrorReport]) -> Result<GroupState, StoreError> {
    let first = batch[0];
    if let Some(group) = lock_group(conn, first).await? {
        return Ok(group);
    }
    let id = ErrorGroupId::generate();
    let first_seen = batch
        .iter()
        .map(|report| report.received_at)
        .fold(first.received_at, Ord::min);
    let created = sqlx::query(
        "INSERT INTO error_groups (id, scope, fingerprint, grouping_version, title, severity, severity_rank,
             component, event_count, first_seen, last_seen)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10)
         ON CONFLICT (scope, fingerprint) DO NOTHING",
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
    if created.rows_affected() == 1 {
        return Ok(GroupState {
            id: id.as_str().to_owned(),
            new: true,
            resolved: false,
            last_alerted_at: None,
            component: first.component.clone(),
        });
    }
    // A concurrent batch created it since the look-up (the insert waited for that batch to
    // commit): it is visible now.
    lock_group(conn, first)
        .await?
        .ok_or_else(|| StoreError::Other("an error group vanished while recording".into()))
}

/// Reads and locks the report's group, if it exists.
async fn lock_group(conn: &mut PgConnection, report: &ErrorReport) -> Result<Option<GroupState>, StoreError> {
    let found = sqlx::query(
        "SELECT id, resolved, last_alerted_at, component FROM error_groups
         WHERE scope = $1 AND fingerprint = $2 FOR UPDATE",
    )
    .bind(&report.scope)
    .bind(report.fingerprint.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_error)?;
    let Some(row) = found else { return Ok(None) };
    Ok(Some(GroupState {
        id: row.try_get("id").map_err(map_error)?,
        new: false,
        resolved: row.try_get("resolved").map_err(map_error)?,
        last_alerted_at: row
            .try_get::<Option<i64>, _>("last_alerted_at")
            .map_err(map_error)?
            .map(Timestamp::from_millis),
        component: row.try_get("component").map_err(map_error)?,
    }))
}

/// Stores the occurrences of one group in one statement, whatever their number (arrays
/// rather than one placeholder per value); answers the event ids actually inserted.
async fn insert_events(
    conn: &mut PgConnection,
    group_id: &str,
    batch: &[&ErrorReport],
) -> Result<HashSet<String>, StoreError> {
    let column = |value: fn(&ErrorReport) -> &str| batch.iter().map(|report| value(report)).collect::<Vec<_>>();
    let optional =
        |value: fn(&ErrorReport) -> Option<&str>| batch.iter().map(|report| value(report)).collect::<Vec<_>>();
    let ids: Vec<String> = sqlx::query_scalar(
        "INSERT INTO error_events (event_id, group_id, severity, message, request_id, release, environment,
             payload, received_at)
         SELECT event_id, $1, severity, message, request_id, release, environment, payload, received_at
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::bigint[])
             AS new (event_id, severity, message, request_id, release, environment, payload, received_at)
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    .bind(group_id)
    .bind(column(|report| &report.event_id))
    .bind(column(|report| report.severity.as_str()))
    .bind(column(|report| &report.message))
    .bind(optional(|report| report.request_id.as_deref()))
    .bind(optional(|report| report.release.as_deref()))
    .bind(optional(|report| report.environment.as_deref()))
    .bind(column(|report| &report.payload))
    .bind(
        batch
            .iter()
            .map(|report| report.received_at.as_millis())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(ids.into_iter().collect())
}

/// Queues an alert, due at once.
async fn queue_alert(
    conn: &mut PgConnection,
    group_id: &str,
    kind: AlertKind,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_outbox (id, group_id, kind, status, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, $3, 'pending', 0, $4, $5)",
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

/// Claims due alerts (see `Store::claim_alerts`) in one statement: rows another claimer
/// holds are skipped, not waited for.
pub(crate) async fn claim_alerts(
    conn: &mut PgConnection,
    now: Timestamp,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<PendingAlert>, StoreError> {
    // The alert's columns are renamed so that the group's keep their own names.
    let found = sqlx::query(&format!(
        "WITH claimed AS (
             UPDATE alert_outbox SET next_attempt_at = $1
             WHERE id IN (
                 SELECT id FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= $2
                 ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id AS alert_id, group_id, kind, attempts, created_at AS alert_created_at)
         SELECT claimed.alert_id, claimed.kind, claimed.attempts, claimed.alert_created_at, {ERROR_GROUP_COLUMNS}
         FROM claimed JOIN error_groups ON error_groups.id = claimed.group_id
         ORDER BY claimed.alert_created_at, claimed.alert_id"
    ))
    .bind(now.as_millis().saturating_add(lease_ms))
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    found.iter().map(|row| rows::pending_alert(&Columns(row))).collect()
}

/// Records how a delivery attempt ended. An alert that is no longer pending (finished by
/// another claimer after this one's lease ran out) stays as it is.
pub(crate) async fn finish_alert(
    conn: &mut PgConnection,
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
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    if done.rows_affected() == 0 {
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM alert_outbox WHERE id = $1")
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
pub(crate) async fn prune(pool: &PgPool, older_than: Timestamp, per_group_cap: u32) -> Result<Pruned, StoreError> {
    let older_than = older_than.as_millis();
    let mut pruned = Pruned::default();
    pruned.events += delete_in_batches(
        pool,
        "DELETE FROM error_events WHERE event_id IN (
             SELECT event_id FROM error_events WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        |query| query.bind(older_than),
    )
    .await?;

    // Groups over the cap, then for each the newest occurrence beyond it: it and all
    // older ones go.
    let cap = i64::from(per_group_cap);
    let over: Vec<String> =
        sqlx::query_scalar("SELECT group_id FROM error_events GROUP BY group_id HAVING COUNT(*) > $1")
            .bind(cap)
            .fetch_all(pool)
            .await
            .map_err(map_error)?;
    for group_id in &over {
        let Some(cutoff) = sqlx::query(
            "SELECT received_at, event_id FROM error_events WHERE group_id = $1
             ORDER BY received_at DESC, event_id DESC LIMIT 1 OFFSET $2",
        )
        .bind(group_id)
        .bind(cap)
        .fetch_optional(pool)
        .await
        .map_err(map_error)?
        else {
            continue;
        };
        let received_at: i64 = cutoff.try_get("received_at").map_err(map_error)?;
        let event_id: String = cutoff.try_get("event_id").map_err(map_error)?;
        pruned.events += delete_in_batches(
            pool,
            "DELETE FROM error_events WHERE event_id IN (
                 SELECT event_id FROM error_events
                 WHERE group_id = $1 AND (received_at < $2 OR (received_at = $2 AND event_id <= $3))
                 LIMIT $4 FOR UPDATE SKIP LOCKED)",
            |query| query.bind(group_id).bind(received_at).bind(&event_id),
        )
        .await?;
    }

    // Groups left empty, with their alerts (which reference them). Locked first: an
    // occurrence being recorded holds its group's lock, and one inserted later waits for
    // ours (its foreign key check), so the groups confirmed empty below stay empty.
    loop {
        let mut tx = pool.begin().await.map_err(map_error)?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM error_groups WHERE last_seen < $1
                 AND NOT EXISTS (SELECT 1 FROM error_events WHERE error_events.group_id = error_groups.id)
             LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(older_than)
        .bind(PRUNE_BATCH)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        if !ids.is_empty() {
            // Checked again in statements of their own: the look-up's snapshot predates
            // occurrences committed while it ran.
            pruned.alerts += sqlx::query(
                "DELETE FROM alert_outbox WHERE group_id = ANY($1)
                     AND NOT EXISTS (SELECT 1 FROM error_events WHERE error_events.group_id = alert_outbox.group_id)",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected();
            pruned.groups += sqlx::query(
                "DELETE FROM error_groups WHERE id = ANY($1)
                     AND NOT EXISTS (SELECT 1 FROM error_events WHERE error_events.group_id = error_groups.id)",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected();
        }
        tx.commit().await.map_err(map_error)?;
        if ids.len() < PRUNE_BATCH.unsigned_abs() as usize {
            break;
        }
    }

    pruned.alerts += delete_in_batches(
        pool,
        "DELETE FROM alert_outbox WHERE id IN (
             SELECT id FROM alert_outbox WHERE status IN ('sent', 'failed') AND created_at < $1
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
        |query| query.bind(older_than),
    )
    .await?;
    Ok(pruned)
}

/// Runs a bounded `DELETE`, whose last parameter is the batch size, in transactions of its
/// own until a batch comes back short.
async fn delete_in_batches<'q, F>(pool: &PgPool, sql: &'q str, bind: F) -> Result<u64, StoreError>
where
    F: Fn(Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>,
{
    let mut total = 0;
    loop {
        let deleted = bind(sqlx::query(sql))
            .bind(PRUNE_BATCH)
            .execute(pool)
            .await
            .map_err(map_error)?
            .rows_affected();
        total += deleted;
        if deleted < PRUNE_BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}

pub(crate) async fn list(
    conn: &mut PgConnection,
    filter: &GroupFilter,
    limit: u32,
) -> Result<Vec<ErrorGroup>, StoreError> {
    let mut query =
        QueryBuilder::<Postgres>::new(format!("SELECT {ERROR_GROUP_COLUMNS} FROM error_groups WHERE 1 = 1"));
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
    conn: &mut PgConnection,
    id: &ErrorGroupId,
    events: u32,
) -> Result<(ErrorGroup, Vec<StoredError>), StoreError> {
    let row = sqlx::query(&format!("SELECT {ERROR_GROUP_COLUMNS} FROM error_groups WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("error group"))?;
    let group = rows::error_group(&Columns(&row))?;
    let found = sqlx::query(&format!(
        "SELECT {STORED_ERROR_COLUMNS} FROM error_events
         WHERE group_id = $1 ORDER BY received_at DESC, event_id DESC LIMIT $2"
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

pub(crate) async fn resolve(conn: &mut PgConnection, id: &ErrorGroupId, now: Timestamp) -> Result<(), StoreError> {
    let done = sqlx::query("UPDATE error_groups SET resolved = TRUE, resolved_at = $1 WHERE id = $2")
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
