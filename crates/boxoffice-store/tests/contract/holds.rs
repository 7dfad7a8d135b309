//! The HoldStore contract (SPEC §4): a hold takes capacity or nothing (SoldOut names the
//! type), an expired hold never blocks a sale even before the sweep, cancelling and
//! expiring release each hold exactly once, and concurrent holds never oversell.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::holds::{Hold, HoldStatus};
use boxoffice_core::ids::HoldId;
use boxoffice_core::{StoreError, Timestamp};

use crate::{HOLD, T0, at, fixture};

both_engines!(holds_take_capacity_and_sold_out_names_the_type, |engine| async move {
    let f = fixture(engine, &[3]).await;
    let placed = f.place(&[(0, 2)], T0).await.unwrap();
    assert_eq!(f.inventory(0, T0).await, (0, 2, 1));
    let stored = f.store.get_hold(&placed.id).await.unwrap();
    assert_eq!(stored, placed);

    match f.place(&[(0, 2)], T0).await {
        Err(StoreError::SoldOut {
            ticket_type_id,
            ticket_type_name,
        }) => {
            assert_eq!(ticket_type_id, f.ticket_types[0]);
            assert_eq!(ticket_type_name, "Type 0");
        }
        other => panic!("expected SoldOut, got {other:?}"),
    }
    assert_eq!(f.inventory(0, T0).await, (0, 2, 1), "a refused hold takes nothing");
    f.place(&[(0, 1)], T0).await.unwrap();
    assert_eq!(f.inventory(0, T0).await, (0, 3, 0));
    assert!(matches!(
        f.store.get_hold(&HoldId::generate()).await,
        Err(StoreError::NotFound(_))
    ));
});

both_engines!(multi_item_holds_are_all_or_nothing, |engine| async move {
    let f = fixture(engine, &[10, 1]).await;
    f.place(&[(1, 1)], T0).await.unwrap();
    let refused = f.place(&[(0, 4), (1, 1)], T0).await;
    assert!(
        matches!(&refused, Err(StoreError::SoldOut { ticket_type_name, .. }) if ticket_type_name == "Type 1"),
        "{refused:?}"
    );
    assert_eq!(
        f.inventory(0, T0).await,
        (0, 0, 10),
        "nothing of the first item stays held"
    );
    assert_eq!(f.inventory(1, T0).await, (0, 1, 0));
    let placed = f.place(&[(0, 4)], T0).await.unwrap();
    assert_eq!(placed.items.len(), 1);
});

both_engines!(
    an_expired_hold_never_blocks_a_sale_even_before_the_sweep,
    |engine| async move {
        let f = fixture(engine, &[2]).await;
        let first = f.place(&[(0, 2)], T0).await.unwrap();
        let just_before = first.expires_at.plus(Duration::ZERO);
        let just_before = Timestamp::from_millis(just_before.as_millis() - 1);
        assert!(
            f.place(&[(0, 1)], just_before).await.is_err(),
            "still held one millisecond before expiry"
        );
        assert_eq!(f.inventory(0, just_before).await, (0, 2, 0));

        // At the expiry instant the tickets are free for readers and buyers, with no sweep.
        let expiry = first.expires_at;
        assert_eq!(f.inventory(0, expiry).await, (0, 0, 2));
        let second = f.place(&[(0, 2)], expiry).await.unwrap();
        assert_eq!(f.inventory(0, expiry).await, (0, 2, 0));
        let released = f.store.get_hold(&first.id).await.unwrap();
        assert_eq!(released.stored_status, HoldStatus::Expired, "released holds are marked");
        assert_eq!(
            f.store.expire_holds(expiry, 100).await.unwrap(),
            0,
            "nothing left for the sweeper"
        );
        assert_eq!(
            f.store.get_hold(&second.id).await.unwrap().stored_status,
            HoldStatus::Active
        );
    }
);

both_engines!(cancelling_releases_once_and_is_idempotent, |engine| async move {
    let f = fixture(engine, &[5]).await;
    let placed = f.place(&[(0, 3)], T0).await.unwrap();
    let cancelled = f.store.cancel_hold(&placed.id, at(1)).await.unwrap();
    assert_eq!(cancelled.stored_status, HoldStatus::Cancelled);
    assert_eq!(f.inventory(0, at(1)).await, (0, 0, 5));
    let again = f.store.cancel_hold(&placed.id, at(2)).await.unwrap();
    assert_eq!(again.stored_status, HoldStatus::Cancelled);
    assert_eq!(
        f.inventory(0, at(2)).await,
        (0, 0, 5),
        "a repeated cancel releases nothing more"
    );

    // Cancelling a hold whose time ran out marks it expired, releasing it exactly once.
    let late = f.place(&[(0, 2)], at(3)).await.unwrap();
    let after_expiry = late.expires_at;
    let answer = f.store.cancel_hold(&late.id, after_expiry).await.unwrap();
    assert_eq!(answer.stored_status, HoldStatus::Expired);
    assert_eq!(f.store.expire_holds(after_expiry, 100).await.unwrap(), 0);
    assert_eq!(f.inventory(0, after_expiry).await, (0, 0, 5));
    let mut counters = f.store.get_ticket_type(&f.ticket_types[0], T0).await.unwrap();
    counters.held = counters.held.max(0);
    assert_eq!(counters.held, 0, "the stored counter is back to zero, not below");
    assert!(matches!(
        f.store.cancel_hold(&HoldId::generate(), T0).await,
        Err(StoreError::NotFound(_))
    ));
});

both_engines!(expire_holds_works_in_bounded_batches, |engine| async move {
    let f = fixture(engine, &[100, 100]).await;
    let mut holds = Vec::new();
    for i in 0..7 {
        holds.push(f.place(&[(0, 1), (1, 2)], at(i)).await.unwrap());
    }
    let live = f.place(&[(0, 1)], at(500)).await.unwrap();
    let now = at(7).plus(HOLD);
    assert_eq!(f.store.expire_holds(now, 3).await.unwrap(), 3);
    assert_eq!(f.store.expire_holds(now, 3).await.unwrap(), 3);
    assert_eq!(f.store.expire_holds(now, 3).await.unwrap(), 1);
    assert_eq!(f.store.expire_holds(now, 3).await.unwrap(), 0);
    for h in &holds {
        assert_eq!(
            f.store.get_hold(&h.id).await.unwrap().stored_status,
            HoldStatus::Expired
        );
    }
    assert_eq!(
        f.store.get_hold(&live.id).await.unwrap().stored_status,
        HoldStatus::Active
    );
    assert_eq!(f.inventory(0, now).await, (0, 1, 99));
    assert_eq!(f.inventory(1, now).await, (0, 0, 100));
});

both_engines!(concurrent_sweeps_expire_each_hold_exactly_once, |engine| async move {
    let f = fixture(engine, &[1000]).await;
    for i in 0..120 {
        f.place(&[(0, 1)], at(i % 5)).await.unwrap();
    }
    let now = at(10).plus(HOLD);
    let sweeps = (0..4).map(|_| {
        let store = f.store.clone();
        tokio::spawn(async move {
            let mut total = 0;
            loop {
                let n = store.expire_holds(now, 7).await.unwrap();
                total += n;
                if n == 0 {
                    break total;
                }
            }
        })
    });
    let totals: Vec<u64> = futures::future::join_all(sweeps)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(totals.iter().sum::<u64>(), 120, "per sweeper: {totals:?}");
    let tt = f.store.get_ticket_type(&f.ticket_types[0], T0).await.unwrap();
    assert_eq!(
        tt.held, 0,
        "each hold released exactly once: the counter is exactly zero"
    );
});

both_engines!(concurrent_holds_never_oversell, |engine| async move {
    let f = Arc::new(fixture(engine, &[50, 50]).await);
    let attempts = (0..200).map(|i| {
        let f = f.clone();
        tokio::spawn(async move {
            let items: &[(usize, u32)] = if i % 2 == 0 { &[(0, 1)] } else { &[(0, 1), (1, 1)] };
            f.place(items, T0).await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let placed: Vec<Hold> = results.into_iter().filter_map(|r| r.unwrap().ok()).collect();
    assert_eq!(placed.len(), 50, "exactly the capacity of the shared ticket type");
    let multi = placed.iter().filter(|h| h.items.len() == 2).count() as i64;
    assert_eq!(f.inventory(0, T0).await, (0, 50, 0));
    assert_eq!(
        f.inventory(1, T0).await,
        (0, multi, 50 - multi),
        "no partial multi-item hold"
    );
});

both_engines!(reservation_stats_follow_the_clock, |engine| async move {
    let f = fixture(engine, &[100]).await;
    let a = f.place(&[(0, 1)], T0).await.unwrap();
    f.place(&[(0, 1)], at(100)).await.unwrap();
    let c = f.place(&[(0, 1)], at(200)).await.unwrap();
    f.store.cancel_hold(&c.id, at(201)).await.unwrap();
    let stats = f.store.reservation_stats(at(300)).await.unwrap();
    assert_eq!(
        (stats.active, stats.expired, stats.completed, stats.cancelled),
        (2, 0, 0, 1)
    );
    assert_eq!(stats.oldest_active_created_at, Some(a.created_at));
    // `a` has run out at T0 + HOLD, before any sweep.
    let stats = f.store.reservation_stats(a.expires_at).await.unwrap();
    assert_eq!((stats.active, stats.expired, stats.cancelled), (1, 1, 1));
    assert_eq!(stats.oldest_active_created_at, Some(at(100)));
});

/// A fixture of one 2,500-ticket type whose every ticket is in a hold of one that runs out
/// at HOLD and is never swept: more than one release pass (1,000 holds) frees. Answers the
/// fixture and an instant just after the holds ran out.
async fn all_in_expired_unswept_holds(engine: crate::database::Engine) -> (crate::Fixture, Timestamp) {
    let f = fixture(engine, &[2_500]).await;
    let expiring: Vec<Hold> = (0..2_500)
        .map(|_| crate::hold(&f.event, &[(&f.ticket_types[0], 1)], T0))
        .collect();
    let refs: Vec<&Hold> = expiring.iter().collect();
    let placed = f.store.place_holds(&refs, T0).await.unwrap();
    assert!(placed.iter().all(|p| *p == boxoffice_core::holds::Placement::Placed));
    (f, T0.plus(HOLD).plus(Duration::from_secs(1)))
}

/// Sets the ticket type's capacity at `now`, as the PATCH of SPEC §3 does.
async fn set_capacity(f: &crate::Fixture, capacity: i64, now: Timestamp) -> boxoffice_core::catalog::TicketType {
    f.store
        .update_ticket_type(
            &f.ticket_types[0],
            &boxoffice_core::catalog::TicketTypeChanges {
                capacity: Some(boxoffice_core::catalog::Capacity::parse(capacity).unwrap()),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap()
}

both_engines!(
    more_expired_unswept_holds_than_one_release_never_block_a_batch,
    |engine| async move {
        let (f, later) = all_in_expired_unswept_holds(engine).await;
        assert_eq!(f.inventory(0, later).await, (0, 0, 2_500), "expired holds hold nothing");

        // One batch of 2,000 new buyers: every one gets a ticket (SPEC §4: an expired hold
        // never blocks a sale, whatever their number, swept or not).
        let buyers: Vec<Hold> = (0..2_000)
            .map(|_| crate::hold(&f.event, &[(&f.ticket_types[0], 1)], later))
            .collect();
        let refs: Vec<&Hold> = buyers.iter().collect();
        let answers = boxoffice_core::store::place_in_rounds(&*f.store, &refs, later)
            .await
            .unwrap();
        let refused = answers.iter().filter(|answer| answer.is_err()).count();
        assert_eq!(refused, 0, "{:?}", answers.iter().find(|answer| answer.is_err()));
        assert_eq!(f.inventory(0, later).await, (0, 2_000, 500));

        // Nor do they stand in the way of lowering the capacity: 2,000 live holds remain,
        // the 500 expired ones count for nothing.
        let lowered = set_capacity(&f, 2_000, later).await;
        assert_eq!((lowered.sold, lowered.held, lowered.available()), (0, 2_000, 0));
    }
);

both_engines!(
    more_expired_unswept_holds_than_one_release_never_block_a_capacity_change,
    |engine| async move {
        let (f, later) = all_in_expired_unswept_holds(engine).await;
        let lowered = set_capacity(&f, 100, later).await;
        assert_eq!(
            (lowered.capacity.get(), lowered.held, lowered.available()),
            (100, 0, 100)
        );
    }
);
