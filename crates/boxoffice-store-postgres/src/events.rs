//! Events and ticket types, with inventory exact at `now`.
//!
//! The `held` counter still includes holds that expired but are not swept yet; every read
//! subtracts those, so what callers see is exact at the instant of the read.

use std::collections::HashMap;

use boxoffice_core::catalog::{Capacity, Event, EventWithTicketTypes, TicketType, TicketTypeChanges};
use boxoffice_core::ids::{EventId, OrganizationId, TicketTypeId};
use boxoffice_core::money::Cents;
use boxoffice_core::organizations::Name;
use boxoffice_core::rows::{self, EVENT_COLUMNS, TICKET_TYPE_COLUMNS};
use boxoffice_core::{Page, PageRequest, StoreError, Timestamp};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use crate::rows::Columns;
use crate::{holds, map_error, missing_parent};

pub(crate) async fn create_event(pool: &PgPool, event: &Event) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (id, organization_id, name, starts_at, currency, hold_seconds, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event.id.as_str())
    .bind(event.organization_id.as_str())
    .bind(event.name.as_str())
    .bind(event.starts_at.as_millis())
    .bind(event.currency.as_str())
    .bind(event.hold_seconds.map(|s| i64::from(s.get())))
    .bind(event.created_at.as_millis())
    .execute(pool)
    .await
    .map_err(missing_parent("organization"))?;
    Ok(())
}

pub(crate) async fn get_event(pool: &PgPool, id: &EventId, now: Timestamp) -> Result<EventWithTicketTypes, StoreError> {
    let mut conn = pool.acquire().await.map_err(map_error)?;
    let row = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("event"))?;
    let event = rows::event(&Columns(&row))?;
    let ticket_types = ticket_types_of(&mut conn, &event.id, now).await?;
    Ok(EventWithTicketTypes { event, ticket_types })
}

pub(crate) async fn list_events(
    pool: &PgPool,
    organization: Option<&OrganizationId>,
    page: &PageRequest<EventId>,
    now: Timestamp,
) -> Result<Page<EventWithTicketTypes>, StoreError> {
    let mut conn = pool.acquire().await.map_err(map_error)?;
    let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1"));
    if let Some(organization) = organization {
        query.push(" AND organization_id = ").push_bind(organization.as_str());
    }
    if let Some(cursor) = &page.starting_after {
        let created_at: i64 = sqlx::query_scalar("SELECT created_at FROM events WHERE id = $1")
            .bind(cursor.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_error)?
            .ok_or(StoreError::NotFound("event"))?;
        query
            .push(" AND (created_at < ")
            .push_bind(created_at)
            .push(" OR (created_at = ")
            .push_bind(created_at)
            .push(" AND id < ")
            .push_bind(cursor.as_str())
            .push("))");
    }
    query
        .push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(page.limit) + 1);
    let rows = query.build().fetch_all(&mut *conn).await.map_err(map_error)?;
    let has_more = rows.len() > page.limit as usize;
    let mut data = Vec::with_capacity(rows.len().min(page.limit as usize));
    for row in rows.iter().take(page.limit as usize) {
        let event = rows::event(&Columns(row))?;
        let ticket_types = ticket_types_of(&mut conn, &event.id, now).await?;
        data.push(EventWithTicketTypes { event, ticket_types });
    }
    Ok(Page { data, has_more })
}

pub(crate) async fn create_ticket_type(pool: &PgPool, ticket_type: &TicketType) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ticket_types (id, event_id, name, price_cents, capacity, max_per_order, on_sale, sold, held, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8)",
    )
    .bind(ticket_type.id.as_str())
    .bind(ticket_type.event_id.as_str())
    .bind(ticket_type.name.as_str())
    .bind(ticket_type.price.get())
    .bind(ticket_type.capacity.get())
    .bind(i64::from(ticket_type.max_per_order.get()))
    .bind(ticket_type.on_sale)
    .bind(ticket_type.created_at.as_millis())
    .execute(pool)
    .await
    .map_err(missing_parent("event"))?;
    Ok(())
}

pub(crate) async fn get_ticket_type(
    pool: &PgPool,
    id: &TicketTypeId,
    now: Timestamp,
) -> Result<TicketType, StoreError> {
    let mut conn = pool.acquire().await.map_err(map_error)?;
    let row = sqlx::query(&format!("SELECT {TICKET_TYPE_COLUMNS} FROM ticket_types WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("ticket type"))?;
    let mut ticket_type = rows::ticket_type(&Columns(&row))?;
    let unswept = holds::expired_unswept_by_ticket_type(&mut conn, &ticket_type.event_id, now).await?;
    ticket_type.held -= unswept.get(ticket_type.id.as_str()).copied().unwrap_or(0);
    Ok(ticket_type)
}

/// Applies changes inside a transaction. The caller has already released the ticket
/// type's expired holds (in their own transaction, to keep the lock order: holds before
/// ticket types), so the check against sold + held is exact at `now`; the row lock makes
/// the check and the change one step.
pub(crate) async fn update_ticket_type(
    conn: &mut PgConnection,
    id: &TicketTypeId,
    changes: &TicketTypeChanges,
) -> Result<(), StoreError> {
    if let Some(capacity) = changes.capacity {
        let committed: i64 = sqlx::query_scalar("SELECT sold + held FROM ticket_types WHERE id = $1 FOR UPDATE")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_error)?
            .ok_or(StoreError::NotFound("ticket type"))?;
        if capacity.get() < committed {
            return Err(StoreError::CapacityBelowCommitted { committed });
        }
    }
    let result = sqlx::query(
        "UPDATE ticket_types SET
             name = COALESCE($1, name),
             price_cents = COALESCE($2, price_cents),
             capacity = COALESCE($3, capacity),
             max_per_order = COALESCE($4, max_per_order),
             on_sale = COALESCE($5, on_sale)
         WHERE id = $6",
    )
    .bind(changes.name.as_ref().map(Name::as_str))
    .bind(changes.price.map(Cents::get))
    .bind(changes.capacity.map(Capacity::get))
    .bind(changes.max_per_order.map(|m| i64::from(m.get())))
    .bind(changes.on_sale)
    .bind(id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(map_error)?;
    if result.rows_affected() == 0 {
        return Err(StoreError::NotFound("ticket type"));
    }
    Ok(())
}

/// The ticket types of an event, oldest first, with `held` exact at `now`.
async fn ticket_types_of(
    conn: &mut PgConnection,
    event_id: &EventId,
    now: Timestamp,
) -> Result<Vec<TicketType>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {TICKET_TYPE_COLUMNS} FROM ticket_types WHERE event_id = $1 ORDER BY created_at, id"
    ))
    .bind(event_id.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(map_error)?;
    let unswept: HashMap<String, i64> = holds::expired_unswept_by_ticket_type(conn, event_id, now).await?;
    rows.iter()
        .map(|row| {
            let mut ticket_type = rows::ticket_type(&Columns(row))?;
            ticket_type.held -= unswept.get(ticket_type.id.as_str()).copied().unwrap_or(0);
            Ok(ticket_type)
        })
        .collect()
}
