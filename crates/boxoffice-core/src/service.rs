//! The use cases: what callers of boxoffice can do, with the rules applied before and
//! around the store. HTTP handlers, CLI subcommands and jobs call these and nothing else.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, Caller, MintedApiKey, SecretToken, StoredApiKey, TokenHash};
use crate::clock::{Clock, Timestamp};
use crate::events::{Capacity, Event, EventWithTicketTypes, HoldSeconds, MaxPerOrder, TicketType, TicketTypeChanges};
use crate::holds::{Hold, HoldItem, HoldRequest, HoldStatus, ReservationStats};
use crate::ids::{EventId, HoldId, JobRunId, OrganizationId, TicketTypeId};
use crate::jobs::{self, JobOutcome, JobRun};
use crate::money::{Cents, Currency};
use crate::organizations::{Name, Organization};
use crate::store::{Page, PageRequest, Store, StoreError};

/// The setting under which the operator token's hash is kept.
const OPERATOR_TOKEN_SETTING: &str = "operator_token_sha256";

/// How long job run records are kept.
const JOB_RUN_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// What the use cases need to know about the installation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Hold length for events that do not set their own.
    pub default_hold: Duration,
    /// Holds expired per sweeper transaction; bounds each transaction's size and lock time.
    pub sweep_batch: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_hold: Duration::from_secs(15 * 60),
            sweep_batch: 1_000,
        }
    }
}

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is well-formed but breaks a rule (422).
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist, or the caller may not see it (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A ticket type lacks capacity; nothing was held (409).
    #[error("{0} is sold out")]
    SoldOut(String),
    /// The hold is completed (409).
    #[error("the hold is completed")]
    HoldCompleted,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => Error::NotFound(what),
            StoreError::SoldOut { ticket_type_name, .. } => Error::SoldOut(ticket_type_name),
            StoreError::HoldCompleted => Error::HoldCompleted,
            StoreError::CapacityBelowCommitted { committed } => Error::Invalid(format!(
                "capacity cannot go below {committed}, the tickets already sold and held"
            )),
            other => Error::Store(other),
        }
    }
}

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

/// The box office: every use case, over one store and one clock.
#[derive(Clone)]
pub struct BoxOffice {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

impl BoxOffice {
    /// Assembles the use cases.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self { store, clock, settings }
    }

    /// The current instant by this box office's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The store, for readiness checks.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // ----- authentication -----------------------------------------------------------

    /// Makes sure an operator token exists. With `configured`, that token is the one;
    /// otherwise a token is generated and its hash stored at first start, and returned
    /// (to print once); later starts return `None`. Returns the hash to check against.
    pub async fn ensure_operator_token(
        &self,
        configured: Option<&SecretToken>,
    ) -> Result<(TokenHash, Option<SecretToken>), Error> {
        if let Some(token) = configured {
            return Ok((token.hash(), None));
        }
        if let Some(stored) = self.store.get_setting(OPERATOR_TOKEN_SETTING).await? {
            return TokenHash::from_hex(&stored)
                .map(|hash| (hash, None))
                .ok_or_else(|| Error::Invalid("the stored operator token hash is corrupt".into()));
        }
        let token = auth::generate_operator_token();
        let hash = token.hash();
        if self
            .store
            .insert_setting_if_absent(OPERATOR_TOKEN_SETTING, &hash.to_hex())
            .await?
        {
            return Ok((hash, Some(token)));
        }
        // Another instance won the race to generate it; use theirs.
        let stored = self.store.get_setting(OPERATOR_TOKEN_SETTING).await?;
        stored
            .as_deref()
            .and_then(TokenHash::from_hex)
            .map(|hash| (hash, None))
            .ok_or_else(|| Error::Invalid("the stored operator token hash is corrupt".into()))
    }

    /// Identifies the caller of a bearer token; `None` for an unknown or malformed token.
    pub async fn authenticate(
        &self,
        operator_hash: &TokenHash,
        presented: &SecretToken,
    ) -> Result<Option<Caller>, Error> {
        if let Some((key_id, secret)) = auth::split_api_key(presented) {
            let Some(stored) = self.store.find_api_key(&key_id).await? else {
                return Ok(None);
            };
            return Ok(stored.secret_hash.matches(&secret).then_some(Caller::Organization {
                organization_id: stored.organization_id,
                api_key_id: stored.id,
            }));
        }
        Ok(operator_hash.matches(presented).then_some(Caller::Operator))
    }

    // ----- organizations ------------------------------------------------------------

    /// Creates an organization (operator only).
    pub async fn create_organization(&self, caller: &Caller, name: Name) -> Result<Organization, Error> {
        require_operator(caller)?;
        let organization = Organization {
            id: OrganizationId::generate(),
            name,
            created_at: self.now(),
        };
        self.store.create_organization(&organization).await?;
        Ok(organization)
    }

    /// Reads an organization the caller may see.
    pub async fn get_organization(&self, caller: &Caller, id: &OrganizationId) -> Result<Organization, Error> {
        if !caller.can_access(id) {
            return Err(Error::NotFound("organization"));
        }
        Ok(self.store.get_organization(id).await?)
    }

    /// Mints an API key for an organization (operator only); the key is shown once.
    pub async fn create_api_key(&self, caller: &Caller, organization: &OrganizationId) -> Result<MintedApiKey, Error> {
        require_operator(caller)?;
        let minted = auth::mint_api_key();
        let stored = StoredApiKey {
            id: minted.id.clone(),
            organization_id: organization.clone(),
            secret_hash: minted.secret_hash.clone(),
        };
        self.store.create_api_key(&stored, self.now()).await?;
        Ok(minted)
    }

    // ----- events and ticket types --------------------------------------------------

    /// Creates an event in an organization the caller may change.
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
        self.store.create_event(&event).await?;
        Ok(EventWithTicketTypes {
            event,
            ticket_types: Vec::new(),
        })
    }

    /// Reads an event (public).
    pub async fn get_event(&self, id: &EventId) -> Result<EventWithTicketTypes, Error> {
        Ok(self.store.get_event(id, self.now()).await?)
    }

    /// Lists events (public), newest first.
    pub async fn list_events(
        &self,
        organization: Option<&OrganizationId>,
        page: &PageRequest<EventId>,
    ) -> Result<Page<EventWithTicketTypes>, Error> {
        Ok(self.store.list_events(organization, page, self.now()).await?)
    }

    /// Adds a ticket type to an event the caller may change.
    pub async fn create_ticket_type(
        &self,
        caller: &Caller,
        event_id: &EventId,
        new: NewTicketType,
    ) -> Result<TicketType, Error> {
        let event = self.store.get_event(event_id, self.now()).await?;
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
        self.store.create_ticket_type(&ticket_type).await?;
        Ok(ticket_type)
    }

    /// Changes a ticket type of an event the caller may change.
    pub async fn update_ticket_type(
        &self,
        caller: &Caller,
        id: &TicketTypeId,
        changes: &TicketTypeChanges,
    ) -> Result<TicketType, Error> {
        let now = self.now();
        let current = self.store.get_ticket_type(id, now).await?;
        let event = self.store.get_event(&current.event_id, now).await?;
        if !caller.can_access(&event.event.organization_id) {
            return Err(Error::NotFound("ticket type"));
        }
        if changes.is_empty() {
            return Ok(current);
        }
        Ok(self.store.update_ticket_type(id, changes, now).await?)
    }

    // ----- holds --------------------------------------------------------------------

    /// Places a hold: every item or none.
    pub async fn place_hold(&self, request: HoldRequest) -> Result<Hold, Error> {
        let now = self.now();
        let event = self.store.get_event(&request.event_id, now).await?;
        let mut items = Vec::with_capacity(request.items.len());
        for (ticket_type_id, quantity) in &request.items {
            let ticket_type = event
                .ticket_types
                .iter()
                .find(|tt| &tt.id == ticket_type_id)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "ticket type {ticket_type_id} is not part of event {}",
                        event.event.id
                    ))
                })?;
            if !ticket_type.on_sale {
                return Err(Error::Invalid(format!("{} is not on sale", ticket_type.name.as_str())));
            }
            if quantity.get() > ticket_type.max_per_order.get() {
                return Err(Error::Invalid(format!(
                    "at most {} tickets of {} per order",
                    ticket_type.max_per_order.get(),
                    ticket_type.name.as_str()
                )));
            }
            items.push(HoldItem {
                ticket_type_id: ticket_type_id.clone(),
                quantity: *quantity,
                unit_price: ticket_type.price,
            });
        }
        // One lock order for every transaction that touches several ticket types, so
        // concurrent multi-item holds cannot deadlock on PostgreSQL.
        items.sort_by(|a, b| a.ticket_type_id.cmp(&b.ticket_type_id));
        let amount = items.iter().fold(Cents::from_trusted(0), |sum, item| {
            sum.plus(item.unit_price.times(item.quantity.get()))
        });
        let hold_length = event
            .event
            .hold_seconds
            .map_or(self.settings.default_hold, HoldSeconds::duration);
        let hold = Hold {
            id: HoldId::generate(),
            event_id: event.event.id.clone(),
            stored_status: HoldStatus::Active,
            customer_email: request.customer_email,
            items,
            amount,
            currency: event.event.currency,
            created_at: now,
            expires_at: now.plus(hold_length),
        };
        self.store.place_hold(&hold, now).await?;
        Ok(hold)
    }

    /// Reads a hold (public: knowing its id is the credential).
    pub async fn get_hold(&self, id: &HoldId) -> Result<Hold, Error> {
        Ok(self.store.get_hold(id).await?)
    }

    /// Cancels a hold (public). Idempotent.
    pub async fn cancel_hold(&self, id: &HoldId) -> Result<Hold, Error> {
        Ok(self.store.cancel_hold(id, self.now()).await?)
    }

    /// Hold counts by status, now.
    pub async fn reservation_stats(&self) -> Result<ReservationStats, Error> {
        Ok(self.store.reservation_stats(self.now()).await?)
    }

    // ----- the expiry sweeper -------------------------------------------------------

    /// Runs the expiry sweeper once: expires every hold that has run out, in bounded
    /// batches, and records the run. A failed run is recorded too (when the store lets
    /// us) and returned as a run with outcome `failed`.
    pub async fn sweep_expired_holds(&self) -> Result<JobRun, Error> {
        let started_at = self.now();
        let mut affected: u64 = 0;
        let mut error = None;
        loop {
            // Each batch uses a fresh `now`, so a long run keeps up with the clock.
            match self.store.expire_holds(self.now(), self.settings.sweep_batch).await {
                Ok(expired) => {
                    affected += expired;
                    if expired < u64::from(self.settings.sweep_batch) {
                        break;
                    }
                }
                Err(err) => {
                    error = Some(err);
                    break;
                }
            }
        }
        let finished_at = self.now();
        let run = JobRun {
            id: JobRunId::generate(),
            job: jobs::EXPIRE_HOLDS.to_owned(),
            started_at,
            finished_at,
            outcome: if error.is_some() {
                JobOutcome::Failed
            } else {
                JobOutcome::Succeeded
            },
            affected,
            error: error.as_ref().map(|err| error_chain(err)),
        };
        let keep_after = Timestamp::from_millis(finished_at.as_millis() - JOB_RUN_RETENTION.as_millis() as i64);
        self.store.record_job_run(&run, keep_after).await?;
        match error {
            Some(err) => Err(Error::Store(err)),
            None => Ok(run),
        }
    }

    /// The latest runs of a job, newest first.
    pub async fn list_job_runs(&self, job: &str, limit: u32) -> Result<Vec<JobRun>, Error> {
        Ok(self.store.list_job_runs(job, limit).await?)
    }
}

fn require_operator(caller: &Caller) -> Result<(), Error> {
    match caller {
        Caller::Operator => Ok(()),
        // An organization key learns nothing about operator-only resources.
        Caller::Organization { .. } => Err(Error::NotFound("resource")),
    }
}

/// An error with its causes, one line, for records meant for people.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
