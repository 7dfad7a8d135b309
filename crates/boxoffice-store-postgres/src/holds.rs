//! Holds: placing, cancelling, expiring, counting.
//!
//! Capacity is the ticket type's `held` counter: a batch of holds locks its ticket types'
//! rows (`SELECT … FOR UPDATE`), decides which holds fit, and raises the counters in the
//! same transaction, so it cannot oversell; one commit places the whole batch.
//!
//! Lock order, to rule out deadlocks between instances: a transaction locks hold rows
//! first (several in id order, or with SKIP LOCKED), then ticket type rows in id order.
//! That is why releasing expired holds for a sold-out ticket type runs in its own
//! transaction before the hold is tried again, never inside the hold's transaction.

use std::collections::HashMap;

use boxoffice_core::holds::{
    EmailAddress, FreeTickets, Hold, HoldItem, HoldStatus, Placement, ReservationStats, allocate,
};
use boxoffice_core::ids::{EventId, HoldId, TicketTypeId};
use boxoffice_core::rows::{self, HOLD_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{PgConnection, PgPool, Row};

use crate::map_error;
use crate::rows::Columns;

/// The most expired holds one lazy release marks: enough to free any single request's
/// quantity many times over, while keeping the transaction short.
pub(crate) const RELEASE_BATCH: u32 = 1_000;

/// Which holds an expiry pass may take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ExpiryScope<'a> {
    /// The sweeper: any expired hold, skipping those another transaction has locked
    /// (another instance's sweep or a cancellation), so two sweeps never take the same hold.
    Sweep,
    /// Only holds with this ticket type, waiting for locked ones: a buyer is waiting for
    /// exactly these tickets, and a hold being released elsewhere will be gone after the wait.
    TicketType(&'a TicketTypeId),
}

/// Places a batch of holds in one transaction; see `Store::place_holds`.
///
/// Four round trips whatever the batch's size: lock the ticket types' rows (in id order,
/// the lock order), decide in memory with the shared rule, write every counter, hold and
/// item with one statement, commit. Holding the row locks from the read to the write is
/// what makes the in-memory decision safe; the table's `CHECK (sold + held <= capacity)`
/// is a second line of defence.
pub(crate) async fn place_batch(pool: &PgPool, holds: &[&Hold], now: Timestamp) -> Result<Vec<Placement>, StoreError> {
    let mut ticket_type_ids: Vec<&str> = holds
        .iter()
        .flat_map(|hold| hold.items.iter().map(|item| item.ticket_type_id.as_str()))
        .collect();
    ticket_type_ids.sort_unstable();
    ticket_type_ids.dedup();
    let mut tx = pool.begin().await.map_err(map_error)?;
    let rows = sqlx::query(
        "SELECT id, name, capacity - sold - held AS free FROM ticket_types WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ticket_type_ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_error)?;
    let mut free = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id").map_err(map_error)?;
        let ticket_type = FreeTickets {
            name: row.try_get("name").map_err(map_error)?,
            free: row.try_get("free").map_err(map_error)?,
        };
        free.insert(TicketTypeId::from_trusted(id), ticket_type);
    }
    let allocation = allocate(holds, &mut free);
    if !allocation.any_placed() {
        // Nothing to write; dropping the transaction releases the row locks.
        return Ok(allocation.placements);
    }
    let placed: Vec<&Hold> = holds
        .iter()
        .zip(&allocation.placements)
        .filter(|(_, placement)| **placement == Placement::Placed)
        .map(|(hold, _)| *hold)
        .collect();
    let items: Vec<(&Hold, &HoldItem)> = placed
        .iter()
        .flat_map(|hold| hold.items.iter().map(move |item| (*hold, item)))
        .collect();
    sqlx::query(
        "WITH taken AS (
             UPDATE ticket_types AS t SET held = t.held + d.quantity
             FROM UNNEST($1::TEXT[], $2::BIGINT[]) AS d (id, quantity)
             WHERE t.id = d.id
         ), placed AS (
             INSERT INTO holds (id, event_id, status, customer_email, amount_cents, currency, created_at, expires_at, updated_at)
             SELECT h.id, h.event_id, 'active', h.email, h.amount, h.currency, h.created_at, h.expires_at, $10
             FROM UNNEST($3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[], $8::BIGINT[], $9::BIGINT[])
                  AS h (id, event_id, email, amount, currency, created_at, expires_at)
         )
         INSERT INTO hold_items (hold_id, ticket_type_id, quantity, unit_price_cents)
         SELECT * FROM UNNEST($11::TEXT[], $12::TEXT[], $13::BIGINT[], $14::BIGINT[])",
    )
    .bind(allocation.taken.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
    .bind(allocation.taken.iter().map(|(_, quantity)| *quantity).collect::<Vec<_>>())
    .bind(placed.iter().map(|hold| hold.id.as_str()).collect::<Vec<_>>())
    .bind(placed.iter().map(|hold| hold.event_id.as_str()).collect::<Vec<_>>())
    .bind(
        placed
            .iter()
            .map(|hold| hold.customer_email.as_ref().map(EmailAddress::as_str))
            .collect::<Vec<_>>(),
    )
    .bind(placed.iter().map(|hold| hold.amount.get()).collect::<Vec<_>>())
    .bind(placed.iter().map(|hold| hold.currency.as_str()).collect::<Vec<_>>())
    .bind(placed.iter().map(|hold| hold.created_at.as_millis()).collect::<Vec<_>>())
    .bind(placed.iter().map(|hold| hold.expires_at.as_millis()).collect::<Vec<_>>())
    .bind(now.as_millis())
    .bind(items.iter().map(|(hold, _)| hold.id.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, item)| item.ticket_type_id.as_str()).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, item)| i64::from(item.quantity.get())).collect::<Vec<_>>())
    .bind(items.iter().map(|(_, item)| item.unit_price.get()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await
    .map_err(map_error)?;
    tx.commit().await.map_err(map_error)?;
    Ok(allocation.placements)
}

pub(crate) async fn get(pool: &PgPool, id: &HoldId) -> Result<Hold, StoreError> {
    let mut conn = pool.acquire().await.map_err(map_error)?;
    load(&mut conn, id, false).await
}

pub(crate) async fn load(conn: &mut PgConnection, id: &HoldId, lock: bool) -> Result<Hold, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_error)?
    .ok_or(StoreError::NotFound("reservation"))?;
    let items = sqlx::query(
        "SELECT ticket_type_id, quantity, unit_price_cents FROM hold_items WHERE hold_id = $1 ORDER BY ticket_type_id",
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

/// Cancels inside a transaction, the hold row locked first; see `Store::cancel_hold`.
pub(crate) async fn cancel(conn: &mut PgConnection, id: &HoldId, now: Timestamp) -> Result<Hold, StoreError> {
    let mut hold = load(conn, id, true).await?;
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
    conn: &mut PgConnection,
    hold: &Hold,
    new_status: HoldStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    let released = sqlx::query("UPDATE holds SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'active'")
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

async fn release_tickets(conn: &mut PgConnection, id: &TicketTypeId, quantity: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE ticket_types SET held = held - $1 WHERE id = $2")
        .bind(quantity)
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    Ok(())
}

/// Marks up to `limit` holds that expired by `now` as expired and gives their tickets
/// back, inside the caller's transaction. Returns how many it marked.
///
/// One statement picks, locks and marks the holds and sums their tickets per ticket type
/// (no hold ids travel to the client and back); then one counter update per ticket type,
/// in id order — the lock order every transaction that changes counters keeps. Measured
/// on 1M expired holds, this and the concurrent sweeps (`Settings::sweep_workers`) took
/// the sweep from 27.6 s to the figure in BENCHMARKS.md.
pub(crate) async fn expire(
    conn: &mut PgConnection,
    now: Timestamp,
    limit: u32,
    scope: ExpiryScope<'_>,
) -> Result<u64, StoreError> {
    // Locked rows are re-checked as active after any wait (PostgreSQL re-evaluates the
    // WHERE of a locking read), so `marked` is exactly what this transaction expires; the
    // status guard in the UPDATE is a second line of defence.
    let pick = match scope {
        ExpiryScope::Sweep => {
            "SELECT id FROM holds WHERE status = 'active' AND expires_at <= $1
             ORDER BY expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"
        }
        ExpiryScope::TicketType(_) => {
            "SELECT h.id FROM holds h WHERE h.status = 'active' AND h.expires_at <= $1
               AND EXISTS (SELECT 1 FROM hold_items hi WHERE hi.hold_id = h.id AND hi.ticket_type_id = $3)
             ORDER BY h.id LIMIT $2 FOR UPDATE"
        }
    };
    let sql = format!(
        "WITH picked AS ({pick}),
         marked AS (
             UPDATE holds h SET status = 'expired', updated_at = $1
             FROM picked WHERE h.id = picked.id AND h.status = 'active'
             RETURNING h.id
         )
         SELECT hi.ticket_type_id, SUM(hi.quantity)::BIGINT AS quantity,
                (SELECT COUNT(*) FROM marked) AS marked
         FROM hold_items hi JOIN marked ON hi.hold_id = marked.id
         GROUP BY hi.ticket_type_id ORDER BY hi.ticket_type_id"
    );
    let mut query = sqlx::query(&sql).bind(now.as_millis()).bind(i64::from(limit));
    if let ExpiryScope::TicketType(ticket_type) = scope {
        query = query.bind(ticket_type.as_str());
    }
    // Every hold has at least one item, so no rows means nothing was marked.
    let totals = query.fetch_all(&mut *conn).await.map_err(map_error)?;
    let mut marked = 0;
    for row in totals {
        marked = row.try_get::<i64, _>("marked").map_err(map_error)?;
        let id = TicketTypeId::from_trusted(row.try_get("ticket_type_id").map_err(map_error)?);
        release_tickets(conn, &id, row.try_get("quantity").map_err(map_error)?).await?;
    }
    Ok(marked as u64)
}

/// Tickets per ticket type of `event` in holds still marked active but expired by `now`:
/// what the `held` counters include and readers must subtract.
pub(crate) async fn expired_unswept_by_ticket_type(
    conn: &mut PgConnection,
    event: &EventId,
    now: Timestamp,
) -> Result<HashMap<String, i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT hi.ticket_type_id, SUM(hi.quantity)::BIGINT AS quantity
         FROM holds h JOIN hold_items hi ON hi.hold_id = h.id
         WHERE h.status = 'active' AND h.expires_at <= $1 AND h.event_id = $2
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

pub(crate) async fn stats(pool: &PgPool, now: Timestamp) -> Result<ReservationStats, StoreError> {
    let row = sqlx::query(
        "SELECT
             COUNT(*) FILTER (WHERE status = 'active' AND expires_at > $1) AS active,
             COUNT(*) FILTER (WHERE status = 'expired' OR (status = 'active' AND expires_at <= $1)) AS expired,
             COUNT(*) FILTER (WHERE status = 'completed') AS completed,
             COUNT(*) FILTER (WHERE status = 'cancelled') AS cancelled,
             MIN(created_at) FILTER (WHERE status = 'active' AND expires_at > $1) AS oldest_active
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
