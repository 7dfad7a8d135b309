//! Holds (reservations): tickets set aside for a buyer until a moment in time.
//!
//! A hold's stored status can lag behind the clock: an `active` hold whose `expires_at` has
//! passed is expired for every purpose (reads, capacity, payment) before the sweeper marks
//! it. [`Hold::status_at`] is the one place that decides.

use std::collections::{BTreeMap, HashMap};

use crate::catalog::MAX_PER_ORDER_CEILING;
use crate::clock::Timestamp;
use crate::ids::{EventId, HoldId, TicketTypeId};
use crate::money::{Cents, Currency};

/// The most distinct ticket types one hold may contain.
pub const MAX_ITEMS_PER_HOLD: usize = 20;

/// The stored state of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldStatus {
    /// Holding tickets until `expires_at`.
    Active,
    /// Ran out of time; holds nothing.
    Expired,
    /// Paid; its tickets are sold.
    Completed,
    /// Released by the buyer; holds nothing.
    Cancelled,
}

impl HoldStatus {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Expired => "expired",
            HoldStatus::Completed => "completed",
            HoldStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the stored form.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(HoldStatus::Active),
            "expired" => Some(HoldStatus::Expired),
            "completed" => Some(HoldStatus::Completed),
            "cancelled" => Some(HoldStatus::Cancelled),
            _ => None,
        }
    }
}

/// How many tickets of one type a hold asks for: at least one, at most the hard ceiling.
/// The ticket type's own `max_per_order` is checked when the hold is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(u32);

/// Zero, negative or absurd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity must be between 1 and {MAX_PER_ORDER_CEILING}")]
pub struct InvalidQuantity;

impl Quantity {
    /// Parses a quantity received from outside.
    pub fn parse(raw: i64) -> Result<Self, InvalidQuantity> {
        u32::try_from(raw)
            .ok()
            .filter(|n| (1..=MAX_PER_ORDER_CEILING).contains(n))
            .map(Self)
            .ok_or(InvalidQuantity)
    }

    /// Rebuilds a quantity read back from our own database.
    pub const fn from_trusted(raw: u32) -> Self {
        Self(raw)
    }

    /// The number of tickets.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// A buyer's e-mail address, checked for shape (the mail server is the real judge).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

/// Not an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("customer_email is not a valid e-mail address")]
pub struct InvalidEmailAddress;

impl EmailAddress {
    /// Parses an address that mail can be sent to, so a buyer's typo is refused at hold
    /// time rather than found by the sender a day later:
    /// - a local part of 1–64 RFC 5321 "atom" characters (letters, digits and
    ///   ``!#$%&'*+-/=?^_`{|}~``) in dot-separated runs, with no leading, trailing or
    ///   doubled dot (quoted local parts are refused: no buyer needs them);
    /// - a domain of at least two dot-separated labels of 1–63 letters, digits and
    ///   hyphens, none starting or ending with a hyphen (non-ASCII domains arrive
    ///   punycoded as `xn--…`);
    /// - at most 254 characters in all.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmailAddress> {
        let raw = raw.trim();
        let (local, domain) = raw.rsplit_once('@').ok_or(InvalidEmailAddress)?;
        let atom = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c);
        let local_ok =
            (1..=64).contains(&local.len()) && local.split('.').all(|run| !run.is_empty() && run.bytes().all(atom));
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        let domain_ok = domain.contains('.') && domain.split('.').all(label_ok);
        if raw.len() <= 254 && local_ok && domain_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidEmailAddress)
        }
    }

    /// Rebuilds an address read back from our own database.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One line of a hold: some tickets of one type at the price when the hold was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldItem {
    /// The ticket type.
    pub ticket_type_id: TicketTypeId,
    /// How many.
    pub quantity: Quantity,
    /// The price of one, fixed when the hold was placed.
    pub unit_price: Cents,
}

/// A hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Its id; knowing it is what lets a buyer read and cancel it.
    pub id: HoldId,
    /// The event.
    pub event_id: EventId,
    /// The status as stored; see [`Hold::status_at`] for the truth at an instant.
    pub stored_status: HoldStatus,
    /// Where tickets will be sent.
    pub customer_email: Option<EmailAddress>,
    /// What it holds, ordered by ticket type id.
    pub items: Vec<HoldItem>,
    /// The total of all items.
    pub amount: Cents,
    /// The event's currency.
    pub currency: Currency,
    /// When it was placed.
    pub created_at: Timestamp,
    /// When it stops holding anything.
    pub expires_at: Timestamp,
}

impl Hold {
    /// The status at `now`: an active hold whose time has run out is expired, whether or
    /// not the sweeper has marked it yet.
    pub fn status_at(&self, now: Timestamp) -> HoldStatus {
        if self.stored_status == HoldStatus::Active && now >= self.expires_at {
            HoldStatus::Expired
        } else {
            self.stored_status
        }
    }

    /// Whole seconds left while active at `now`; zero otherwise.
    pub fn seconds_remaining(&self, now: Timestamp) -> i64 {
        if self.status_at(now) == HoldStatus::Active {
            now.seconds_until(self.expires_at)
        } else {
            0
        }
    }
}

/// A hold request as the buyer sent it, already parsed: a known-shaped event id, 1 to
/// [`MAX_ITEMS_PER_HOLD`] items with distinct ticket types and valid quantities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    /// The event.
    pub event_id: EventId,
    /// What to hold.
    pub items: Vec<(TicketTypeId, Quantity)>,
    /// Where to send tickets.
    pub customer_email: Option<EmailAddress>,
}

/// Why a hold request is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHoldRequest {
    /// No items.
    #[error("items must contain at least one item")]
    NoItems,
    /// Too many items.
    #[error("items may contain at most {MAX_ITEMS_PER_HOLD} entries")]
    TooManyItems,
    /// The same ticket type twice.
    #[error("ticket type {0} appears more than once in items")]
    DuplicateTicketType(TicketTypeId),
}

impl HoldRequest {
    /// Checks the parts that do not need the database.
    pub fn new(
        event_id: EventId,
        items: Vec<(TicketTypeId, Quantity)>,
        customer_email: Option<EmailAddress>,
    ) -> Result<Self, InvalidHoldRequest> {
        if items.is_empty() {
            return Err(InvalidHoldRequest::NoItems);
        }
        if items.len() > MAX_ITEMS_PER_HOLD {
            return Err(InvalidHoldRequest::TooManyItems);
        }
        let mut seen = std::collections::HashSet::new();
        for (id, _) in &items {
            if !seen.insert(id) {
                return Err(InvalidHoldRequest::DuplicateTicketType(id.clone()));
            }
        }
        Ok(Self {
            event_id,
            items,
            customer_email,
        })
    }
}

/// Counts of holds by status at an instant (expiry by the clock, not by the sweeper).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReservationStats {
    /// Unexpired active holds.
    pub active: i64,
    /// Expired holds, marked or not yet swept.
    pub expired: i64,
    /// Paid holds.
    pub completed: i64,
    /// Cancelled holds.
    pub cancelled: i64,
    /// When the oldest unexpired active hold was placed.
    pub oldest_active_created_at: Option<Timestamp>,
}

/// What a store did with one hold of a batch placed in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Its tickets are held.
    Placed,
    /// Nothing of it is held: this ticket type lacked capacity (counting holds that expired
    /// but were not released yet as held).
    Short {
        /// The ticket type that lacked capacity.
        ticket_type_id: TicketTypeId,
        /// Its name, for the buyer.
        ticket_type_name: String,
    },
    /// Nothing of it is held: this ticket type does not exist.
    UnknownTicketType(TicketTypeId),
}

/// A ticket type's unclaimed tickets, as read (and locked) by a batch's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeTickets {
    /// Its name, for a `Short` answer.
    pub name: String,
    /// `capacity - sold - held`.
    pub free: i64,
}

/// A batch's decision: which holds fit, and what the placed ones take per ticket type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// One per hold, in the batch's order.
    pub placements: Vec<Placement>,
    /// Tickets the placed holds take, per ticket type, in id order (the lock order).
    pub taken: Vec<(TicketTypeId, i64)>,
}

impl Allocation {
    /// Whether any hold was placed (otherwise the transaction has nothing to write).
    pub fn any_placed(&self) -> bool {
        !self.taken.is_empty()
    }
}

/// The one rule both stores use to place a batch: holds are taken in arrival order, each
/// whole or not at all — a hold that does not fit takes nothing and does not stop later,
/// smaller ones from fitting. `free` is updated as tickets are taken.
pub fn allocate(holds: &[&Hold], free: &mut HashMap<TicketTypeId, FreeTickets>) -> Allocation {
    let mut taken: BTreeMap<TicketTypeId, i64> = BTreeMap::new();
    let placements = holds
        .iter()
        .map(|hold| {
            for item in &hold.items {
                let Some(ticket_type) = free.get(&item.ticket_type_id) else {
                    return Placement::UnknownTicketType(item.ticket_type_id.clone());
                };
                if ticket_type.free < i64::from(item.quantity.get()) {
                    return Placement::Short {
                        ticket_type_id: item.ticket_type_id.clone(),
                        ticket_type_name: ticket_type.name.clone(),
                    };
                }
            }
            for item in &hold.items {
                let quantity = i64::from(item.quantity.get());
                if let Some(ticket_type) = free.get_mut(&item.ticket_type_id) {
                    ticket_type.free -= quantity;
                }
                *taken.entry(item.ticket_type_id.clone()).or_default() += quantity;
            }
            Placement::Placed
        })
        .collect();
    Allocation {
        placements,
        taken: taken.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(status: HoldStatus, expires_at: i64) -> Hold {
        Hold {
            id: HoldId::generate(),
            event_id: EventId::generate(),
            stored_status: status,
            customer_email: None,
            items: vec![],
            amount: Cents::from_trusted(0),
            currency: Currency::parse("EUR").expect("valid"),
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(expires_at),
        }
    }

    #[test]
    fn an_active_hold_reads_expired_from_its_expiry_instant() {
        let h = hold(HoldStatus::Active, 10_000);
        assert_eq!(h.status_at(Timestamp::from_millis(9_999)), HoldStatus::Active);
        assert_eq!(h.seconds_remaining(Timestamp::from_millis(8_500)), 1);
        assert_eq!(h.status_at(Timestamp::from_millis(10_000)), HoldStatus::Expired);
        assert_eq!(h.seconds_remaining(Timestamp::from_millis(10_000)), 0);
        let done = hold(HoldStatus::Completed, 10_000);
        assert_eq!(done.status_at(Timestamp::from_millis(20_000)), HoldStatus::Completed);
    }

    #[test]
    fn quantities_are_bounded() {
        for bad in [0, -1, 101, i64::MAX, i64::MIN] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Quantity::parse(100).map(Quantity::get), Ok(100));
    }

    #[test]
    fn email_addresses_are_checked_for_shape() {
        for good in [
            "ana@example.org",
            "ana.maria+tickets@mail.example.co.uk",
            "o'brien@example.ie",
            "x@xn--bcher-kva.example",
            "  ana@example.org  ",
        ] {
            assert!(EmailAddress::parse(good).is_ok(), "{good}");
        }
        // Each of these would be accepted at hold time and then fail at the mail server.
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.org",
            "ana@localhost",
            "a na@example.org",
            "a@b@c.d",
            "a,b@example.org",
            "a<b@example.org",
            "a..b@example.org",
            ".a@example.org",
            "a.@example.org",
            "a(b)@example.org",
            "ana@-example.org",
            "ana@example-.org",
            "ana@example..org",
            "ana@exa_mple.org",
            "\"quoted\"@example.org",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hold_requests_need_distinct_items() {
        let event = EventId::generate();
        let tt = TicketTypeId::generate();
        let one = Quantity::from_trusted(1);
        assert_eq!(
            HoldRequest::new(event.clone(), vec![], None),
            Err(InvalidHoldRequest::NoItems)
        );
        assert!(matches!(
            HoldRequest::new(event.clone(), vec![(tt.clone(), one), (tt.clone(), one)], None),
            Err(InvalidHoldRequest::DuplicateTicketType(_))
        ));
        let many = (0..21).map(|_| (TicketTypeId::generate(), one)).collect();
        assert_eq!(
            HoldRequest::new(event.clone(), many, None),
            Err(InvalidHoldRequest::TooManyItems)
        );
        assert!(HoldRequest::new(event, vec![(tt, one)], None).is_ok());
    }

    fn hold_of(items: &[(&TicketTypeId, u32)]) -> Hold {
        let mut hold = hold(HoldStatus::Active, 1_000);
        hold.items = items
            .iter()
            .map(|(id, quantity)| HoldItem {
                ticket_type_id: (*id).clone(),
                quantity: Quantity::from_trusted(*quantity),
                unit_price: Cents::from_trusted(100),
            })
            .collect();
        hold
    }

    fn free(entries: &[(&TicketTypeId, i64)]) -> HashMap<TicketTypeId, FreeTickets> {
        entries
            .iter()
            .map(|(id, free)| {
                let ticket_type = FreeTickets {
                    name: format!("name of {id}"),
                    free: *free,
                };
                ((*id).clone(), ticket_type)
            })
            .collect()
    }

    #[test]
    fn a_batch_places_holds_in_order_each_whole_or_not_at_all() {
        let (ga, vip) = (TicketTypeId::generate(), TicketTypeId::generate());
        let holds = [
            hold_of(&[(&ga, 3)]),
            // Does not fit on VIP: takes no GA either.
            hold_of(&[(&ga, 1), (&vip, 2)]),
            // Too big for what is left of GA, but does not stop the smaller one after it.
            hold_of(&[(&ga, 2)]),
            hold_of(&[(&ga, 1), (&vip, 1)]),
            hold_of(&[(&TicketTypeId::generate(), 1)]),
        ];
        let refs: Vec<&Hold> = holds.iter().collect();
        let mut free = free(&[(&ga, 4), (&vip, 1)]);
        let allocation = allocate(&refs, &mut free);
        assert_eq!(allocation.placements[0], Placement::Placed);
        assert_eq!(
            allocation.placements[1],
            Placement::Short {
                ticket_type_id: vip.clone(),
                ticket_type_name: format!("name of {vip}")
            }
        );
        assert!(
            matches!(allocation.placements[2], Placement::Short { ref ticket_type_id, .. } if *ticket_type_id == ga)
        );
        assert_eq!(allocation.placements[3], Placement::Placed);
        assert!(matches!(allocation.placements[4], Placement::UnknownTicketType(_)));
        let mut expected = vec![(ga.clone(), 4), (vip.clone(), 1)];
        expected.sort();
        assert_eq!(allocation.taken, expected);
        assert_eq!((free[&ga].free, free[&vip].free), (0, 0));
    }

    #[test]
    fn a_batch_where_nothing_fits_takes_nothing() {
        let ga = TicketTypeId::generate();
        let holds = [hold_of(&[(&ga, 2)])];
        let refs: Vec<&Hold> = holds.iter().collect();
        let allocation = allocate(&refs, &mut free(&[(&ga, 1)]));
        assert!(!allocation.any_placed());
        assert!(allocation.taken.is_empty());
    }
}
