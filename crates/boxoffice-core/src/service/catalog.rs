//! The catalog's use cases: organizations, their events and the events' ticket types.
//! Reading events is public; changing them takes a caller who may access the organization.

use super::{BoxOffice, Error, require_operator};
use crate::auth::Caller;
use crate::catalog::{Capacity, Event, EventWithTicketTypes, HoldSeconds, MaxPerOrder, TicketType, TicketTypeChanges};
use crate::clock::Timestamp;
use crate::error_store::reports::ErrorProject;
use crate::ids::{EventId, OrganizationId, TicketTypeId};
use crate::money::{Cents, Currency};
use crate::organizations::{Name, Organization};
use crate::store::{Page, PageRequest};

/// A new event as parsed from a request.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The owner.
    pub organization_id: OrganizationId,
    /// Its name.
    pub name: Name,
    /// When it starts.
    pub starts_at: Timestamp,
    /// Its currency.
    pub currency: Currency,
    /// Its own hold length.
    pub hold_seconds: Option<HoldSeconds>,
}

/// A new ticket type as parsed from a request.
#[derive(Debug, Clone)]
pub struct NewTicketType {
    /// Its name.
    pub name: Name,
    /// Price of one ticket.
    pub price: Cents,
    /// Tickets that exist.
    pub capacity: Capacity,
    /// Most per hold.
    pub max_per_order: MaxPerOrder,
}

impl BoxOffice {
    /// Creates an organization with its error project (operator only).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_organization(
        &self,
        caller: &Caller,
        name: Name,
    ) -> Result<(Organization, ErrorProject), Error> {
        require_operator(caller)?;
        let organization = Organization {
            id: OrganizationId::generate(),
            name,
            created_at: self.now(),
        };
        let project = self
            .store
            .create_organization(&organization, &crate::ids::random_hex())
            .await?;
        Ok((organization, project))
    }

    /// Reads an organization the caller may see, with its error project.
    #[tracing::instrument(level = "debug", skip_all, fields(organization_id = %id))]
    pub async fn get_organization(
        &self,
        caller: &Caller,
        id: &OrganizationId,
    ) -> Result<(Organization, ErrorProject), Error> {
        if !caller.can_access(id) {
            return Err(Error::NotFound("organization"));
        }
        let organization = self.catalog_store().get_organization(id).await?;
        let project = self.error_store().get_error_project(id).await?;
        Ok((organization, project))
    }

    /// Creates an event in an organization the caller may change.
    #[tracing::instrument(level = "debug", skip_all, fields(organization_id = %new.organization_id))]
    pub async fn create_event(&self, caller: &Caller, new: NewEvent) -> Result<EventWithTicketTypes, Error> {
        if !caller.can_access(&new.organization_id) {
            return Err(Error::NotFound("organization"));
        }
        let event = Event {
            id: EventId::generate(),
            organization_id: new.organization_id,
            name: new.name,
            starts_at: new.starts_at,
            currency: new.currency,
            hold_seconds: new.hold_seconds,
            created_at: self.now(),
        };
        self.catalog_store().create_event(&event).await?;
        Ok(EventWithTicketTypes {
            event,
            ticket_types: Vec::new(),
        })
    }

    /// Reads an event (public).
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = %id))]
    pub async fn get_event(&self, id: &EventId) -> Result<EventWithTicketTypes, Error> {
        Ok(self.catalog_store().get_event(id, self.now()).await?)
    }

    /// Lists events (public), newest first.
    #[tracing::instrument(level = "debug", skip_all, fields(organization_id = organization.map(tracing::field::display)))]
    pub async fn list_events(
        &self,
        organization: Option<&OrganizationId>,
        page: &PageRequest<EventId>,
    ) -> Result<Page<EventWithTicketTypes>, Error> {
        Ok(self.catalog_store().list_events(organization, page, self.now()).await?)
    }

    /// Adds a ticket type to an event the caller may change.
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = %event_id))]
    pub async fn create_ticket_type(
        &self,
        caller: &Caller,
        event_id: &EventId,
        new: NewTicketType,
    ) -> Result<TicketType, Error> {
        let event = self.catalog_store().get_event(event_id, self.now()).await?;
        if !caller.can_access(&event.event.organization_id) {
            return Err(Error::NotFound("event"));
        }
        let ticket_type = TicketType {
            id: TicketTypeId::generate(),
            event_id: event_id.clone(),
            name: new.name,
            price: new.price,
            capacity: new.capacity,
            max_per_order: new.max_per_order,
            on_sale: true,
            sold: 0,
            held: 0,
            created_at: self.now(),
        };
        self.catalog_store().create_ticket_type(&ticket_type).await?;
        Ok(ticket_type)
    }

    /// Changes a ticket type of an event the caller may change.
    #[tracing::instrument(level = "debug", skip_all, fields(ticket_type_id = %id))]
    pub async fn update_ticket_type(
        &self,
        caller: &Caller,
        id: &TicketTypeId,
        changes: &TicketTypeChanges,
    ) -> Result<TicketType, Error> {
        let now = self.now();
        let current = self.catalog_store().get_ticket_type(id, now).await?;
        let event = self.catalog_store().get_event(&current.event_id, now).await?;
        if !caller.can_access(&event.event.organization_id) {
            return Err(Error::NotFound("ticket type"));
        }
        if changes.is_empty() {
            return Ok(current);
        }
        Ok(self.catalog_store().update_ticket_type(id, changes, now).await?)
    }
}
