//! The error store's groups, occurrences and alert outbox (see `boxoffice_core::error_store`).
//!
//! Recording runs one transaction per batch: each group's count, its occurrences and the
//! alert they call for commit together. Each group row is locked (`FOR UPDATE`) before its
//! occurrences are counted, so concurrent batches on any number of instances count one
//! after the other and agree on the alert cooldown; groups are locked in (scope,
//! fingerprint) order, so two batches cannot deadlock on them. Races that remain (two
//! batches creating one group, or storing one event id) end in `ON CONFLICT DO NOTHING`.

use std::collections::{BTreeMap, HashMap, HashSet};

use boxoffice_core::error_store::batch::{Batch, GroupKey};
use boxoffice_core::error_store::grouping::GROUPING_VERSION;
use boxoffice_core::error_store::reports::{
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
    let mut batch = Batch::new(reports);
    let Some(now) = batch.now() else {
        return Ok(Vec::new());
    };
    let stored = stored_groups(conn, &batch.event_ids()).await?;
    let groups = batch.group(&stored);
    let mut lost = Vec::new();
    if !groups.is_empty() {
        let recorded = record_groups(conn, reports, &groups, policy, now).await?;
        for (i, recorded) in recorded {
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

/// Records the reports of every group in the batch (none of them known to be stored) with
/// a fixed number of statements, whatever the number of groups: lock the existing groups,
/// create the missing ones, insert every occurrence, update every group, queue the alerts.
/// Answers, per report index, what recording did, or `None` when it turned out to be
/// stored already by a concurrent batch.
async fn record_groups(
    conn: &mut PgConnection,
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
    let mut updates = GroupUpdates::default();
    let mut emptied = Vec::new();
    let mut alerts = Vec::new();
    for (key, indexes) in groups {
        let state = states
            .get(key)
            .ok_or_else(|| StoreError::Other("an error group vanished while recording".into()))?;
        let stored: Vec<&ErrorReport> = indexes
            .iter()
            .map(|&i| &reports[i])
            .filter(|report| inserted.contains(&report.event_id))
            .collect();
        if stored.is_empty() {
            // All stored already by someone else: nothing counts, and a group created just
            // now must not stay behind without an occurrence.
            if state.new {
                emptied.push(state.id.as_str());
            }
            answers.extend(indexes.iter().map(|&i| (i, None)));
            continue;
        }
        let severity = stored
            .iter()
            .map(|report| report.severity)
            .fold(Severity::Debug, Ord::max);
        let last_seen = stored
            .iter()
            .map(|report| report.received_at)
            .fold(stored[0].received_at, Ord::max);
        let alert = policy.decide(
            &Occurrence {
                new_group: state.new,
                regression: state.resolved,
                severity,
                component: state.component.clone(),
            },
            state.last_alerted_at,
            now,
        );
        updates.push(&state.id, stored.len(), last_seen, severity, alert.map(|_| now));
        if let Some(kind) = alert {
            alerts.push((state.id.as_str(), kind));
        }
        // The group's news (new, regressed, alerted) goes to its first stored report only.
        let mut first = true;
        for &i in indexes {
            if !inserted.contains(&reports[i].event_id) {
                answers.push((i, None));
                continue;
            }
            answers.push((
                i,
                Some(Recorded {
                    group_id: ErrorGroupId::from_trusted(state.id.clone()),
                    new_group: first && state.new,
                    regression: first && state.resolved,
                    duplicate: false,
                    alert: if first { alert } else { None },
                }),
            ));
            first = false;
        }
    }
    if !emptied.is_empty() {
        sqlx::query("DELETE FROM error_groups WHERE id = ANY($1)")
            .bind(&emptied)
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
    }
    updates.apply(conn).await?;
    if !alerts.is_empty() {
        queue_alerts(conn, &alerts, now).await?;
    }
    Ok(answers)
}

/// Reads and locks the groups with these keys that exist, in key order (the order every
/// batch locks in, so concurrent batches wait for each other instead of deadlocking).
async fn lock_groups<'a>(
    conn: &mut PgConnection,
    keys: &[GroupKey<'a>],
) -> Result<HashMap<GroupKey<'a>, GroupState>, StoreError> {
    let scopes: Vec<&str> = keys.iter().map(|(scope, _)| *scope).collect();
    let fingerprints: Vec<&str> = keys.iter().map(|(_, fingerprint)| *fingerprint).collect();
    let found = sqlx::query(
        "SELECT id, scope, fingerprint, resolved, last_alerted_at, component FROM error_groups
         WHERE (scope, fingerprint) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))
         ORDER BY scope, fingerprint FOR UPDATE",
    )
    .bind(&scopes)
    .bind(&fingerprints)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    let mut states = HashMap::with_capacity(found.len());
    read_states(&found, keys, false, &mut states)?;
    Ok(states)
}

/// Reads locked or created group rows (`id, scope, fingerprint, resolved,
/// last_alerted_at, component`) into `states`, under the batch's own keys.
fn read_states<'a>(
    rows: &[sqlx::postgres::PgRow],
    keys: &[GroupKey<'a>],
    new: bool,
    states: &mut HashMap<GroupKey<'a>, GroupState>,
) -> Result<(), StoreError> {
    for row in rows {
        let scope: String = row.try_get("scope").map_err(map_error)?;
        let fingerprint: String = row.try_get("fingerprint").map_err(map_error)?;
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
                id: row.try_get("id").map_err(map_error)?,
                new,
                resolved: row.try_get("resolved").map_err(map_error)?,
                last_alerted_at: row
                    .try_get::<Option<i64>, _>("last_alerted_at")
                    .map_err(map_error)?
                    .map(Timestamp::from_millis),
                component: row.try_get("component").map_err(map_error)?,
            },
        );
    }
    Ok(())
}

/// Creates the missing groups in one statement. A new group starts empty and at the
/// lowest severity: the update after its occurrences are stored counts and ranks it, as it
/// does an existing group. A group a concurrent batch created meanwhile (the insert waited
/// for that batch to commit) is locked as it now exists.
async fn create_groups<'a>(
    conn: &mut PgConnection,
    reports: &[ErrorReport],
    groups: &BTreeMap<GroupKey<'a>, Vec<usize>>,
    missing: &[GroupKey<'a>],
    states: &mut HashMap<GroupKey<'a>, GroupState>,
) -> Result<(), StoreError> {
    let mut ids = Vec::with_capacity(missing.len());
    let mut scopes = Vec::with_capacity(missing.len());
    let mut fingerprints = Vec::with_capacity(missing.len());
    let mut titles = Vec::with_capacity(missing.len());
    let mut components = Vec::with_capacity(missing.len());
    let mut first_seen = Vec::with_capacity(missing.len());
    for key in missing {
        let members = groups.get(key).map(Vec::as_slice).unwrap_or_default();
        let Some(&first) = members.first() else { continue };
        let first = &reports[first];
        ids.push(ErrorGroupId::generate().as_str().to_owned());
        scopes.push(key.0);
        fingerprints.push(key.1);
        titles.push(first.title.as_str());
        components.push(first.component.as_deref());
        first_seen.push(
            members
                .iter()
                .map(|&i| reports[i].received_at)
                .fold(first.received_at, Ord::min)
                .as_millis(),
        );
    }
    let created = sqlx::query(
        "INSERT INTO error_groups (id, scope, fingerprint, grouping_version, title, severity, severity_rank,
             component, event_count, first_seen, last_seen)
         SELECT id, scope, fingerprint, $7, title, $8, $9, component, 0, first_seen, first_seen
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
             AS new (id, scope, fingerprint, title, component, first_seen)
         ORDER BY scope, fingerprint
         ON CONFLICT (scope, fingerprint) DO NOTHING
         RETURNING id, scope, fingerprint, resolved, last_alerted_at, component",
    )
    .bind(&ids)
    .bind(&scopes)
    .bind(&fingerprints)
    .bind(&titles)
    .bind(&components)
    .bind(&first_seen)
    .bind(i64::from(GROUPING_VERSION))
    .bind(Severity::Debug.as_str())
    .bind(Severity::Debug as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    read_states(&created, missing, true, states)?;
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

/// Stores the occurrences of every group in one statement, whatever their number (arrays
/// rather than one placeholder per value); answers the event ids actually inserted.
async fn insert_events(
    conn: &mut PgConnection,
    reports: &[ErrorReport],
    members: &[(usize, &str)],
) -> Result<HashSet<String>, StoreError> {
    let column = |value: fn(&ErrorReport) -> &str| members.iter().map(|&(i, _)| value(&reports[i])).collect::<Vec<_>>();
    let optional =
        |value: fn(&ErrorReport) -> Option<&str>| members.iter().map(|&(i, _)| value(&reports[i])).collect::<Vec<_>>();
    let ids: Vec<String> = sqlx::query_scalar(
        "INSERT INTO error_events (event_id, group_id, severity, message, request_id, release, environment,
             payload, received_at)
         SELECT event_id, group_id, severity, message, request_id, release, environment, payload, received_at
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::bigint[])
             AS new (event_id, group_id, severity, message, request_id, release, environment, payload,
                     received_at)
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    .bind(column(|report| &report.event_id))
    .bind(members.iter().map(|&(_, group)| group).collect::<Vec<_>>())
    .bind(column(|report| report.severity.as_str()))
    .bind(column(|report| &report.message))
    .bind(optional(|report| report.request_id.as_deref()))
    .bind(optional(|report| report.release.as_deref()))
    .bind(optional(|report| report.environment.as_deref()))
    .bind(column(|report| &report.payload))
    .bind(
        members
            .iter()
            .map(|&(i, _)| reports[i].received_at.as_millis())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    Ok(ids.into_iter().collect())
}

/// The counts, times and severities a batch adds to its groups, applied in one statement.
#[derive(Default)]
struct GroupUpdates<'a> {
    ids: Vec<&'a str>,
    counts: Vec<i64>,
    last_seen: Vec<i64>,
    ranks: Vec<i64>,
    severities: Vec<&'static str>,
    alerted_at: Vec<Option<i64>>,
}

impl<'a> GroupUpdates<'a> {
    fn push(
        &mut self,
        id: &'a str,
        count: usize,
        last_seen: Timestamp,
        severity: Severity,
        alerted_at: Option<Timestamp>,
    ) {
        self.ids.push(id);
        self.counts.push(i64::try_from(count).unwrap_or(i64::MAX));
        self.last_seen.push(last_seen.as_millis());
        self.ranks.push(severity as i64);
        self.severities.push(severity.as_str());
        self.alerted_at.push(alerted_at.map(Timestamp::as_millis));
    }

    async fn apply(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE error_groups AS g SET event_count = g.event_count + v.n,
                 last_seen = GREATEST(g.last_seen, v.last_seen),
                 severity = CASE WHEN v.rank > g.severity_rank THEN v.severity ELSE g.severity END,
                 severity_rank = GREATEST(g.severity_rank, v.rank),
                 resolved = FALSE, resolved_at = NULL,
                 last_alerted_at = COALESCE(v.alerted_at, g.last_alerted_at)
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[])
                 AS v (id, n, last_seen, rank, severity, alerted_at)
             WHERE g.id = v.id",
        )
        .bind(&self.ids)
        .bind(&self.counts)
        .bind(&self.last_seen)
        .bind(&self.ranks)
        .bind(&self.severities)
        .bind(&self.alerted_at)
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
        Ok(())
    }
}

/// Queues alerts, due at once, in one statement.
async fn queue_alerts(conn: &mut PgConnection, alerts: &[(&str, AlertKind)], now: Timestamp) -> Result<(), StoreError> {
    let ids: Vec<String> = alerts.iter().map(|_| format!("alr_{}", ids::random_hex())).collect();
    let groups: Vec<&str> = alerts.iter().map(|(group, _)| *group).collect();
    let kinds: Vec<&str> = alerts.iter().map(|(_, kind)| kind.as_str()).collect();
    sqlx::query(
        "INSERT INTO alert_outbox (id, group_id, kind, status, attempts, next_attempt_at, created_at)
         SELECT id, group_id, kind, 'pending', 0, $4, $4
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS new (id, group_id, kind)",
    )
    .bind(&ids)
    .bind(&groups)
    .bind(&kinds)
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
