//! The catalog: organizations with their error projects and API keys, ticketed events and
//! their ticket types, with inventory exact at `now`.
//!
//! The `held` counter still includes holds that expired but are not swept yet; every read
//! subtracts those, so what callers see is exact at the instant of the read.

use std::collections::HashMap;

use async_trait::async_trait;
use boxoffice_core::auth::StoredApiKey;
use boxoffice_core::catalog::{Capacity, Event, EventWithTicketTypes, TicketType, TicketTypeChanges};
use boxoffice_core::error_store::reports::ErrorProject;
use boxoffice_core::ids::{ApiKeyId, EventId, OrganizationId, TicketTypeId};
use boxoffice_core::money::Cents;
use boxoffice_core::organizations::{Name, Organization};
use boxoffice_core::store::CatalogStore;
use boxoffice_core::{Page, PageRequest, StoreError, Timestamp};

use crate::rows::{self, ERROR_PROJECT_COLUMNS, EVENT_COLUMNS, StoredRow, TICKET_TYPE_COLUMNS};
use crate::sql::{Conn, query};
use crate::{SqlStore, holds, in_transaction, missing_parent, with_connection};

#[async_trait]
impl CatalogStore for SqlStore {
    #[tracing::instrument(name = "store.create_organization", skip_all, fields(organization = %organization.id.as_str()))]
    async fn create_organization(
        &self,
        organization: &Organization,
        error_public_key: &str,
    ) -> Result<ErrorProject, StoreError> {
        // Both rows commit or neither; the database numbers the project.
        in_transaction!(self, |conn| {
            query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(organization.id.as_str())
                .bind(organization.name.as_str())
                .bind(organization.created_at.as_millis())
                .execute(conn)
                .await?;
            let row = query(format!(
                "INSERT INTO error_projects (organization_id, public_key, created_at) VALUES ($1, $2, $3)
                 RETURNING {ERROR_PROJECT_COLUMNS}"
            ))
            .bind(organization.id.as_str())
            .bind(error_public_key)
            .bind(organization.created_at.as_millis())
            .fetch_one(conn, "error project")
            .await?;
            rows::error_project(&row)?
        })
    }

    #[tracing::instrument(name = "store.get_organization", skip_all, fields(organization = %id.as_str()))]
    async fn get_organization(&self, id: &OrganizationId) -> Result<Organization, StoreError> {
        let row = with_connection!(self, |conn| query(
            "SELECT id, name, created_at FROM organizations WHERE id = $1"
        )
        .bind(id.as_str())
        .fetch_one(conn, "organization")
        .await?);
        rows::organization(&row)
    }

    #[tracing::instrument(name = "store.count_organizations", skip_all)]
    async fn count_organizations(&self) -> Result<i64, StoreError> {
        let row = with_connection!(self, |conn| query(
            "SELECT COUNT(*) AS organizations FROM organizations"
        )
        .fetch_one(conn, "count")
        .await?);
        row.integer("organizations")
    }

    #[tracing::instrument(name = "store.create_api_key", skip_all, fields(api_key = %key.id.as_str()))]
    async fn create_api_key(&self, key: &StoredApiKey, created_at: Timestamp) -> Result<(), StoreError> {
        with_connection!(self, |conn| query(
            "INSERT INTO api_keys (id, organization_id, secret_sha256, created_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(key.id.as_str())
        .bind(key.organization_id.as_str())
        .bind(key.secret_hash.to_hex())
        .bind(created_at.as_millis())
        .execute(conn)
        .await
        .map_err(missing_parent("organization"))?);
        Ok(())
    }

    #[tracing::instrument(name = "store.find_api_key", skip_all, fields(api_key = %id.as_str()))]
    async fn find_api_key(&self, id: &ApiKeyId) -> Result<Option<StoredApiKey>, StoreError> {
        let row = with_connection!(self, |conn| query(
            "SELECT id, organization_id, secret_sha256 FROM api_keys WHERE id = $1"
        )
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?);
        row.map(|row| rows::api_key(&row)).transpose()
    }

    #[tracing::instrument(name = "store.create_event", skip_all, fields(event = %event.id.as_str()))]
    async fn create_event(&self, event: &Event) -> Result<(), StoreError> {
        with_connection!(self, |conn| query(
            "INSERT INTO events (id, organization_id, name, starts_at, currency, hold_seconds, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(event.id.as_str())
        .bind(event.organization_id.as_str())
        .bind(event.name.as_str())
        .bind(event.starts_at.as_millis())
        .bind(event.currency.as_str())
        .bind(event.hold_seconds.map(|s| i64::from(s.get())))
        .bind(event.created_at.as_millis())
        .execute(conn)
        .await
        .map_err(missing_parent("organization"))?);
        Ok(())
    }

    #[tracing::instrument(name = "store.get_event", skip_all, fields(event = %id.as_str()))]
    async fn get_event(&self, id: &EventId, now: Timestamp) -> Result<EventWithTicketTypes, StoreError> {
        with_connection!(self, |conn| {
            let row = query(format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
                .bind(id.as_str())
                .fetch_one(conn, "event")
                .await?;
            let event = rows::event(&row)?;
            let ticket_types = ticket_types_of(conn, &event.id, now).await?;
            Ok(EventWithTicketTypes { event, ticket_types })
        })
    }

    #[tracing::instrument(name = "store.list_events", skip_all)]
    async fn list_events(
        &self,
        organization: Option<&OrganizationId>,
        page: &PageRequest<EventId>,
        now: Timestamp,
    ) -> Result<Page<EventWithTicketTypes>, StoreError> {
        with_connection!(self, |conn| {
            let mut listing = query(format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1"));
            if let Some(organization) = organization {
                listing = listing.push(" AND organization_id = ").push_bind(organization.as_str());
            }
            if let Some(cursor) = &page.starting_after {
                let created_at = query("SELECT created_at FROM events WHERE id = $1")
                    .bind(cursor.as_str())
                    .fetch_one(conn, "event")
                    .await?
                    .integer("created_at")?;
                listing = listing
                    .push(" AND (created_at < ")
                    .push_bind(created_at)
                    .push(" OR (created_at = ")
                    .push_bind(created_at)
                    .push(" AND id < ")
                    .push_bind(cursor.as_str())
                    .push("))");
            }
            let found = listing
                .push(" ORDER BY created_at DESC, id DESC LIMIT ")
                .push_bind(i64::from(page.limit) + 1)
                .fetch_all(conn)
                .await?;
            let has_more = found.len() > page.limit as usize;
            let mut data = Vec::with_capacity(found.len().min(page.limit as usize));
            for row in found.iter().take(page.limit as usize) {
                let event = rows::event(row)?;
                let ticket_types = ticket_types_of(conn, &event.id, now).await?;
                data.push(EventWithTicketTypes { event, ticket_types });
            }
            Ok(Page { data, has_more })
        })
    }

    #[tracing::instrument(name = "store.create_ticket_type", skip_all, fields(ticket_type = %ticket_type.id.as_str()))]
    async fn create_ticket_type(&self, ticket_type: &TicketType) -> Result<(), StoreError> {
        with_connection!(self, |conn| query(
            "INSERT INTO ticket_types
                 (id, event_id, name, price_cents, capacity, max_per_order, on_sale, sold, held, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8)"
        )
        .bind(ticket_type.id.as_str())
        .bind(ticket_type.event_id.as_str())
        .bind(ticket_type.name.as_str())
        .bind(ticket_type.price.get())
        .bind(ticket_type.capacity.get())
        .bind(i64::from(ticket_type.max_per_order.get()))
        .bind(ticket_type.on_sale)
        .bind(ticket_type.created_at.as_millis())
        .execute(conn)
        .await
        .map_err(missing_parent("event"))?);
        Ok(())
    }

    #[tracing::instrument(name = "store.get_ticket_type", skip_all, fields(ticket_type = %id.as_str()))]
    async fn get_ticket_type(&self, id: &TicketTypeId, now: Timestamp) -> Result<TicketType, StoreError> {
        with_connection!(self, |conn| get_ticket_type(conn, id, now).await)
    }

    #[tracing::instrument(name = "store.update_ticket_type", skip_all, fields(ticket_type = %id.as_str()))]
    async fn update_ticket_type(
        &self,
        id: &TicketTypeId,
        changes: &TicketTypeChanges,
        now: Timestamp,
    ) -> Result<TicketType, StoreError> {
        if changes.capacity.is_some() {
            // Released in a transaction of its own, before the ticket type row is locked:
            // the lock order (holds before ticket types). The check below is then exact.
            self.release_expired_holds_of(id, now).await?;
        }
        in_transaction!(self, |conn| update_ticket_type(conn, id, changes).await?)?;
        self.get_ticket_type(id, now).await
    }
}

async fn get_ticket_type(conn: &mut dyn Conn, id: &TicketTypeId, now: Timestamp) -> Result<TicketType, StoreError> {
    let row = query(format!("SELECT {TICKET_TYPE_COLUMNS} FROM ticket_types WHERE id = $1"))
        .bind(id.as_str())
        .fetch_one(conn, "ticket type")
        .await?;
    let mut ticket_type = rows::ticket_type(&row)?;
    let unswept = holds::expired_unswept_by_ticket_type(conn, &ticket_type.event_id, now).await?;
    ticket_type.held -= unswept.get(ticket_type.id.as_str()).copied().unwrap_or(0);
    Ok(ticket_type)
}

/// Applies changes; a capacity below sold + held is refused (the row locked from the check
/// to the change, so both are one step).
async fn update_ticket_type(
    conn: &mut dyn Conn,
    id: &TicketTypeId,
    changes: &TicketTypeChanges,
) -> Result<(), StoreError> {
    if let Some(capacity) = changes.capacity {
        let lock = conn.dialect().for_update();
        let committed = query(format!(
            "SELECT sold + held AS committed FROM ticket_types WHERE id = $1{lock}"
        ))
        .bind(id.as_str())
        .fetch_one(conn, "ticket type")
        .await?
        .integer("committed")?;
        if capacity.get() < committed {
            return Err(StoreError::CapacityBelowCommitted { committed });
        }
    }
    let changed = query(
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
    .execute(conn)
    .await?;
    if changed == 0 {
        return Err(StoreError::NotFound("ticket type"));
    }
    Ok(())
}

/// The ticket types of an event, oldest first, with `held` exact at `now`.
async fn ticket_types_of(
    conn: &mut dyn Conn,
    event_id: &EventId,
    now: Timestamp,
) -> Result<Vec<TicketType>, StoreError> {
    let found = query(format!(
        "SELECT {TICKET_TYPE_COLUMNS} FROM ticket_types WHERE event_id = $1 ORDER BY created_at, id"
    ))
    .bind(event_id.as_str())
    .fetch_all(conn)
    .await?;
    let unswept: HashMap<String, i64> = holds::expired_unswept_by_ticket_type(conn, event_id, now).await?;
    found
        .iter()
        .map(|row| {
            let mut ticket_type = rows::ticket_type(row)?;
            ticket_type.held -= unswept.get(ticket_type.id.as_str()).copied().unwrap_or(0);
            Ok(ticket_type)
        })
        .collect()
}

/// The error project of an organization.
pub(crate) async fn error_project(conn: &mut dyn Conn, id: &OrganizationId) -> Result<ErrorProject, StoreError> {
    let row = query(format!(
        "SELECT {ERROR_PROJECT_COLUMNS} FROM error_projects WHERE organization_id = $1"
    ))
    .bind(id.as_str())
    .fetch_one(conn, "organization")
    .await?;
    rows::error_project(&row)
}

/// The error project with this numeric id, if any.
pub(crate) async fn find_error_project(
    conn: &mut dyn Conn,
    project_id: i64,
) -> Result<Option<ErrorProject>, StoreError> {
    let row = query(format!(
        "SELECT {ERROR_PROJECT_COLUMNS} FROM error_projects WHERE project_id = $1"
    ))
    .bind(project_id)
    .fetch_optional(conn)
    .await?;
    row.map(|row| rows::error_project(&row)).transpose()
}
