//! PostgreSQL's own hold statements: writing a batch's placements (arrays bound to
//! `UNNEST`, one statement for every counter, hold and item) and the expiry pass (one data-modifying CTE
//! that picks, locks, marks and sums). See `crate::holds` for the rules they serve.

use boxoffice_core::holds::{EmailAddress, Hold, HoldItem};
use boxoffice_core::ids::TicketTypeId;
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{PgConnection, Row};

use super::map_error;
use crate::holds::ExpiryScope;

/// Writes the placements the shared rule decided (see `crate::holds::place_batch`): every
/// counter, hold and item in one statement whatever the batch's size, arrays bound to
/// `UNNEST`. The ticket type rows are locked by the caller's read.
pub(crate) async fn write_placements(
    conn: &mut PgConnection,
    taken: &[(TicketTypeId, i64)],
    placed: &[&Hold],
    now: Timestamp,
) -> Result<(), StoreError> {
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
    .bind(taken.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
    .bind(taken.iter().map(|(_, quantity)| *quantity).collect::<Vec<_>>())
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
        crate::holds::release_tickets(conn, &id, row.try_get("quantity").map_err(map_error)?).await?;
    }
    Ok(marked as u64)
}
