//! The error store's groups and occurrences (see `boxoffice_core::errors`). Recording runs
//! in one write transaction: the group's count and the occurrence commit together.

use boxoffice_core::errors::grouping::GROUPING_VERSION;
use boxoffice_core::errors::store::{ErrorGroup, ErrorReport, GroupFilter, Recorded, StoredError};
use boxoffice_core::ids::ErrorGroupId;
use boxoffice_core::rows::{self, ERROR_GROUP_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::map_error;
use crate::rows::Columns;

/// Whether the event id is stored already (then recording changes nothing).
pub(crate) async fn seen(conn: &mut SqliteConnection, event_id: &str) -> Result<Option<ErrorGroupId>, StoreError> {
    let group: Option<String> = sqlx::query_scalar("SELECT group_id FROM error_events WHERE event_id = ?")
        .bind(event_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(group.map(ErrorGroupId::from_trusted))
}

/// Counts the report in its group (creating or reopening it) and stores the occurrence.
/// When the occurrence turns out to be stored already (`duplicate`), the caller must roll
/// back, so the count is not bumped.
pub(crate) async fn record(conn: &mut SqliteConnection, report: &ErrorReport) -> Result<Recorded, StoreError> {
    let rank = report.severity as i64;
    let at = report.received_at.as_millis();
    let existing = sqlx::query("SELECT id, resolved FROM error_groups WHERE scope = ? AND fingerprint = ?")
        .bind(&report.scope)
        .bind(report.fingerprint.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?;
    let (group_id, new_group, regression) = match existing {
        Some(row) => {
            let id: String = row.try_get("id").map_err(map_error)?;
            let resolved: bool = row.try_get("resolved").map_err(map_error)?;
            sqlx::query(
                "UPDATE error_groups SET event_count = event_count + 1,
                     last_seen = MAX(last_seen, ?),
                     severity = CASE WHEN ? > severity_rank THEN ? ELSE severity END,
                     severity_rank = MAX(severity_rank, ?),
                     resolved = FALSE, resolved_at = NULL
                 WHERE id = ?",
            )
            .bind(at)
            .bind(rank)
            .bind(report.severity.as_str())
            .bind(rank)
            .bind(&id)
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
            (ErrorGroupId::from_trusted(id), false, resolved)
        }
        None => {
            let id = ErrorGroupId::generate();
            sqlx::query(
                "INSERT INTO error_groups (id, scope, fingerprint, grouping_version, title, severity, severity_rank,
                     component, event_count, first_seen, last_seen)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
            )
            .bind(id.as_str())
            .bind(&report.scope)
            .bind(report.fingerprint.as_str())
            .bind(i64::from(GROUPING_VERSION))
            .bind(&report.title)
            .bind(report.severity.as_str())
            .bind(rank)
            .bind(report.component.as_deref())
            .bind(at)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
            (id, true, false)
        }
    };
    let inserted = sqlx::query(
        "INSERT INTO error_events (event_id, group_id, severity, message, request_id, payload, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&report.event_id)
    .bind(group_id.as_str())
    .bind(report.severity.as_str())
    .bind(&report.message)
    .bind(report.request_id.as_deref())
    .bind(&report.payload)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    let duplicate = inserted.rows_affected() == 0;
    Ok(Recorded {
        group_id,
        new_group: new_group && !duplicate,
        regression: regression && !duplicate,
        duplicate,
    })
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
    let found = sqlx::query(
        "SELECT event_id, severity, message, request_id, payload, received_at FROM error_events
         WHERE group_id = ? ORDER BY received_at DESC, event_id DESC LIMIT ?",
    )
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
