//! Events and their ticket types, with inventory counts.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::ids::{EventId, OrganizationId, TicketTypeId};
use crate::money::{Cents, Currency};
use crate::organizations::Name;

/// The largest capacity of one ticket type. Larger numbers are typos; bounding them keeps
/// every counter sum far from overflow.
pub const MAX_CAPACITY: i64 = 10_000_000;

/// The hard ceiling on tickets of one type in one hold, whatever a ticket type allows.
pub const MAX_PER_ORDER_CEILING: u32 = 100;

/// Tickets of one type in one hold when the ticket type does not say.
pub const DEFAULT_MAX_PER_ORDER: u32 = 10;

/// The longest hold an event may ask for.
pub const MAX_HOLD_SECONDS: u32 = 24 * 60 * 60;

/// How many tickets of a type exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Capacity(i64);

/// The capacity is negative or absurd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capacity must be between 0 and {MAX_CAPACITY}")]
pub struct InvalidCapacity;

impl Capacity {
    /// Parses a capacity received from outside.
    pub fn parse(raw: i64) -> Result<Self, InvalidCapacity> {
        if (0..=MAX_CAPACITY).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(InvalidCapacity)
        }
    }

    /// The number of tickets.
    pub const fn get(self) -> i64 {
        self.0
    }
}

/// How many tickets of one type a single hold may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPerOrder(u32);

/// Out of `1..=MAX_PER_ORDER_CEILING`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("max_per_order must be between 1 and {MAX_PER_ORDER_CEILING}")]
pub struct InvalidMaxPerOrder;

impl MaxPerOrder {
    /// Parses a limit received from outside.
    pub fn parse(raw: i64) -> Result<Self, InvalidMaxPerOrder> {
        u32::try_from(raw)
            .ok()
            .filter(|n| (1..=MAX_PER_ORDER_CEILING).contains(n))
            .map(Self)
            .ok_or(InvalidMaxPerOrder)
    }

    /// The limit.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for MaxPerOrder {
    fn default() -> Self {
        Self(DEFAULT_MAX_PER_ORDER)
    }
}

/// An event's own hold length, overriding the server default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSeconds(u32);

/// Out of `1..=MAX_HOLD_SECONDS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hold_seconds must be between 1 and {MAX_HOLD_SECONDS}")]
pub struct InvalidHoldSeconds;

impl HoldSeconds {
    /// Parses a hold length received from outside.
    pub fn parse(raw: i64) -> Result<Self, InvalidHoldSeconds> {
        u32::try_from(raw)
            .ok()
            .filter(|n| (1..=MAX_HOLD_SECONDS).contains(n))
            .map(Self)
            .ok_or(InvalidHoldSeconds)
    }

    /// The length in seconds.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The length as a duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

/// An event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// The organization that owns it.
    pub organization_id: OrganizationId,
    /// Its name.
    pub name: Name,
    /// When it starts.
    pub starts_at: Timestamp,
    /// The currency of all its prices.
    pub currency: Currency,
    /// Its own hold length, if it overrides the server default.
    pub hold_seconds: Option<HoldSeconds>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A ticket type with its inventory as of one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketType {
    /// Its id.
    pub id: TicketTypeId,
    /// The event it belongs to.
    pub event_id: EventId,
    /// Its name ("General admission", "VIP").
    pub name: Name,
    /// The price of one ticket, in the event's currency.
    pub price: Cents,
    /// How many tickets exist.
    pub capacity: Capacity,
    /// How many one hold may take.
    pub max_per_order: MaxPerOrder,
    /// Whether it can be held now.
    pub on_sale: bool,
    /// Tickets sold (paid).
    pub sold: i64,
    /// Tickets in unexpired active holds at the instant this was read.
    pub held: i64,
    /// When it was created.
    pub created_at: Timestamp,
}

impl TicketType {
    /// Tickets that a new hold could take at the instant this was read.
    pub fn available(&self) -> i64 {
        (self.capacity.get() - self.sold - self.held).max(0)
    }
}

/// An event together with its ticket types, oldest ticket type first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventWithTicketTypes {
    /// The event.
    pub event: Event,
    /// Its ticket types with exact inventory.
    pub ticket_types: Vec<TicketType>,
}

/// Changes to a ticket type; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketTypeChanges {
    /// A new name.
    pub name: Option<Name>,
    /// A new price; holds already made keep the price they were made at.
    pub price: Option<Cents>,
    /// A new capacity; refused below sold + held.
    pub capacity: Option<Capacity>,
    /// A new per-hold limit.
    pub max_per_order: Option<MaxPerOrder>,
    /// Put on sale or take off sale.
    pub on_sale: Option<bool>,
}

impl TicketTypeChanges {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
