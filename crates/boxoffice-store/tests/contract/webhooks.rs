//! The WebhookStore contract (SPEC §6): an event is stored once however often Stripe
//! delivers it, applied exactly once with its effect (tickets for a payment, their release
//! for a refund), retried after a failure, and a payment that arrives after its tickets are
//! gone is refunded without overselling.

use std::time::Duration;

use boxoffice_core::holds::Hold;
use boxoffice_core::ids::OrderId;
use boxoffice_core::webhooks::{ApplyOutcome, EventStatus, StripeEvent};
use boxoffice_core::{StoreError, Timestamp};

use crate::{Fixture, T0, at, fixture, order_for_hold, webhook_event};

/// A hold of `quantity` of ticket type 0 with an order whose PaymentIntent is `pi`.
async fn ordered(f: &Fixture, quantity: u32, pi: &str, now: Timestamp) -> (Hold, OrderId) {
    let hold = f.place(&[(0, quantity)], now).await.unwrap();
    let order = order_for_hold(f, &hold, pi, now).await;
    (hold, order)
}

fn event(id: &str, event_type: &str, pi: &str) -> StripeEvent {
    webhook_event(id, event_type, pi)
}

both_engines!(events_are_recorded_once_and_deliveries_counted, |engine| async move {
    let f = fixture(engine, &[10]).await;
    let e = event("evt_1", "customer.created", "pi_x");
    assert_eq!(
        f.store.record_webhook_event(&e, true, T0, T0).await.unwrap(),
        (EventStatus::Pending, true)
    );
    assert_eq!(
        f.store.record_webhook_event(&e, true, T0, T0).await.unwrap(),
        (EventStatus::Pending, false)
    );
    assert_eq!(
        f.store.record_webhook_event(&e, false, T0, T0).await.unwrap(),
        (EventStatus::Pending, false)
    );
    assert_eq!(f.store.due_webhook_events(T0, 10).await.unwrap(), ["evt_1"]);
    assert!(matches!(
        f.store.apply_webhook_event("evt_1", T0).await.unwrap(),
        ApplyOutcome::Ignored(_)
    ));
    assert!(f.store.due_webhook_events(T0, 10).await.unwrap().is_empty());
    let listed = f.store.list_webhook_events(10).await.unwrap();
    assert_eq!(
        (listed[0].delivery_count, listed[0].status, listed[0].attempts),
        (2, EventStatus::Ignored, 1)
    );
    assert_eq!(
        f.store.record_webhook_event(&e, true, T0, T0).await.unwrap(),
        (EventStatus::Ignored, false)
    );
    assert!(matches!(
        f.store.apply_webhook_event("evt_nope", T0).await,
        Err(StoreError::NotFound(_))
    ));
});

both_engines!(
    a_payment_is_applied_once_with_tickets_and_a_refund_reverses_it,
    |engine| async move {
        let f = fixture(engine, &[10]).await;
        let (_, order) = ordered(&f, 3, "pi_paid", T0).await;
        let paid = event("evt_paid", "payment_intent.succeeded", "pi_paid");
        f.store.record_webhook_event(&paid, true, T0, T0).await.unwrap();
        assert!(matches!(
            f.store.apply_webhook_event("evt_paid", at(1)).await.unwrap(),
            ApplyOutcome::Applied(_)
        ));
        let tickets = f.store.order_tickets(&order).await.unwrap();
        assert_eq!(tickets.len(), 3);
        assert_eq!(f.inventory(0, at(1)).await, (3, 0, 7));
        let again = event("evt_paid_again", "payment_intent.succeeded", "pi_paid");
        f.store.record_webhook_event(&again, true, T0, T0).await.unwrap();
        f.store.apply_webhook_event("evt_paid_again", at(2)).await.unwrap();
        assert_eq!(
            f.store.order_tickets(&order).await.unwrap(),
            tickets,
            "guarded by the order's state"
        );
        assert_eq!(f.inventory(0, at(2)).await, (3, 0, 7));

        let refunded = event("evt_refund", "charge.refunded", "pi_paid");
        f.store.record_webhook_event(&refunded, true, T0, T0).await.unwrap();
        f.store.apply_webhook_event("evt_refund", at(3)).await.unwrap();
        assert_eq!(
            f.store.get_order(&order).await.unwrap().status,
            boxoffice_core::payments::OrderStatus::Refunded
        );
        assert!(
            f.store
                .order_tickets(&order)
                .await
                .unwrap()
                .iter()
                .all(|t| t.status == "void")
        );
        assert_eq!(f.inventory(0, at(3)).await, (0, 0, 10));
    }
);

both_engines!(failures_are_recorded_and_late_refunds_completed, |engine| async move {
    let f = fixture(engine, &[1]).await;
    let (late, order) = ordered(&f, 1, "pi_late", T0).await;
    // The hold runs out and another buyer takes the only ticket.
    f.place(&[(0, 1)], late.expires_at.plus(Duration::from_secs(300)))
        .await
        .unwrap();
    let now = late.expires_at.plus(Duration::from_secs(301));
    let paid = event("evt_late", "payment_intent.succeeded", "pi_late");
    f.store.record_webhook_event(&paid, true, now, now).await.unwrap();
    f.store
        .record_webhook_failure("evt_late", "provider down", now.plus(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(
        f.store.due_webhook_events(now, 10).await.unwrap().is_empty(),
        "not before its retry time"
    );
    assert_eq!(
        f.store
            .due_webhook_events(now.plus(Duration::from_secs(5)), 10)
            .await
            .unwrap(),
        ["evt_late"]
    );
    let listed = f.store.list_webhook_events(10).await.unwrap();
    assert_eq!(
        (listed[0].status, listed[0].last_error.as_deref()),
        (EventStatus::Failed, Some("provider down"))
    );

    let outcome = f.store.apply_webhook_event("evt_late", now).await.unwrap();
    assert_eq!(
        outcome,
        ApplyOutcome::RefundNeeded {
            order_id: order.clone(),
            payment_intent_id: "pi_late".into()
        }
    );
    assert_eq!(f.inventory(0, now).await, (0, 1, 0), "nothing oversold");
    // The decision stands even if capacity frees up before the refund is recorded.
    assert!(matches!(
        f.store.apply_webhook_event("evt_late", now).await.unwrap(),
        ApplyOutcome::RefundNeeded { .. }
    ));
    f.store.complete_late_refund("evt_late", &order, now).await.unwrap();
    assert_eq!(
        f.store.get_order(&order).await.unwrap().status,
        boxoffice_core::payments::OrderStatus::Refunded
    );
    assert_eq!(
        f.store.list_webhook_events(10).await.unwrap()[0].status,
        EventStatus::Applied
    );
    assert!(f.store.order_tickets(&order).await.unwrap().is_empty());
});
