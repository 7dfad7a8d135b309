//! The catalog: organizations and their API keys, ticketed events and their ticket types
//! (SPEC §3), with inventory read exactly at `now`.

use async_trait::async_trait;

use crate::auth::StoredApiKey;
use crate::catalog::{Event, EventWithTicketTypes, TicketType, TicketTypeChanges};
use crate::clock::Timestamp;
use crate::error_store::reports::ErrorProject;
use crate::ids::{ApiKeyId, EventId, OrganizationId, TicketTypeId};
use crate::organizations::Organization;
use crate::store::StoreError;
use crate::store::{Page, PageRequest};

/// Organizations, their API keys, ticketed events and ticket types.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// Creates an organization together with its error project (SPEC §7; the numeric
    /// project id is assigned by the database), atomically.
    async fn create_organization(
        &self,
        organization: &Organization,
        error_public_key: &str,
    ) -> Result<ErrorProject, StoreError>;

    /// Reads an organization.
    async fn get_organization(&self, id: &OrganizationId) -> Result<Organization, StoreError>;

    /// How many organizations exist (the demo seeds only an empty installation).
    async fn count_organizations(&self) -> Result<i64, StoreError>;

    /// Stores an API key's hash. `NotFound` when the organization does not exist.
    async fn create_api_key(&self, key: &StoredApiKey, created_at: Timestamp) -> Result<(), StoreError>;

    /// Looks up an API key for authentication.
    async fn find_api_key(&self, id: &ApiKeyId) -> Result<Option<StoredApiKey>, StoreError>;

    /// Creates an event. `NotFound` when the organization does not exist.
    async fn create_event(&self, event: &Event) -> Result<(), StoreError>;

    /// Reads an event with its ticket types and their inventory at `now`.
    async fn get_event(&self, id: &EventId, now: Timestamp) -> Result<EventWithTicketTypes, StoreError>;

    /// Lists events, newest first, optionally of one organization only.
    async fn list_events(
        &self,
        organization: Option<&OrganizationId>,
        page: &PageRequest<EventId>,
        now: Timestamp,
    ) -> Result<Page<EventWithTicketTypes>, StoreError>;

    /// Creates a ticket type with nothing sold or held. `NotFound` when the event does not exist.
    async fn create_ticket_type(&self, ticket_type: &TicketType) -> Result<(), StoreError>;

    /// Reads a ticket type with its inventory at `now`.
    async fn get_ticket_type(&self, id: &TicketTypeId, now: Timestamp) -> Result<TicketType, StoreError>;

    /// Changes a ticket type. A capacity below sold + held (held at `now`) is refused with
    /// `CapacityBelowCommitted` and nothing changes.
    async fn update_ticket_type(
        &self,
        id: &TicketTypeId,
        changes: &TicketTypeChanges,
        now: Timestamp,
    ) -> Result<TicketType, StoreError>;
}
