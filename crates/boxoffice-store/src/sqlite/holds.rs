//! SQLite's own hold statements: writing a batch's placements (chunked multi-row inserts,
//! under SQLite's bound-parameter limit) and the expiry pass (ids first, then one update and one
//! sum over them). See `crate::holds` for the rules they serve.

use boxoffice_core::holds::{EmailAddress, Hold};
use boxoffice_core::ids::TicketTypeId;
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::map_error;
use crate::holds::ExpiryScope;

/// Holds per insert statement: 9 parameters per hold and up to 20 items of 4 each stay
/// well below SQLite's 32,766 bound parameters.
const INSERT_CHUNK: usize = 256;

/// Writes the placements the shared rule decided (see `crate::holds::place_batch`): one
/// update per ticket type, then chunked multi-row inserts of holds and items. The write
/// lock, held since the transaction began, covers the read the decision came from.
pub(crate) async fn write_placements(
    conn: &mut SqliteConnection,
    taken: &[(TicketTypeId, i64)],
    placed: &[&Hold],
    now: Timestamp,
) -> Result<(), StoreError> {
    for (id, quantity) in taken {
        sqlx::query("UPDATE ticket_types SET held = held + ? WHERE id = ?")
            .bind(quantity)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(map_error)?;
    }
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
    Ok(())
}

/// Marks up to `limit` holds that expired by `now` as expired and gives their tickets
/// back — only holds containing the ticket type when the scope names one. Runs inside a write
/// transaction, which on SQLite is exclusive, so no two callers see the same hold active.
pub(crate) async fn expire(
    conn: &mut SqliteConnection,
    now: Timestamp,
    limit: u32,
    scope: ExpiryScope<'_>,
) -> Result<u64, StoreError> {
    let mut select = QueryBuilder::<Sqlite>::new("SELECT id FROM holds h WHERE status = 'active' AND expires_at <= ");
    select.push_bind(now.as_millis());
    if let ExpiryScope::TicketType(ticket_type) = scope {
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
        crate::holds::release_tickets(conn, &id, row.try_get("quantity").map_err(map_error)?).await?;
    }
    Ok(marked)
}
