//! Holds (the API's reservations): placing, cancelling, expiring, counting.
//!
//! Capacity is the ticket type's `held` counter. Whether a batch of holds fits is decided
//! by `boxoffice_core::holds::allocate`; [`place_batch`] reads the counters under lock,
//! asks it, and has each engine write the placements in one commit for the whole batch
//! (the statements differ: PostgreSQL binds arrays to `UNNEST`, SQLite writes chunked
//! multi-row inserts). Expiry, the sweeper's path through a million holds, is also written
//! per engine; everything else is shared here.
//!
//! Lock order, to rule out deadlocks between instances: a transaction locks hold rows
//! first (several in id order, or with SKIP LOCKED), then ticket type rows in id order.
//! That is why releasing expired holds for a sold-out ticket type runs in its own
//! transaction before the hold is tried again, never inside the hold's transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use boxoffice_core::holds::{FreeTickets, Hold, HoldStatus, Placement, ReservationStats, allocate};
use boxoffice_core::ids::{EventId, HoldId, TicketTypeId};
use boxoffice_core::store::HoldStore;
use boxoffice_core::{StoreError, Timestamp};

use crate::rows::{self, HOLD_COLUMNS, StoredRow};
use crate::sql::{Conn, EngineConn, query};
use crate::{SqlStore, in_transaction, postgres, sqlite, with_connection};

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

#[async_trait]
impl HoldStore for SqlStore {
    #[tracing::instrument(name = "store.place_holds", skip_all, fields(holds = batch.len()))]
    async fn place_holds(&self, batch: &[&Hold], now: Timestamp) -> Result<Vec<Placement>, StoreError> {
        in_transaction!(self, |conn| place_batch(conn, batch, now).await?)
    }

    #[tracing::instrument(name = "store.release_expired_holds", skip_all, fields(ticket_type = %ticket_type.as_str()))]
    async fn release_expired_holds(&self, ticket_type: &TicketTypeId, now: Timestamp) -> Result<u64, StoreError> {
        self.release_expired_holds_of(ticket_type, now).await
    }

    #[tracing::instrument(name = "store.get_hold", skip_all, fields(hold = %id.as_str()))]
    async fn get_hold(&self, id: &HoldId) -> Result<Hold, StoreError> {
        with_connection!(self, |conn| load(conn, id).await)
    }

    #[tracing::instrument(name = "store.cancel_hold", skip_all, fields(hold = %id.as_str()))]
    async fn cancel_hold(&self, id: &HoldId, now: Timestamp) -> Result<Hold, StoreError> {
        in_transaction!(self, |conn| cancel(conn, id, now).await?)
    }

    #[tracing::instrument(name = "store.expire_holds", skip_all, fields(limit))]
    async fn expire_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        in_transaction!(self, |conn| expire(conn, now, limit, ExpiryScope::Sweep).await?)
    }

    #[tracing::instrument(name = "store.reservation_stats", skip_all)]
    async fn reservation_stats(&self, now: Timestamp) -> Result<ReservationStats, StoreError> {
        with_connection!(self, |conn| stats(conn, now).await)
    }
}

impl SqlStore {
    /// Releases every hold of one ticket type that expired by `now`, [`RELEASE_BATCH`] at a
    /// time, each batch in a transaction of its own (short, and never inside a placing
    /// transaction: the lock order). All of them, not one batch: an expired hold never
    /// blocks a sale whatever their number (SPEC §4), and the caller releases a ticket type
    /// once per batch of holds. The sweeper keeps the number small in the steady state.
    pub(crate) async fn release_expired_holds_of(
        &self,
        ticket_type: &TicketTypeId,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut released = 0;
        loop {
            let batch = in_transaction!(self, |conn| expire(
                conn,
                now,
                RELEASE_BATCH,
                ExpiryScope::TicketType(ticket_type)
            )
            .await?)?;
            released += batch;
            if batch < u64::from(RELEASE_BATCH) {
                return Ok(released);
            }
        }
    }
}

/// Places a batch of holds in the caller's transaction; see `HoldStore::place_holds`.
///
/// Read the ticket types' free tickets, locked in id order (the lock order; on SQLite the
/// write lock covers it), decide in memory with the shared rule, write every placement,
/// commit: a fixed number of round trips whatever the batch's size. Holding the locks from
/// the read to the write is what makes the decision in memory safe; the table's
/// `CHECK (sold + held <= capacity)` is a second line of defence.
async fn place_batch(conn: &mut dyn Conn, holds: &[&Hold], now: Timestamp) -> Result<Vec<Placement>, StoreError> {
    let mut ticket_type_ids: Vec<&str> = holds
        .iter()
        .flat_map(|hold| hold.items.iter().map(|item| item.ticket_type_id.as_str()))
        .collect();
    ticket_type_ids.sort_unstable();
    ticket_type_ids.dedup();
    let lock = conn.dialect().for_update();
    let found = query("SELECT id, name, capacity - sold - held AS free FROM ticket_types WHERE id IN (")
        .push_list(ticket_type_ids.iter().copied())
        .push(&format!(") ORDER BY id{lock}"))
        .fetch_all(conn)
        .await?;
    let mut free = HashMap::with_capacity(found.len());
    for row in found {
        let ticket_type = FreeTickets {
            name: row.text("name")?,
            free: row.integer("free")?,
        };
        free.insert(TicketTypeId::from_trusted(row.text("id")?), ticket_type);
    }
    let allocation = allocate(holds, &mut free);
    if !allocation.any_placed() {
        return Ok(allocation.placements);
    }
    let placed: Vec<&Hold> = holds
        .iter()
        .zip(&allocation.placements)
        .filter(|(_, placement)| **placement == Placement::Placed)
        .map(|(hold, _)| *hold)
        .collect();
    match conn.engine() {
        EngineConn::Postgres(conn) => postgres::holds::write_placements(conn, &allocation.taken, &placed, now).await?,
        EngineConn::Sqlite(conn) => sqlite::holds::write_placements(conn, &allocation.taken, &placed, now).await?,
    }
    Ok(allocation.placements)
}

/// Reads a hold with its items (sorted by ticket type id).
pub(crate) async fn load(conn: &mut dyn Conn, id: &HoldId) -> Result<Hold, StoreError> {
    read(conn, id, "").await
}

/// Reads a hold with its items, its row locked until the transaction ends.
pub(crate) async fn load_for_update(conn: &mut dyn Conn, id: &HoldId) -> Result<Hold, StoreError> {
    let lock = conn.dialect().for_update();
    read(conn, id, lock).await
}

async fn read(conn: &mut dyn Conn, id: &HoldId, lock: &str) -> Result<Hold, StoreError> {
    let row = query(format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = $1{lock}"))
        .bind(id.as_str())
        .fetch_one(conn, "reservation")
        .await?;
    let items = query(
        "SELECT ticket_type_id, quantity, unit_price_cents FROM hold_items WHERE hold_id = $1 ORDER BY ticket_type_id",
    )
    .bind(id.as_str())
    .fetch_all(conn)
    .await?
    .iter()
    .map(rows::hold_item)
    .collect::<Result<Vec<_>, StoreError>>()?;
    rows::hold(&row, items)
}

/// Cancels, the hold row locked first; see `HoldStore::cancel_hold`.
pub(crate) async fn cancel(conn: &mut dyn Conn, id: &HoldId, now: Timestamp) -> Result<Hold, StoreError> {
    let mut hold = load_for_update(conn, id).await?;
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
    conn: &mut dyn Conn,
    hold: &Hold,
    new_status: HoldStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    let released = query("UPDATE holds SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'active'")
        .bind(new_status.as_str())
        .bind(now.as_millis())
        .bind(hold.id.as_str())
        .execute(conn)
        .await?;
    if released == 1 {
        // Items are sorted by ticket type id: the lock order.
        for item in &hold.items {
            release_tickets(conn, &item.ticket_type_id, i64::from(item.quantity.get())).await?;
        }
    }
    Ok(())
}

/// Gives `quantity` held tickets of a ticket type back.
pub(crate) async fn release_tickets(conn: &mut dyn Conn, id: &TicketTypeId, quantity: i64) -> Result<(), StoreError> {
    query("UPDATE ticket_types SET held = held - $1 WHERE id = $2")
        .bind(quantity)
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks up to `limit` holds that expired by `now` as expired and gives their tickets
/// back, inside the caller's transaction. Returns how many it marked. Each engine does it
/// its own way (see `postgres::holds::expire`, `sqlite::holds::expire`): this is the path
/// the sweeper takes through a million holds.
pub(crate) async fn expire(
    conn: &mut dyn Conn,
    now: Timestamp,
    limit: u32,
    scope: ExpiryScope<'_>,
) -> Result<u64, StoreError> {
    match conn.engine() {
        EngineConn::Postgres(conn) => postgres::holds::expire(conn, now, limit, scope).await,
        EngineConn::Sqlite(conn) => sqlite::holds::expire(conn, now, limit, scope).await,
    }
}

/// Tickets per ticket type of `event` in holds still marked active but expired by `now`:
/// what the `held` counters include and readers must subtract.
pub(crate) async fn expired_unswept_by_ticket_type(
    conn: &mut dyn Conn,
    event: &EventId,
    now: Timestamp,
) -> Result<HashMap<String, i64>, StoreError> {
    // Start from the (usually tiny) set of expired active holds, never from all items of
    // a busy ticket type.
    let join = conn.dialect().join_in_order();
    let found = query(format!(
        "SELECT hi.ticket_type_id, CAST(SUM(hi.quantity) AS BIGINT) AS quantity
         FROM holds h {join} hold_items hi ON hi.hold_id = h.id
         WHERE h.status = 'active' AND h.expires_at <= $1 AND h.event_id = $2
         GROUP BY hi.ticket_type_id"
    ))
    .bind(now.as_millis())
    .bind(event.as_str())
    .fetch_all(conn)
    .await?;
    found
        .iter()
        .map(|row| Ok((row.text("ticket_type_id")?, row.integer("quantity")?)))
        .collect()
}

async fn stats(conn: &mut dyn Conn, now: Timestamp) -> Result<ReservationStats, StoreError> {
    let row = query(
        "SELECT
             COALESCE(SUM(CASE WHEN status = 'active' AND expires_at > $1 THEN 1 ELSE 0 END), 0) AS active,
             COALESCE(SUM(CASE WHEN status = 'expired' OR (status = 'active' AND expires_at <= $1) THEN 1 ELSE 0 END), 0)
                 AS expired,
             COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0) AS completed,
             COALESCE(SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END), 0) AS cancelled,
             MIN(CASE WHEN status = 'active' AND expires_at > $1 THEN created_at END) AS oldest_active
         FROM holds",
    )
    .bind(now.as_millis())
    .fetch_one(conn, "statistics")
    .await?;
    Ok(ReservationStats {
        active: row.integer("active")?,
        expired: row.integer("expired")?,
        completed: row.integer("completed")?,
        cancelled: row.integer("cancelled")?,
        oldest_active_created_at: row.optional_integer("oldest_active")?.map(Timestamp::from_millis),
    })
}
