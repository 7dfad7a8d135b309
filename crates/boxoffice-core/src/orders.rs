//! What happens to an order, decided once for both engines.
//!
//! Stripe's events arrive late, twice, out of order, and sometimes as two distinct events
//! for one change (SPEC §6). Whether one takes effect, and which, is a rule over the
//! order's and the hold's state at the moment it is applied; these pure functions are that
//! rule. A store locks and loads the order and its hold, asks here, and writes the plan
//! that comes back, in the same transaction that records the event as applied, so the
//! effect and the record of it commit together. Every function here is total over the
//! states it is given and is unit-tested below without a database.

use crate::clock::Timestamp;
use crate::holds::{Hold, HoldStatus};
use crate::ids::TicketTypeId;
use crate::payments::{Order, OrderStatus};
use crate::tickets::new_ticket_code;

/// What a `payment_intent.succeeded` does to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnPaymentSucceeded {
    /// Nothing: the order is paid already (a redelivery, or a second event for one change).
    AlreadyPaid,
    /// Nothing: the order was refunded or cancelled before this event arrived.
    Stale(OrderStatus),
    /// The payment has to be refunded (an earlier attempt decided so and the refund is
    /// under way).
    Refund,
    /// The hold still holds the tickets: held becomes sold, then [`Fulfilment`].
    SellHeld,
    /// Paid after the hold ended (expired or cancelled): take the tickets if they are
    /// still free, after releasing the hold first when it is still marked active
    /// (`release_first`, expired by the clock but not swept), then [`Fulfilment`]; when
    /// they are gone, refund.
    TakeLate {
        /// The hold is still marked active: release it as the sweeper would, first.
        release_first: bool,
    },
}

/// Decides what a successful payment does, from the order, whether a refund was already
/// requested for it, and its hold, at `now`.
pub fn on_payment_succeeded(order: &Order, refund_requested: bool, hold: &Hold, now: Timestamp) -> OnPaymentSucceeded {
    match order.status {
        OrderStatus::Paid => return OnPaymentSucceeded::AlreadyPaid,
        status @ (OrderStatus::Refunded | OrderStatus::Cancelled) => return OnPaymentSucceeded::Stale(status),
        OrderStatus::Pending | OrderStatus::Failed => {}
    }
    if refund_requested {
        return OnPaymentSucceeded::Refund;
    }
    match (hold.stored_status, hold.status_at(now)) {
        (HoldStatus::Active, HoldStatus::Active) => OnPaymentSucceeded::SellHeld,
        (HoldStatus::Completed, _) => OnPaymentSucceeded::AlreadyPaid,
        (stored, _) => OnPaymentSucceeded::TakeLate {
            release_first: stored == HoldStatus::Active,
        },
    }
}

/// What a paid order gets, once its tickets are sold to it: the hold completed, one ticket
/// per seat with a fresh unguessable code, the order paid, and its confirmation e-mail
/// queued in the same transaction (exactly one per paid order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fulfilment {
    /// The tickets to issue: a code and its ticket type, one per seat, in the hold's item
    /// order.
    pub tickets: Vec<(String, TicketTypeId)>,
    /// The event's outcome, for the operator.
    pub outcome: String,
}

/// The fulfilment of `hold`'s order; `late` when it was paid after the hold ended and the
/// tickets were still free.
pub fn fulfil(hold: &Hold, late: bool) -> Fulfilment {
    let tickets: Vec<(String, TicketTypeId)> = hold
        .items
        .iter()
        .flat_map(|item| (0..item.quantity.get()).map(|_| (new_ticket_code(), item.ticket_type_id.clone())))
        .collect();
    let issued = tickets.len();
    Fulfilment {
        tickets,
        outcome: if late {
            format!("paid after the reservation ran out; the tickets were still available: {issued} issued")
        } else {
            format!("order paid, {issued} tickets issued")
        },
    }
}

/// What a `payment_intent.payment_failed` does to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnPaymentFailed {
    /// The order becomes `failed`; the hold stays until it expires, so the buyer can try
    /// again.
    MarkFailed,
    /// Nothing: the order has moved on (paid, refunded…) and failure after that is stale.
    Stale(OrderStatus),
}

/// Decides what a failed payment does.
pub fn on_payment_failed(order: &Order) -> OnPaymentFailed {
    match order.status {
        OrderStatus::Pending => OnPaymentFailed::MarkFailed,
        status => OnPaymentFailed::Stale(status),
    }
}

/// What a `charge.refunded` does to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnRefunded {
    /// Nothing: refunded already.
    AlreadyRefunded,
    /// The order was paid: its tickets become void and their capacity goes back on sale;
    /// the order becomes `refunded` and a refund notice is queued.
    VoidTickets,
    /// Refunded before its payment was applied (events out of order, or boxoffice's own
    /// late-payment refund): nothing was sold. The hold is released if it still holds
    /// (`release_hold`); the order becomes `refunded` and a refund notice is queued.
    NothingSold {
        /// The hold is still marked active and must give its tickets back.
        release_hold: bool,
    },
}

/// Decides what a refund does, from the order and its hold.
pub fn on_refunded(order: &Order, hold: &Hold) -> OnRefunded {
    match order.status {
        OrderStatus::Refunded => OnRefunded::AlreadyRefunded,
        OrderStatus::Paid => OnRefunded::VoidTickets,
        OrderStatus::Pending | OrderStatus::Failed | OrderStatus::Cancelled => OnRefunded::NothingSold {
            release_hold: hold.stored_status == HoldStatus::Active,
        },
    }
}

/// The operator's text for an event that found the order in `status` and changed nothing.
pub fn stale(status: OrderStatus) -> String {
    format!("stale: the order is already {}", status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holds::{HoldItem, Quantity};
    use crate::ids::{EventId, HoldId, OrderId};
    use crate::money::{Cents, Currency};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    fn hold(stored: HoldStatus, expires_at: Timestamp, quantities: &[u32]) -> Hold {
        Hold {
            id: HoldId::generate(),
            event_id: EventId::generate(),
            stored_status: stored,
            customer_email: None,
            items: quantities
                .iter()
                .enumerate()
                .map(|(i, quantity)| HoldItem {
                    ticket_type_id: TicketTypeId::from_trusted(format!("tt_{i}")),
                    quantity: Quantity::from_trusted(*quantity),
                    unit_price: Cents::from_trusted(1000),
                })
                .collect(),
            amount: Cents::from_trusted(1000),
            currency: Currency::parse("EUR").expect("a currency"),
            created_at: at(0),
            expires_at,
        }
    }

    fn order(status: OrderStatus, hold: &Hold) -> Order {
        Order {
            id: OrderId::generate(),
            hold_id: hold.id.clone(),
            status,
            amount: hold.amount,
            currency: hold.currency,
            payment_intent_id: Some("pi_1".into()),
            client_secret: None,
            confirming_until: None,
            created_at: at(0),
        }
    }

    #[test]
    fn a_payment_on_time_sells_what_the_hold_holds() {
        let h = hold(HoldStatus::Active, at(900), &[2]);
        for status in [OrderStatus::Pending, OrderStatus::Failed] {
            assert_eq!(
                on_payment_succeeded(&order(status, &h), false, &h, at(10)),
                OnPaymentSucceeded::SellHeld
            );
        }
    }

    #[test]
    fn a_payment_applied_twice_or_after_a_refund_changes_nothing() {
        let h = hold(HoldStatus::Completed, at(900), &[1]);
        assert_eq!(
            on_payment_succeeded(&order(OrderStatus::Paid, &h), false, &h, at(10)),
            OnPaymentSucceeded::AlreadyPaid
        );
        // A second, distinct event for the same payment finds the hold completed.
        assert_eq!(
            on_payment_succeeded(&order(OrderStatus::Pending, &h), false, &h, at(10)),
            OnPaymentSucceeded::AlreadyPaid
        );
        for status in [OrderStatus::Refunded, OrderStatus::Cancelled] {
            assert_eq!(
                on_payment_succeeded(&order(status, &h), false, &h, at(10)),
                OnPaymentSucceeded::Stale(status)
            );
        }
    }

    #[test]
    fn a_refund_under_way_wins_over_taking_tickets() {
        let h = hold(HoldStatus::Active, at(900), &[1]);
        assert_eq!(
            on_payment_succeeded(&order(OrderStatus::Pending, &h), true, &h, at(10)),
            OnPaymentSucceeded::Refund
        );
    }

    #[test]
    fn a_late_payment_releases_an_unswept_hold_before_taking_free_tickets() {
        let expired_unswept = hold(HoldStatus::Active, at(900), &[1]);
        assert_eq!(
            on_payment_succeeded(
                &order(OrderStatus::Pending, &expired_unswept),
                false,
                &expired_unswept,
                at(900)
            ),
            OnPaymentSucceeded::TakeLate { release_first: true }
        );
        for stored in [HoldStatus::Expired, HoldStatus::Cancelled] {
            let ended = hold(stored, at(900), &[1]);
            assert_eq!(
                on_payment_succeeded(&order(OrderStatus::Pending, &ended), false, &ended, at(10)),
                OnPaymentSucceeded::TakeLate { release_first: false }
            );
        }
    }

    #[test]
    fn fulfilment_issues_one_unique_ticket_per_seat() {
        let h = hold(HoldStatus::Active, at(900), &[2, 3]);
        let plan = fulfil(&h, false);
        assert_eq!(plan.tickets.len(), 5);
        let codes: std::collections::HashSet<&String> = plan.tickets.iter().map(|(code, _)| code).collect();
        assert_eq!(codes.len(), 5);
        assert_eq!(plan.tickets.iter().filter(|(_, tt)| tt.as_str() == "tt_1").count(), 3);
        assert_eq!(plan.outcome, "order paid, 5 tickets issued");
        assert!(
            fulfil(&h, true)
                .outcome
                .starts_with("paid after the reservation ran out")
        );
    }

    #[test]
    fn a_failure_only_fails_a_pending_order() {
        let h = hold(HoldStatus::Active, at(900), &[1]);
        assert_eq!(
            on_payment_failed(&order(OrderStatus::Pending, &h)),
            OnPaymentFailed::MarkFailed
        );
        for status in [
            OrderStatus::Paid,
            OrderStatus::Failed,
            OrderStatus::Refunded,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(on_payment_failed(&order(status, &h)), OnPaymentFailed::Stale(status));
        }
    }

    #[test]
    fn a_refund_voids_a_paid_order_and_releases_an_unpaid_one() {
        let active = hold(HoldStatus::Active, at(900), &[1]);
        assert_eq!(
            on_refunded(&order(OrderStatus::Paid, &active), &active),
            OnRefunded::VoidTickets
        );
        assert_eq!(
            on_refunded(&order(OrderStatus::Refunded, &active), &active),
            OnRefunded::AlreadyRefunded
        );
        assert_eq!(
            on_refunded(&order(OrderStatus::Pending, &active), &active),
            OnRefunded::NothingSold { release_hold: true }
        );
        let expired = hold(HoldStatus::Expired, at(900), &[1]);
        assert_eq!(
            on_refunded(&order(OrderStatus::Failed, &expired), &expired),
            OnRefunded::NothingSold { release_hold: false }
        );
    }
}
