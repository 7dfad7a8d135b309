//! Tickets: what a paid order issues, one per seat, and what gets a person in at the door.
//!
//! A ticket is issued by the store in the transaction that marks its order paid (see
//! [`crate::webhooks`]) and voided in the one that refunds it; the buyer's confirmation
//! e-mail carries the codes (see [`crate::mail`]). Its own module, not a part of webhooks
//! or mail, because both use it and neither should depend on the other for it, and
//! because checking tickets in at the door builds on it.

use crate::ids::TicketTypeId;

/// A ticket: one seat of a paid order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Unique and unguessable: it is what gets a person in.
    pub code: String,
    /// The ticket type.
    pub ticket_type_id: TicketTypeId,
    /// `valid` or `void`.
    pub status: String,
}

/// A fresh ticket code: 128 random bits.
pub fn new_ticket_code() -> String {
    format!("tkt_{}", crate::ids::random_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_prefixed_and_do_not_repeat() {
        let (a, b) = (new_ticket_code(), new_ticket_code());
        assert!(a.starts_with("tkt_") && a.len() > 20, "{a}");
        assert_ne!(a, b);
    }
}
