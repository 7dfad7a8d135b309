//! Holds: placing, cancelling, expiring, counting.
//!
//! Capacity is a conditional update of the ticket type's `held` counter
//! (`... WHERE capacity - sold - held >= quantity`), which cannot oversell. Holds that expired
//! but are not swept still count in `held`; when they are what stands between a buyer and
//! a ticket, `place` releases them in the same transaction and tries again, so an expired
//! hold never blocks a sale, whether or not the sweeper has run.

use std::collections::HashMap;

use boxoffice_core::holds::{EmailAddress, Hold, HoldItem, HoldStatus, ReservationStats};
use boxoffice_core::ids::{EventId, HoldId, TicketTypeId};
use boxoffice_core::rows::{self, HOLD_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

use crate::map_error;
use crate::rows::Columns;

/// The most expired holds one lazy release marks. Enough to free any single request's
/// quantity many times over, while keeping the transaction short.
pub(crate) const RELEASE_BATCH: u32 = 1_000;

/// Places a hold inside a write transaction; see the module docs. On `SoldOut` the caller
/// drops the transaction, which rolls back anything taken for earlier items.
pub(crate) async fn place(conn: &mut SqliteConnection, hold: &Hold, now: Timestamp) -> Result<(), StoreError> {
    for item in &hold.items {
        if !take(conn, item).await? {
            let released = expire(conn, now, RELEASE_BATCH, Some(&item.ticket_type_id)).await?;
            if released == 0 || !take(conn, item).await? {
                return Err(sold_out(conn, &item.ticket_type_id).await);
            }
        }
    }
    sqlx::query(
        "INSERT INTO holds (id, event_id, status, customer_email, amount_cents, currency, created_at, expires_at, updated_at)
         VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?)",
    )
    .bind(hold.id.as_str())
    .bind(hold.event_id.as_str())
    .bind(hold.customer_email.as_ref().map(EmailAddress::as_str))
    .bind(hold.amount.get())
    .bind(hold.currency.as_str())
    .bind(hold.created_at.as_millis())
    .bind(hold.expires_at.as_millis())
    .bind(now.as_millis())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    let mut insert_items =
        QueryBuilder::<Sqlite>::new("INSERT INTO hold_items (hold_id, ticket_type_id, quantity, unit_price_cents) ");
    insert_items.push_values(&hold.items, |mut row, item| {
        row.push_bind(hold.id.as_str())
            .push_bind(item.ticket_type_id.as_str())
            .push_bind(i64::from(item.quantity.get()))
            .push_bind(item.unit_price.get());
    });
    insert_items.build().execute(&mut *conn).await.map_err(map_error)?;
    Ok(())
}

/// Takes an item's quantity from its ticket type if it fits; returns whether it did.
async fn take(conn: &mut SqliteConnection, item: &HoldItem) -> Result<bool, StoreError> {
    let quantity = i64::from(item.quantity.get());
    let result = sqlx::query("UPDATE ticket_types SET held = held + ? WHERE id = ? AND capacity - sold - held >= ?")
        .bind(quantity)
        .bind(item.ticket_type_id.as_str())
        .bind(quantity)
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(result.rows_affected() == 1)
}

async fn sold_out(conn: &mut SqliteConnection, id: &TicketTypeId) -> StoreError {
    let name: Result<Option<String>, _> = sqlx::query_scalar("SELECT name FROM ticket_types WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await;
    match name {
        Ok(Some(ticket_type_name)) => StoreError::SoldOut {
            ticket_type_id: id.clone(),
            ticket_type_name,
        },
        Ok(None) => StoreError::NotFound("ticket type"),
        Err(err) => map_error(err),
    }
}

pub(crate) async fn get(pool: &SqlitePool, id: &HoldId) -> Result<Hold, StoreError> {
    let mut conn = pool.acquire().await.map_err(map_error)?;
    load(&mut conn, id).await
}

pub(crate) async fn load(conn: &mut SqliteConnection, id: &HoldId) -> Result<Hold, StoreError> {
    let row = sqlx::query(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("reservation"))?;
    let items = sqlx::query(
        "SELECT ticket_type_id, quantity, unit_price_cents FROM hold_items WHERE hold_id = ? ORDER BY ticket_type_id",
    )
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?
    .iter()
    .map(|item| rows::hold_item(&Columns(item)))
    .collect::<Result<Vec<_>, StoreError>>()?;
    rows::hold(&Columns(&row), items)
}

/// Cancels inside a write transaction; see `Store::cancel_hold`.
pub(crate) async fn cancel(conn: &mut SqliteConnection, id: &HoldId, now: Timestamp) -> Result<Hold, StoreError> {
    let mut hold = load(conn, id).await?;
    let new_status = match (hold.stored_status, hold.status_at(now)) {
        (HoldStatus::Completed, _) => return Err(StoreError::HoldCompleted),
        (HoldStatus::Active, HoldStatus::Active) => HoldStatus::Cancelled,
        (HoldStatus::Active, _) => HoldStatus::Expired,
        // Already cancelled or expired: nothing to release, nothing to change.
        _ => return Ok(hold),
    };
    release_as(conn, &hold, new_status, now).await?;
    hold.stored_status = new_status;
    Ok(hold)
}

/// Marks an active hold `new_status` (expired or cancelled) and gives its tickets back,
/// once: the status guard makes a second call change nothing.
pub(crate) async fn release_as(
    conn: &mut SqliteConnection,
    hold: &Hold,
    new_status: HoldStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    let released = sqlx::query("UPDATE holds SET status = ?, updated_at = ? WHERE id = ? AND status = 'active'")
        .bind(new_status.as_str())
        .bind(now.as_millis())
        .bind(hold.id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    if released.rows_affected() == 1 {
        // Items are sorted by ticket type id: the lock order.
        for item in &hold.items {
            release_tickets(conn, &item.ticket_type_id, i64::from(item.quantity.get())).await?;
        }
    }
    Ok(())
}

async fn release_tickets(conn: &mut SqliteConnection, id: &TicketTypeId, quantity: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE ticket_types SET held = held - ? WHERE id = ?")
        .bind(quantity)
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(())
}

/// Marks up to `limit` holds that expired by `now` as expired and gives their tickets
/// back — only holds containing `ticket_type` when given. Runs inside a write
/// transaction, which on SQLite is exclusive, so no two callers see the same hold active.
pub(crate) async fn expire(
    conn: &mut SqliteConnection,
    now: Timestamp,
    limit: u32,
    ticket_type: Option<&TicketTypeId>,
) -> Result<u64, StoreError> {
    let mut select = QueryBuilder::<Sqlite>::new("SELECT id FROM holds h WHERE status = 'active' AND expires_at <= ");
    select.push_bind(now.as_millis());
    if let Some(ticket_type) = ticket_type {
        select
            .push(" AND EXISTS (SELECT 1 FROM hold_items hi WHERE hi.hold_id = h.id AND hi.ticket_type_id = ")
            .push_bind(ticket_type.as_str())
            .push(")");
    }
    select
        .push(" ORDER BY expires_at, id LIMIT ")
        .push_bind(i64::from(limit));
    let ids: Vec<String> = select
        .build_query_scalar()
        .fetch_all(&mut *conn)
        .await
        .map_err(map_error)?;
    if ids.is_empty() {
        return Ok(0);
    }

    let mut mark = QueryBuilder::<Sqlite>::new("UPDATE holds SET status = 'expired', updated_at = ");
    mark.push_bind(now.as_millis())
        .push(" WHERE status = 'active' AND id IN (");
    let mut list = mark.separated(", ");
    for id in &ids {
        list.push_bind(id);
    }
    mark.push(")");
    let marked = mark
        .build()
        .execute(&mut *conn)
        .await
        .map_err(map_error)?
        .rows_affected();

    let mut totals = QueryBuilder::<Sqlite>::new(
        "SELECT ticket_type_id, SUM(quantity) AS quantity FROM hold_items WHERE hold_id IN (",
    );
    let mut list = totals.separated(", ");
    for id in &ids {
        list.push_bind(id);
    }
    totals.push(") GROUP BY ticket_type_id ORDER BY ticket_type_id");
    for row in totals.build().fetch_all(&mut *conn).await.map_err(map_error)? {
        let id = TicketTypeId::from_trusted(row.try_get("ticket_type_id").map_err(map_error)?);
        release_tickets(conn, &id, row.try_get("quantity").map_err(map_error)?).await?;
    }
    Ok(marked)
}

/// Tickets per ticket type of `event` in holds that are still marked active but expired by
/// `now`: what the `held` counters include and readers must subtract.
pub(crate) async fn expired_unswept_by_ticket_type(
    conn: &mut SqliteConnection,
    event: &EventId,
    now: Timestamp,
) -> Result<HashMap<String, i64>, StoreError> {
    // CROSS JOIN fixes the join order in SQLite: start from the (usually tiny) set of
    // expired active holds, never from all items of a busy ticket type.
    let rows = sqlx::query(
        "SELECT hi.ticket_type_id, SUM(hi.quantity) AS quantity
         FROM holds h CROSS JOIN hold_items hi ON hi.hold_id = h.id
         WHERE h.status = 'active' AND h.expires_at <= ? AND h.event_id = ?
         GROUP BY hi.ticket_type_id",
    )
    .bind(now.as_millis())
    .bind(event.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("ticket_type_id").map_err(map_error)?,
                row.try_get("quantity").map_err(map_error)?,
            ))
        })
        .collect()
}

pub(crate) async fn stats(pool: &SqlitePool, now: Timestamp) -> Result<ReservationStats, StoreError> {
    let row = sqlx::query(
        "SELECT
             COALESCE(SUM(CASE WHEN status = 'active' AND expires_at > ?1 THEN 1 ELSE 0 END), 0) AS active,
             COALESCE(SUM(CASE WHEN status = 'expired' OR (status = 'active' AND expires_at <= ?1) THEN 1 ELSE 0 END), 0) AS expired,
             COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0) AS completed,
             COALESCE(SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END), 0) AS cancelled,
             MIN(CASE WHEN status = 'active' AND expires_at > ?1 THEN created_at END) AS oldest_active
         FROM holds",
    )
    .bind(now.as_millis())
    .fetch_one(pool)
    .await
    .map_err(map_error)?;
    let oldest: Option<i64> = row.try_get("oldest_active").map_err(map_error)?;
    Ok(ReservationStats {
        active: row.try_get("active").map_err(map_error)?,
        expired: row.try_get("expired").map_err(map_error)?,
        completed: row.try_get("completed").map_err(map_error)?,
        cancelled: row.try_get("cancelled").map_err(map_error)?,
        oldest_active_created_at: oldest.map(Timestamp::from_millis),
    })
}
