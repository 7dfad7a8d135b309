//! Holds: placing, cancelling, expiring, counting.
//!
//! Capacity is the ticket type's `held` counter, read and raised inside one write
//! transaction for a whole batch of holds (`place_batch`), which cannot oversell. Holds that
//! expired but are not swept still count in `held`; when they are what stands between a
//! buyer and a ticket, `boxoffice_core::store::place_in_rounds` releases them (`expire`
//! scoped to the ticket type) and tries again, so an expired hold never blocks a sale,
//! whether or not the sweeper has run.

use std::collections::HashMap;

use boxoffice_core::holds::{EmailAddress, FreeTickets, Hold, HoldStatus, Placement, ReservationStats, allocate};
use boxoffice_core::ids::{EventId, HoldId, TicketTypeId};
use boxoffice_core::rows::{self, HOLD_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

use crate::map_error;
use crate::rows::Columns;

/// The most expired holds one lazy release marks. Enough to free any single request's
/// quantity many times over, while keeping the transaction short.
pub(crate) const RELEASE_BATCH: u32 = 1_000;

/// Holds per insert statement: 9 parameters per hold and up to 20 items of 4 each stay
/// well below SQLite's 32,766 bound parameters.
const INSERT_CHUNK: usize = 256;

/// Places a batch of holds inside a write transaction; see `Store::place_holds`. One
/// read of the ticket types, the decision in memory with the shared rule, then one update
/// per ticket type and one insert each for holds and items. `BEGIN IMMEDIATE` holds the
/// write lock from the read to the write; the table's `CHECK` is a second line of defence.
pub(crate) async fn place_batch(
    conn: &mut SqliteConnection,
    holds: &[&Hold],
    now: Timestamp,
) -> Result<Vec<Placement>, StoreError> {
    let mut ticket_type_ids: Vec<&str> = holds
        .iter()
        .flat_map(|hold| hold.items.iter().map(|item| item.ticket_type_id.as_str()))
        .collect();
    ticket_type_ids.sort_unstable();
    ticket_type_ids.dedup();
    let mut read =
        QueryBuilder::<Sqlite>::new("SELECT id, name, capacity - sold - held AS free FROM ticket_types WHERE id IN (");
    let mut ids = read.separated(", ");
    for id in &ticket_type_ids {
        ids.push_bind(*id);
    }
    read.push(")");
    let mut free = HashMap::with_capacity(ticket_type_ids.len());
    for row in read.build().fetch_all(&mut *conn).await.map_err(map_error)? {
        let id: String = row.try_get("id").map_err(map_error)?;
        let ticket_type = FreeTickets {
            name: row.try_get("name").map_err(map_error)?,
            free: row.try_get("free").map_err(map_error)?,
        };
        free.insert(TicketTypeId::from_trusted(id), ticket_type);
    }
    let allocation = allocate(holds, &mut free);
    if !allocation.any_placed() {
        return Ok(allocation.placements);
    }
    for (id, quantity) in &allocation.taken {
        sqlx::query("UPDATE ticket_types SET held = held + ? WHERE id = ?")
            .bind(quantity)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
    }
    let placed: Vec<&Hold> = holds
        .iter()
        .zip(&allocation.placements)
        .filter(|(_, placement)| **placement == Placement::Placed)
        .map(|(hold, _)| *hold)
        .collect();
    // Chunks keep each statement under SQLite's limit of bound parameters.
    for chunk in placed.chunks(INSERT_CHUNK) {
        let mut insert_holds = QueryBuilder::<Sqlite>::new(
            "INSERT INTO holds (id, event_id, status, customer_email, amount_cents, currency, created_at, expires_at, updated_at) ",
        );
        insert_holds.push_values(chunk, |mut row, hold| {
            row.push_bind(hold.id.as_str())
                .push_bind(hold.event_id.as_str())
                .push_bind("active")
                .push_bind(hold.customer_email.as_ref().map(EmailAddress::as_str))
                .push_bind(hold.amount.get())
                .push_bind(hold.currency.as_str())
                .push_bind(hold.created_at.as_millis())
                .push_bind(hold.expires_at.as_millis())
                .push_bind(now.as_millis());
        });
        insert_holds.build().execute(&mut *conn).await.map_err(map_error)?;
        let mut insert_items = QueryBuilder::<Sqlite>::new(
            "INSERT INTO hold_items (hold_id, ticket_type_id, quantity, unit_price_cents) ",
        );
        insert_items.push_values(
            chunk
                .iter()
                .flat_map(|hold| hold.items.iter().map(move |item| (*hold, item))),
            |mut row, (hold, item)| {
                row.push_bind(hold.id.as_str())
                    .push_bind(item.ticket_type_id.as_str())
                    .push_bind(i64::from(item.quantity.get()))
                    .push_bind(item.unit_price.get());
            },
        );
        insert_items.build().execute(&mut *conn).await.map_err(map_error)?;
    }
    Ok(allocation.placements)
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
