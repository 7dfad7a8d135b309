//! The PaymentStore contract (SPEC §5): an `Idempotency-Key` begins its request once, then
//! replays, refuses a different body or waits for the lock; the order phase creates one
//! order per hold and grants the payment grace once; stalled requests are claimed by one
//! completer and old records reaped; orders are read whole and listed newest first (the
//! operator's dashboard, SPEC §8); a hold left at checkout is released unless its payment
//! is being confirmed (the mark every instance sees, SPEC §12).

use std::time::Duration;

use boxoffice_core::holds::HoldStatus;
use boxoffice_core::ids::OrderId;
use boxoffice_core::payments::{Begun, Order, OrderPhase, OrderStatus, ProviderIntent, RecoveryPoint, StoredResponse};
use boxoffice_core::{StoreError, Timestamp};

use crate::{Fixture, T0, at, fixture, idempotency_record, order_for_request};

fn intent(id: &str) -> ProviderIntent {
    ProviderIntent {
        id: id.into(),
        client_secret: format!("{id}_secret_x"),
        status: "requires_payment_method".into(),
        amount: 1_000,
        currency: "eur".into(),
    }
}

const LOCK: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(300);

both_engines!(a_key_begins_once_then_replays_refuses_or_waits, |engine| async move {
    let f = fixture(engine, &[10]).await;
    let hold = f.place(&[(0, 1)], T0).await.unwrap();
    let r = idempotency_record(&hold.id, "k", "fp", T0);
    assert_eq!(f.store.find_idempotent_request("anonymous", "k").await.unwrap(), None);
    assert_eq!(
        f.store.begin_idempotent_request(&r, T0.plus(LOCK), T0).await.unwrap(),
        Begun::Proceed(r.clone())
    );
    assert_eq!(
        f.store.find_idempotent_request("anonymous", "k").await.unwrap(),
        Some(r.clone())
    );
    // Locked: another request waits, until the lock lapses.
    assert_eq!(
        f.store
            .begin_idempotent_request(&r, at(1).plus(LOCK), at(1))
            .await
            .unwrap(),
        Begun::InUse {
            locked_until: T0.plus(LOCK)
        }
    );
    assert_eq!(
        f.store
            .begin_idempotent_request(&idempotency_record(&hold.id, "k", "other", at(1)), at(2), at(1))
            .await
            .unwrap(),
        Begun::Mismatch
    );
    let after_lock = T0.plus(LOCK);
    assert!(matches!(
        f.store
            .begin_idempotent_request(&r, after_lock.plus(LOCK), after_lock)
            .await
            .unwrap(),
        Begun::Proceed(_)
    ));
    // Released after an indeterminate failure: the next request proceeds at once.
    f.store.release_idempotency_lock("anonymous", "k").await.unwrap();
    assert!(matches!(
        f.store.begin_idempotent_request(&r, at(700), at(70)).await.unwrap(),
        Begun::Proceed(_)
    ));
    let response = StoredResponse {
        status: 409,
        body: "{\"error\":{}}".into(),
    };
    f.store
        .finish_idempotent_request("anonymous", "k", &response, None, at(71))
        .await
        .unwrap();
    assert_eq!(
        f.store.begin_idempotent_request(&r, at(800), at(72)).await.unwrap(),
        Begun::Replay(response.clone())
    );
    let finished = f
        .store
        .find_idempotent_request("anonymous", "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (finished.recovery_point, finished.response),
        (RecoveryPoint::Finished, Some(response))
    );
    // Scopes are separate.
    let mut other_scope = r.clone();
    other_scope.scope = "api_key:key_1".into();
    assert!(matches!(
        f.store
            .begin_idempotent_request(&other_scope, at(800), at(72))
            .await
            .unwrap(),
        Begun::Proceed(_)
    ));
});

both_engines!(
    concurrent_begins_with_one_key_let_exactly_one_proceed,
    |engine| async move {
        let f = fixture(engine, &[10]).await;
        let hold = f.place(&[(0, 1)], T0).await.unwrap();
        let attempts = (0..50).map(|_| {
            let (store, r) = (f.store.clone(), idempotency_record(&hold.id, "race", "fp", T0));
            tokio::spawn(async move { store.begin_idempotent_request(&r, T0.plus(LOCK), T0).await.unwrap() })
        });
        let answers: Vec<Begun> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(answers.iter().filter(|a| matches!(a, Begun::Proceed(_))).count(), 1);
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Begun::Proceed(_) | Begun::InUse { .. }))
        );
    }
);

both_engines!(
    the_order_phase_creates_one_order_per_hold_and_grants_grace_once,
    |engine| async move {
        let f = fixture(engine, &[10]).await;
        let hold = f.place(&[(0, 2)], T0).await.unwrap();
        let late = hold.expires_at.plus(Duration::ZERO);
        let near_expiry = Timestamp::from_millis(late.as_millis() - 60_000);
        for key in ["a", "b"] {
            f.store
                .begin_idempotent_request(
                    &idempotency_record(&hold.id, key, "fp", near_expiry),
                    near_expiry.plus(LOCK),
                    near_expiry,
                )
                .await
                .unwrap();
        }
        let first_id = OrderId::generate();
        let OrderPhase::Ready(order) = f
            .store
            .create_order_for_request("anonymous", "a", &first_id, GRACE, near_expiry)
            .await
            .unwrap()
        else {
            panic!("the hold is active")
        };
        assert_eq!(
            (order.id.clone(), order.status, order.amount.get()),
            (first_id, OrderStatus::Pending, 2_000)
        );
        assert_eq!(order.hold_id, hold.id);
        // Repeating the phase for the same key is harmless; another key reuses the order.
        let again = f
            .store
            .create_order_for_request("anonymous", "a", &OrderId::generate(), GRACE, near_expiry)
            .await
            .unwrap();
        assert_eq!(again, OrderPhase::Ready(order.clone()));
        let other = f
            .store
            .create_order_for_request("anonymous", "b", &OrderId::generate(), GRACE, near_expiry)
            .await
            .unwrap();
        assert_eq!(other, OrderPhase::Ready(order.clone()));
        let extended = f.store.get_hold(&hold.id).await.unwrap();
        assert_eq!(
            extended.expires_at,
            near_expiry.plus(GRACE),
            "extended to the grace, once"
        );
        assert_eq!(f.store.get_order(&order.id).await.unwrap(), order);
        assert!(matches!(
            f.store.get_order(&OrderId::generate()).await,
            Err(StoreError::NotFound(_))
        ));

        // Finishing records the PaymentIntent on the order; another one is refused.
        let response = StoredResponse {
            status: 201,
            body: "{}".into(),
        };
        f.store
            .finish_idempotent_request("anonymous", "a", &response, Some((&order.id, &intent("pi_1"))), at(1))
            .await
            .unwrap();
        let recorded = f.store.get_order(&order.id).await.unwrap();
        assert_eq!(
            (recorded.payment_intent_id.as_deref(), recorded.client_secret.as_deref()),
            (Some("pi_1"), Some("pi_1_secret_x"))
        );
        f.store
            .finish_idempotent_request("anonymous", "b", &response, Some((&order.id, &intent("pi_1"))), at(1))
            .await
            .unwrap();
        assert!(
            f.store
                .finish_idempotent_request("anonymous", "b", &response, Some((&order.id, &intent("pi_2"))), at(1))
                .await
                .is_err()
        );

        // An expired or cancelled hold gets no order.
        let gone = f.place(&[(0, 1)], T0).await.unwrap();
        f.store
            .begin_idempotent_request(
                &idempotency_record(&gone.id, "c", "fp", gone.expires_at),
                gone.expires_at.plus(LOCK),
                gone.expires_at,
            )
            .await
            .unwrap();
        assert_eq!(
            f.store
                .create_order_for_request("anonymous", "c", &OrderId::generate(), GRACE, gone.expires_at)
                .await
                .unwrap(),
            OrderPhase::HoldNotActive(HoldStatus::Expired)
        );
    }
);

both_engines!(
    stalled_requests_are_claimed_once_and_old_records_reaped,
    |engine| async move {
        let f = fixture(engine, &[100]).await;
        for i in 0..12 {
            let hold = f.place(&[(0, 1)], T0).await.unwrap();
            let key = format!("k{i}");
            f.store
                .begin_idempotent_request(&idempotency_record(&hold.id, &key, "fp", T0), T0.plus(LOCK), T0)
                .await
                .unwrap();
            if i < 10 {
                f.store
                    .create_order_for_request("anonymous", &key, &OrderId::generate(), GRACE, T0)
                    .await
                    .unwrap();
            }
        }
        // Still locked by their (presumed live) requests: nothing to claim.
        assert!(
            f.store
                .claim_stalled_requests(at(1), at(100), 100)
                .await
                .unwrap()
                .is_empty()
        );
        let later = T0.plus(LOCK);
        let claims = (0..4).map(|_| {
            let store = f.store.clone();
            tokio::spawn(async move { store.claim_stalled_requests(later, later.plus(LOCK), 3).await.unwrap() })
        });
        let mut claimed: Vec<String> = futures::future::join_all(claims)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .map(|r| r.key)
            .collect();
        let more = f
            .store
            .claim_stalled_requests(later, later.plus(LOCK), 100)
            .await
            .unwrap();
        claimed.extend(more.into_iter().map(|r| r.key));
        claimed.sort();
        let mut expected: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        expected.sort();
        assert_eq!(
            claimed, expected,
            "each stalled record claimed exactly once; `started` ones are not stalled"
        );
        assert!(
            f.store
                .claim_stalled_requests(later, later.plus(LOCK), 100)
                .await
                .unwrap()
                .is_empty(),
            "claimed = locked"
        );

        let response = StoredResponse {
            status: 201,
            body: "{}".into(),
        };
        f.store
            .finish_idempotent_request("anonymous", "k0", &response, None, at(2))
            .await
            .unwrap();
        assert_eq!(
            f.store.delete_idempotency_records(T0, T0, 100).await.unwrap(),
            0,
            "nothing is old yet"
        );
        assert_eq!(
            f.store.delete_idempotency_records(at(1), T0, 100).await.unwrap(),
            1,
            "the finished one"
        );
        assert_eq!(
            f.store.delete_idempotency_records(at(1), at(1), 5).await.unwrap(),
            5,
            "abandoned ones, in batches"
        );
        assert_eq!(f.store.delete_idempotency_records(at(1), at(1), 100).await.unwrap(), 6);
    }
);

// ----- the operator's dashboard: recent orders ---------------------------------------------

/// A hold of one ticket placed at `now`, with its order created at `now`.
async fn order_at(f: &Fixture, key: &str, now: Timestamp) -> Order {
    let hold = f.place(&[(0, 1)], now).await.unwrap();
    order_for_request(f, &hold, key, now).await
}

both_engines!(recent_orders_are_listed_newest_first, |engine| async move {
    let f = fixture(engine, &[100]).await;
    assert!(f.store.list_recent_orders(10).await.unwrap().is_empty());

    let oldest = order_at(&f, "a", T0).await;
    let middle = order_at(&f, "b", at(10)).await;
    // Two at one instant: ordered by id, descending.
    let mut same = [order_at(&f, "c", at(20)).await, order_at(&f, "d", at(20)).await];
    same.sort_by(|x, y| y.id.cmp(&x.id));

    let listed = f.store.list_recent_orders(10).await.unwrap();
    let expected = [same[0].clone(), same[1].clone(), middle.clone(), oldest.clone()];
    assert_eq!(listed, expected, "newest first, whole orders");
    assert!(
        listed
            .iter()
            .all(|o| o.status == OrderStatus::Pending && o.amount.get() == 1_000)
    );

    let two = f.store.list_recent_orders(2).await.unwrap();
    assert_eq!(two, expected[..2]);
    let one = f.store.list_recent_orders(1).await.unwrap();
    assert_eq!(one, expected[..1]);
});

both_engines!(
    leaving_checkout_releases_a_hold_unless_its_payment_is_being_confirmed,
    |engine| async move {
        let f = fixture(engine, &[10]).await;
        // No order at all: released at once, like a cancellation.
        let unpaid = f.place(&[(0, 1)], T0).await.unwrap();
        let released = f.store.release_left_checkout(&unpaid.id, at(1)).await.unwrap();
        assert_eq!(released.map(|hold| hold.stored_status), Some(HoldStatus::Cancelled));

        // An order being confirmed until at(60): kept, nothing changes.
        let paying = f.place(&[(0, 2)], T0).await.unwrap();
        let order = order_for_request(&f, &paying, "confirming", T0).await;
        assert_eq!(order.confirming_until, None);
        f.store.mark_confirming(&order.id, Some(at(60))).await.unwrap();
        let marked = f.store.get_order(&order.id).await.unwrap();
        assert_eq!(marked.confirming_until, Some(at(60)));
        assert!(marked.is_confirming(at(59)) && !marked.is_confirming(at(60)));
        assert_eq!(f.store.release_left_checkout(&paying.id, at(30)).await.unwrap(), None);
        assert_eq!(
            f.store.get_hold(&paying.id).await.unwrap().stored_status,
            HoldStatus::Active
        );
        assert_eq!(f.inventory(0, at(30)).await, (0, 2, 8));

        // A mark that ran out (its process died) no longer keeps the hold.
        let released = f.store.release_left_checkout(&paying.id, at(61)).await.unwrap();
        assert_eq!(released.map(|hold| hold.stored_status), Some(HoldStatus::Cancelled));
        assert_eq!(f.inventory(0, at(61)).await, (0, 0, 10));

        // Cleared when the confirmation ends: released as usual.
        let again = f.place(&[(0, 1)], at(62)).await.unwrap();
        let order = order_for_request(&f, &again, "cleared", at(62)).await;
        f.store.mark_confirming(&order.id, Some(at(120))).await.unwrap();
        f.store.mark_confirming(&order.id, None).await.unwrap();
        assert_eq!(f.store.get_order(&order.id).await.unwrap().confirming_until, None);
        assert!(
            f.store
                .release_left_checkout(&again.id, at(63))
                .await
                .unwrap()
                .is_some()
        );

        assert!(matches!(
            f.store.mark_confirming(&OrderId::generate(), Some(at(1))).await,
            Err(StoreError::NotFound("order"))
        ));
    }
);
