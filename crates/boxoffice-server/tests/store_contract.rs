//! The Store contract: every method of `boxoffice_core::Store`, run against SQLite and
//! PostgreSQL alike. Time is passed in explicitly, so expiry is tested without sleeping.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::auth::{SecretToken, StoredApiKey, mint_api_key};
use boxoffice_core::catalog::{Capacity, Event, MaxPerOrder, TicketType, TicketTypeChanges};
use boxoffice_core::holds::{Hold, HoldItem, HoldStatus, Quantity};
use boxoffice_core::ids::{ApiKeyId, EventId, HoldId, JobRunId, OrganizationId, TicketTypeId, random_hex};
use boxoffice_core::jobs::{JobOutcome, JobRun};
use boxoffice_core::money::{Cents, Currency};
use boxoffice_core::organizations::{Name, Organization};
use boxoffice_core::{PageRequest, Store, StoreError, Timestamp};
use common::{Engine, TestDatabase};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const HOLD: Duration = Duration::from_secs(600);

fn at(seconds: u64) -> Timestamp {
    T0.plus(Duration::from_secs(seconds))
}

struct Fixture {
    store: Arc<dyn Store>,
    org: OrganizationId,
    event: EventId,
    ticket_types: Vec<TicketTypeId>,
    _db: TestDatabase,
}

async fn fixture(engine: Engine, capacities: &[i64]) -> Fixture {
    let db = TestDatabase::new(engine).await;
    let store = db.store().await;
    let org = organization(&store, "Org").await;
    let event = event(&store, &org, T0).await;
    let mut ticket_types = Vec::new();
    for (i, capacity) in capacities.iter().enumerate() {
        let mut tt = new_ticket_type(&event, &format!("Type {i}"), *capacity);
        // Distinct creation instants give the listing order (created_at, then id).
        tt.created_at = at(i as u64);
        store.create_ticket_type(&tt).await.unwrap();
        ticket_types.push(tt.id);
    }
    Fixture {
        store,
        org,
        event,
        ticket_types,
        _db: db,
    }
}

async fn organization(store: &Arc<dyn Store>, name: &str) -> OrganizationId {
    let org = Organization {
        id: OrganizationId::generate(),
        name: Name::parse(name).unwrap(),
        created_at: T0,
    };
    store.create_organization(&org, &random_hex()).await.unwrap();
    org.id
}

async fn event(store: &Arc<dyn Store>, org: &OrganizationId, created_at: Timestamp) -> EventId {
    let event = Event {
        id: EventId::generate(),
        organization_id: org.clone(),
        name: Name::parse("Concert").unwrap(),
        starts_at: at(86_400),
        currency: Currency::parse("EUR").unwrap(),
        hold_seconds: None,
        created_at,
    };
    store.create_event(&event).await.unwrap();
    event.id
}

fn new_ticket_type(event: &EventId, name: &str, capacity: i64) -> TicketType {
    TicketType {
        id: TicketTypeId::generate(),
        event_id: event.clone(),
        name: Name::parse(name).unwrap(),
        price: Cents::parse_price(1_000).unwrap(),
        capacity: Capacity::parse(capacity).unwrap(),
        max_per_order: MaxPerOrder::default(),
        on_sale: true,
        sold: 0,
        held: 0,
        created_at: T0,
    }
}

fn hold(event: &EventId, items: &[(&TicketTypeId, u32)], created_at: Timestamp) -> Hold {
    let mut items: Vec<HoldItem> = items
        .iter()
        .map(|(id, quantity)| HoldItem {
            ticket_type_id: (*id).clone(),
            quantity: Quantity::from_trusted(*quantity),
            unit_price: Cents::from_trusted(1_000),
        })
        .collect();
    items.sort_by(|a, b| a.ticket_type_id.cmp(&b.ticket_type_id));
    let amount = items.iter().fold(Cents::from_trusted(0), |sum, i| {
        sum.plus(i.unit_price.times(i.quantity.get()))
    });
    Hold {
        id: HoldId::generate(),
        event_id: event.clone(),
        stored_status: HoldStatus::Active,
        customer_email: None,
        items,
        amount,
        currency: Currency::parse("EUR").unwrap(),
        created_at,
        expires_at: created_at.plus(HOLD),
    }
}

impl Fixture {
    async fn place(&self, items: &[(usize, u32)], now: Timestamp) -> Result<Hold, StoreError> {
        let items: Vec<(&TicketTypeId, u32)> = items.iter().map(|(i, q)| (&self.ticket_types[*i], *q)).collect();
        let hold = hold(&self.event, &items, now);
        self.store.place_hold(&hold, now).await.map(|()| hold)
    }

    /// (sold, held, available) of ticket type `i` at `now`.
    async fn inventory(&self, i: usize, now: Timestamp) -> (i64, i64, i64) {
        let tt = self.store.get_ticket_type(&self.ticket_types[i], now).await.unwrap();
        (tt.sold, tt.held, tt.available())
    }
}

both_engines!(settings_are_written_once, |engine| async move {
    let f = fixture(engine, &[]).await;
    assert_eq!(f.store.get_setting("k").await.unwrap(), None);
    assert!(f.store.insert_setting_if_absent("k", "first").await.unwrap());
    assert!(!f.store.insert_setting_if_absent("k", "second").await.unwrap());
    assert_eq!(f.store.get_setting("k").await.unwrap().as_deref(), Some("first"));
    f.store.ping().await.unwrap();
});

both_engines!(organizations_and_api_keys, |engine| async move {
    let f = fixture(engine, &[]).await;
    let org = f.store.get_organization(&f.org).await.unwrap();
    assert_eq!(org.name.as_str(), "Org");
    assert_eq!(org.created_at, T0);
    assert_eq!(f.store.count_organizations().await.unwrap(), 1);
    assert!(matches!(
        f.store.get_organization(&OrganizationId::generate()).await,
        Err(StoreError::NotFound(_))
    ));

    let minted = mint_api_key();
    let key = StoredApiKey {
        id: minted.id.clone(),
        organization_id: f.org.clone(),
        secret_hash: minted.secret_hash,
    };
    f.store.create_api_key(&key, T0).await.unwrap();
    let found = f.store.find_api_key(&minted.id).await.unwrap().unwrap();
    assert_eq!(found.organization_id, f.org);
    let (_, secret) = boxoffice_core::auth::split_api_key(&minted.key).unwrap();
    assert!(found.secret_hash.matches(&secret));
    assert!(!found.secret_hash.matches(&SecretToken::new("guess")));
    assert!(f.store.find_api_key(&ApiKeyId::generate()).await.unwrap().is_none());

    let orphan = StoredApiKey {
        id: ApiKeyId::generate(),
        organization_id: OrganizationId::generate(),
        secret_hash: key.secret_hash,
    };
    assert!(matches!(
        f.store.create_api_key(&orphan, T0).await,
        Err(StoreError::NotFound("organization"))
    ));
});

both_engines!(events_with_ticket_types, |engine| async move {
    let f = fixture(engine, &[100, 5]).await;
    let event = f.store.get_event(&f.event, T0).await.unwrap();
    assert_eq!(event.event.organization_id, f.org);
    assert_eq!(event.event.currency.as_str(), "EUR");
    let names: Vec<_> = event
        .ticket_types
        .iter()
        .map(|tt| tt.name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["Type 0", "Type 1"]);
    assert_eq!(event.ticket_types[0].available(), 100);
    assert!(matches!(
        f.store.get_event(&EventId::generate(), T0).await,
        Err(StoreError::NotFound("event"))
    ));

    let orphan_event = Event {
        organization_id: OrganizationId::generate(),
        ..event.event.clone()
    };
    let orphan_event = Event {
        id: EventId::generate(),
        ..orphan_event
    };
    assert!(matches!(
        f.store.create_event(&orphan_event).await,
        Err(StoreError::NotFound("organization"))
    ));
    let orphan_tt = new_ticket_type(&EventId::generate(), "Nowhere", 1);
    assert!(matches!(
        f.store.create_ticket_type(&orphan_tt).await,
        Err(StoreError::NotFound("event"))
    ));
    assert!(matches!(
        f.store.get_ticket_type(&TicketTypeId::generate(), T0).await,
        Err(StoreError::NotFound("ticket type"))
    ));
});

both_engines!(events_are_listed_newest_first_with_cursors, |engine| async move {
    let f = fixture(engine, &[]).await;
    let other_org = organization(&f.store, "Other").await;
    let mut ids = vec![f.event.clone()];
    for i in 1..5 {
        ids.push(event(&f.store, &f.org, at(i)).await);
    }
    event(&f.store, &other_org, at(10)).await;
    ids.reverse(); // newest first

    let first = f
        .store
        .list_events(
            Some(&f.org),
            &PageRequest {
                limit: 2,
                starting_after: None,
            },
            T0,
        )
        .await
        .unwrap();
    let got: Vec<_> = first.data.iter().map(|e| e.event.id.clone()).collect();
    assert_eq!(got, ids[..2]);
    assert!(first.has_more);
    let rest = f
        .store
        .list_events(
            Some(&f.org),
            &PageRequest {
                limit: 10,
                starting_after: Some(ids[1].clone()),
            },
            T0,
        )
        .await
        .unwrap();
    let got: Vec<_> = rest.data.iter().map(|e| e.event.id.clone()).collect();
    assert_eq!(got, ids[2..]);
    assert!(!rest.has_more);

    let all = f
        .store
        .list_events(
            None,
            &PageRequest {
                limit: 100,
                starting_after: None,
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(all.data.len(), 6);
    let unknown = PageRequest {
        limit: 10,
        starting_after: Some(EventId::generate()),
    };
    assert!(matches!(
        f.store.list_events(None, &unknown, T0).await,
        Err(StoreError::NotFound(_))
    ));
});

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

both_engines!(ticket_type_updates_respect_sold_plus_held, |engine| async move {
    let f = fixture(engine, &[10]).await;
    let id = f.ticket_types[0].clone();
    let placed = f.place(&[(0, 4)], T0).await.unwrap();
    let refused = f
        .store
        .update_ticket_type(
            &id,
            &TicketTypeChanges {
                capacity: Some(Capacity::parse(3).unwrap()),
                ..Default::default()
            },
            T0,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::CapacityBelowCommitted { committed: 4 })),
        "{refused:?}"
    );
    let changes = TicketTypeChanges {
        name: Some(Name::parse("Renamed").unwrap()),
        price: Some(Cents::parse_price(2_500).unwrap()),
        capacity: Some(Capacity::parse(4).unwrap()),
        max_per_order: Some(MaxPerOrder::parse(2).unwrap()),
        on_sale: Some(false),
    };
    let updated = f.store.update_ticket_type(&id, &changes, T0).await.unwrap();
    assert_eq!(updated.name.as_str(), "Renamed");
    assert_eq!(updated.price.get(), 2_500);
    assert_eq!(updated.capacity.get(), 4);
    assert_eq!(updated.max_per_order.get(), 2);
    assert!(!updated.on_sale);
    assert_eq!(updated.available(), 0);

    // Once the hold has expired (unswept), capacity may shrink to zero.
    let zero = TicketTypeChanges {
        capacity: Some(Capacity::parse(0).unwrap()),
        ..Default::default()
    };
    let updated = f.store.update_ticket_type(&id, &zero, placed.expires_at).await.unwrap();
    assert_eq!((updated.capacity.get(), updated.held), (0, 0));
    assert!(matches!(
        f.store.update_ticket_type(&TicketTypeId::generate(), &zero, T0).await,
        Err(StoreError::NotFound(_))
    ));
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

both_engines!(job_runs_are_recorded_newest_first_and_pruned, |engine| async move {
    let f = fixture(engine, &[]).await;
    let run = |started: u64, outcome| JobRun {
        id: JobRunId::generate(),
        job: "expire-holds".into(),
        started_at: at(started),
        finished_at: at(started + 1),
        outcome,
        affected: started,
        error: (outcome == JobOutcome::Failed).then(|| "database down".to_owned()),
    };
    for i in 0..5 {
        f.store
            .record_job_run(&run(i * 10, JobOutcome::Succeeded), T0)
            .await
            .unwrap();
    }
    f.store.record_job_run(&run(60, JobOutcome::Failed), T0).await.unwrap();
    let runs = f.store.list_job_runs("expire-holds", 3).await.unwrap();
    let started: Vec<_> = runs.iter().map(|r| r.started_at).collect();
    assert_eq!(started, [at(60), at(40), at(30)]);
    assert_eq!(runs[0].outcome, JobOutcome::Failed);
    assert_eq!(runs[0].error.as_deref(), Some("database down"));
    assert!(f.store.list_job_runs("other-job", 10).await.unwrap().is_empty());

    f.store
        .record_job_run(&run(70, JobOutcome::Succeeded), at(35))
        .await
        .unwrap();
    let left: Vec<_> = f
        .store
        .list_job_runs("expire-holds", 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.affected)
        .collect();
    assert_eq!(left, [70, 60, 40], "runs started before the retention cut-off are gone");
});

// ----- payments -----------------------------------------------------------------------

mod payments {
    use boxoffice_core::ids::OrderId;
    use boxoffice_core::payments::{
        Begun, IdempotencyRecord, OrderPhase, OrderStatus, ProviderIntent, RecoveryPoint, StoredResponse,
    };

    use super::*;

    fn record(hold: &HoldId, key: &str, fingerprint: &str, now: Timestamp) -> IdempotencyRecord {
        IdempotencyRecord {
            scope: "anonymous".into(),
            key: key.into(),
            hold_id: hold.clone(),
            fingerprint: fingerprint.into(),
            recovery_point: RecoveryPoint::Started,
            order_id: None,
            response: None,
            created_at: now,
        }
    }

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
        let r = record(&hold.id, "k", "fp", T0);
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
                .begin_idempotent_request(&record(&hold.id, "k", "other", at(1)), at(2), at(1))
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
                let (store, r) = (f.store.clone(), record(&hold.id, "race", "fp", T0));
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
                        &record(&hold.id, key, "fp", near_expiry),
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
                    &record(&gone.id, "c", "fp", gone.expires_at),
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
                    .begin_idempotent_request(&record(&hold.id, &key, "fp", T0), T0.plus(LOCK), T0)
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
}

/// An order for an already placed `hold`, created the way a payment-intent request makes
/// one, with PaymentIntent `pi` recorded.
async fn order_for_hold(f: &Fixture, hold: &Hold, pi: &str, now: Timestamp) -> boxoffice_core::ids::OrderId {
    use boxoffice_core::ids::OrderId;
    use boxoffice_core::payments::{IdempotencyRecord, OrderPhase, ProviderIntent, RecoveryPoint, StoredResponse};

    let record = IdempotencyRecord {
        scope: "anonymous".into(),
        key: format!("key-{pi}"),
        hold_id: hold.id.clone(),
        fingerprint: "fp".into(),
        recovery_point: RecoveryPoint::Started,
        order_id: None,
        response: None,
        created_at: now,
    };
    f.store
        .begin_idempotent_request(&record, now.plus(Duration::from_secs(60)), now)
        .await
        .unwrap();
    let OrderPhase::Ready(order) = f
        .store
        .create_order_for_request(
            "anonymous",
            &record.key,
            &OrderId::generate(),
            Duration::from_secs(300),
            now,
        )
        .await
        .unwrap()
    else {
        panic!("active hold")
    };
    let intent = ProviderIntent {
        id: pi.into(),
        client_secret: "s".into(),
        status: "requires_payment_method".into(),
        amount: 0,
        currency: "eur".into(),
    };
    let response = StoredResponse {
        status: 201,
        body: "{}".into(),
    };
    f.store
        .finish_idempotent_request("anonymous", &record.key, &response, Some((&order.id, &intent)), now)
        .await
        .unwrap();
    order.id
}

/// A Stripe webhook event of `event_type` for PaymentIntent `pi` (a charge of it for
/// `charge.refunded`).
fn webhook_event(id: &str, event_type: &str, pi: &str) -> boxoffice_core::webhooks::StripeEvent {
    let object = if event_type == "charge.refunded" {
        serde_json::json!({ "id": "ch_1", "object": "charge", "payment_intent": pi })
    } else {
        serde_json::json!({ "id": pi, "object": "payment_intent" })
    };
    let payload = serde_json::json!({ "id": id, "type": event_type, "data": { "object": object } }).to_string();
    boxoffice_core::webhooks::StripeEvent::parse(payload.as_bytes()).unwrap()
}

// ----- webhooks -------------------------------------------------------------------------

mod webhooks {
    use boxoffice_core::ids::OrderId;
    use boxoffice_core::webhooks::{ApplyOutcome, EventStatus, StripeEvent};

    use super::*;

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
}

// ----- the error store --------------------------------------------------------------------

mod errors {
    use boxoffice_core::error_store::grouping::{self, Fingerprint};
    use boxoffice_core::error_store::reports::{
        AlertDelivery, AlertKind, AlertPolicy, ErrorProject, ErrorReport, GroupFilter, Pruned, Recorded,
    };
    use boxoffice_core::failures::Severity;
    use boxoffice_core::ids::ErrorGroupId;

    use super::*;

    /// Alerts on, with the production cooldown of ten minutes.
    const ALERTS: AlertPolicy = AlertPolicy {
        enabled: true,
        cooldown_ms: 10 * 60 * 1000,
    };

    fn report(event_id: &str, fingerprint: &Fingerprint, severity: Severity, at_: Timestamp) -> ErrorReport {
        ErrorReport {
            event_id: event_id.into(),
            scope: "server".into(),
            fingerprint: fingerprint.clone(),
            title: "Boom: <n> failures".into(),
            severity,
            component: Some("payments".into()),
            message: "Boom: 3 failures".into(),
            request_id: Some("req-1".into()),
            payload: "{\"message\":\"Boom: 3 failures\"}".into(),
            release: Some("boxoffice@1.2.3".into()),
            environment: Some("production".into()),
            received_at: at_,
        }
    }

    fn fingerprint(name: &str) -> Fingerprint {
        grouping::fingerprint(None, Some(name), "x", &[])
    }

    /// Records one report in a batch of its own.
    async fn record(store: &Arc<dyn Store>, report: ErrorReport, policy: &AlertPolicy) -> Recorded {
        let mut recorded = store.record_errors(&[report], policy).await.unwrap();
        assert_eq!(recorded.len(), 1, "one answer per report");
        recorded.pop().unwrap()
    }

    /// (new_group, regression, duplicate) of each answer.
    fn flags(recorded: &[Recorded]) -> Vec<(bool, bool, bool)> {
        recorded
            .iter()
            .map(|r| (r.new_group, r.regression, r.duplicate))
            .collect()
    }

    async fn event_ids(store: &Arc<dyn Store>, group: &ErrorGroupId) -> Vec<String> {
        let (_, events) = store.get_error_group(group, 100).await.unwrap();
        events.into_iter().map(|event| event.event_id).collect()
    }

    both_engines!(
        occurrences_count_in_groups_and_regressions_reopen,
        |engine| async move {
            let f = fixture(engine, &[]).await;
            let boom = grouping::fingerprint(None, Some("Boom"), "3 failures", &[]);
            let other = grouping::fingerprint(None, Some("Other"), "x", &[]);
            let off = AlertPolicy::OFF;
            let first = record(&f.store, report("e1", &boom, Severity::Warning, T0), &off).await;
            assert!(first.new_group && !first.regression && !first.duplicate);
            assert_eq!(first.alert, None);
            let second = record(&f.store, report("e2", &boom, Severity::Critical, at(5)), &off).await;
            assert_eq!(
                (second.group_id.clone(), second.new_group),
                (first.group_id.clone(), false)
            );
            let again = record(&f.store, report("e2", &boom, Severity::Critical, at(6)), &off).await;
            assert!(again.duplicate, "the same event id is stored once");
            assert_eq!(again.group_id, first.group_id);
            record(&f.store, report("e3", &other, Severity::Info, at(7)), &off).await;

            let (group, events) = f.store.get_error_group(&first.group_id, 10).await.unwrap();
            assert_eq!(
                (group.count, group.severity, group.first_seen, group.last_seen),
                (2, Severity::Critical, T0, at(5))
            );
            assert_eq!(
                events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
                ["e2", "e1"]
            );
            assert_eq!(events[0].request_id.as_deref(), Some("req-1"));
            assert_eq!(events[0].release.as_deref(), Some("boxoffice@1.2.3"));
            assert_eq!(events[0].environment.as_deref(), Some("production"));

            let all = f.store.list_error_groups(&GroupFilter::default(), 10).await.unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!(all[0].last_seen, at(7), "most recently seen first");
            let critical = GroupFilter {
                severity: Some(Severity::Critical),
                resolved: None,
            };
            assert_eq!(f.store.list_error_groups(&critical, 10).await.unwrap().len(), 1);

            let resolved = f.store.resolve_error_group(&first.group_id, at(8)).await.unwrap();
            assert!(resolved.resolved);
            let only_resolved = GroupFilter {
                severity: None,
                resolved: Some(true),
            };
            assert_eq!(f.store.list_error_groups(&only_resolved, 10).await.unwrap().len(), 1);
            let regression = record(&f.store, report("e4", &boom, Severity::Error, at(9)), &off).await;
            assert!(regression.regression, "a new occurrence reopens a resolved group");
            assert!(!f.store.get_error_group(&first.group_id, 0).await.unwrap().0.resolved);
            assert!(matches!(
                f.store.resolve_error_group(&ErrorGroupId::generate(), at(9)).await,
                Err(StoreError::NotFound(_))
            ));
        }
    );

    both_engines!(concurrent_first_occurrences_make_one_group, |engine| async move {
        let f = fixture(engine, &[]).await;
        let fp = grouping::fingerprint(None, Some("Race"), "same", &[]);
        let reports = (0..40).map(|i| {
            let (store, fp) = (f.store.clone(), fp.clone());
            tokio::spawn(async move {
                record(
                    &store,
                    report(&format!("race-{i}"), &fp, Severity::Error, T0),
                    &AlertPolicy::OFF,
                )
                .await
            })
        });
        let recorded: Vec<_> = futures::future::join_all(reports)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(recorded.iter().filter(|r| r.new_group).count(), 1);
        let groups = f.store.list_error_groups(&GroupFilter::default(), 10).await.unwrap();
        assert_eq!(
            (groups.len(), groups[0].count),
            (1, 40),
            "every occurrence counted once"
        );
    });

    both_engines!(batches_skip_duplicates_within_and_across_batches, |engine| async move {
        let f = fixture(engine, &[]).await;
        let (a, b) = (fingerprint("A"), fingerprint("B"));
        let off = AlertPolicy::OFF;
        let stored = record(&f.store, report("e1", &a, Severity::Error, T0), &off).await;
        let batch = [
            report("e2", &b, Severity::Warning, at(1)),
            report("e1", &a, Severity::Error, at(1)),
            report("e3", &a, Severity::Critical, at(2)),
            report("e2", &b, Severity::Warning, at(2)),
            report("e4", &b, Severity::Error, at(3)),
            report("e3", &a, Severity::Critical, at(3)),
            report("e5", &a, Severity::Info, at(3)),
            // One event id with another fingerprint: still the same event, stored once.
            report("e5", &fingerprint("C"), Severity::Info, at(3)),
        ];
        let recorded = f.store.record_errors(&batch, &off).await.unwrap();
        assert_eq!(
            flags(&recorded),
            [
                (true, false, false),
                (false, false, true),
                (false, false, false),
                (false, false, true),
                (false, false, false),
                (false, false, true),
                (false, false, false),
                (false, false, true),
            ]
        );
        let group_a = stored.group_id;
        let group_b = recorded[0].group_id.clone();
        assert_ne!(group_a, group_b);
        let groups: Vec<_> = recorded.iter().map(|r| &r.group_id).collect();
        assert_eq!(
            groups,
            [
                &group_b, &group_a, &group_a, &group_b, &group_b, &group_a, &group_a, &group_a
            ],
            "a duplicate names the group its event is stored in"
        );

        let (a_group, _) = f.store.get_error_group(&group_a, 0).await.unwrap();
        assert_eq!(
            (a_group.count, a_group.severity, a_group.first_seen, a_group.last_seen),
            (3, Severity::Critical, T0, at(3))
        );
        let (b_group, _) = f.store.get_error_group(&group_b, 0).await.unwrap();
        assert_eq!(
            (b_group.count, b_group.severity, b_group.first_seen, b_group.last_seen),
            (2, Severity::Error, at(1), at(3))
        );
        assert_eq!(event_ids(&f.store, &group_a).await, ["e5", "e3", "e1"]);
        assert_eq!(event_ids(&f.store, &group_b).await, ["e4", "e2"]);
        assert_eq!(
            f.store
                .list_error_groups(&GroupFilter::default(), 10)
                .await
                .unwrap()
                .len(),
            2,
            "no group for a duplicate"
        );

        // The same batch again: all duplicates, nothing counted.
        let again = f.store.record_errors(&batch, &ALERTS).await.unwrap();
        assert!(again.iter().all(|r| r.duplicate && r.alert.is_none()));
        assert_eq!(again.iter().map(|r| &r.group_id).collect::<Vec<_>>(), groups);
        assert_eq!(f.store.get_error_group(&group_a, 0).await.unwrap().0.count, 3);
        assert_eq!(f.store.get_error_group(&group_b, 0).await.unwrap().0.count, 2);
        assert!(f.store.claim_alerts(at(10), 1_000, 10).await.unwrap().is_empty());

        assert!(f.store.record_errors(&[], &ALERTS).await.unwrap().is_empty());
    });

    both_engines!(a_resolved_group_reopens_once_per_batch, |engine| async move {
        let f = fixture(engine, &[]).await;
        let fp = fingerprint("Regress");
        let off = AlertPolicy::OFF;
        let group = record(&f.store, report("e1", &fp, Severity::Error, T0), &off)
            .await
            .group_id;
        f.store.resolve_error_group(&group, at(1)).await.unwrap();

        let batch = [
            report("e1", &fp, Severity::Error, at(2)),
            report("e2", &fp, Severity::Warning, at(2)),
            report("e3", &fp, Severity::Info, at(3)),
        ];
        let recorded = f.store.record_errors(&batch, &off).await.unwrap();
        assert_eq!(
            flags(&recorded),
            [(false, false, true), (false, true, false), (false, false, false)],
            "the first new occurrence is the regression"
        );
        let (reopened, _) = f.store.get_error_group(&group, 0).await.unwrap();
        assert_eq!(
            (reopened.resolved, reopened.count, reopened.severity, reopened.last_seen),
            (false, 3, Severity::Error, at(3))
        );

        // Only duplicates: the group stays resolved and uncounted.
        f.store.resolve_error_group(&group, at(4)).await.unwrap();
        let recorded = f.store.record_errors(&batch, &off).await.unwrap();
        assert!(recorded.iter().all(|r| r.duplicate && !r.regression));
        let (still, _) = f.store.get_error_group(&group, 0).await.unwrap();
        assert_eq!((still.resolved, still.count, still.last_seen), (true, 3, at(3)));
    });

    both_engines!(alerts_follow_the_policy, |engine| async move {
        let f = fixture(engine, &[]).await;
        let n = fingerprint("N");

        // A new group of severity error alerts, once, on its first report.
        let new = f
            .store
            .record_errors(
                &[
                    report("n1", &n, Severity::Error, T0),
                    report("n2", &n, Severity::Critical, T0),
                ],
                &ALERTS,
            )
            .await
            .unwrap();
        assert_eq!(
            new.iter().map(|r| r.alert).collect::<Vec<_>>(),
            [Some(AlertKind::NewGroup), None]
        );
        let group = new[0].group_id.clone();
        // A new group of severity warning does not.
        let warning = record(
            &f.store,
            report("w1", &fingerprint("W"), Severity::Warning, T0),
            &ALERTS,
        )
        .await;
        assert!(warning.new_group);
        assert_eq!(warning.alert, None);
        // A critical occurrence within the cooldown does not; after it, it does.
        let soon = record(&f.store, report("n3", &n, Severity::Critical, at(60)), &ALERTS).await;
        assert_eq!(soon.alert, None);
        let later = record(&f.store, report("n4", &n, Severity::Critical, at(601)), &ALERTS).await;
        assert_eq!(later.alert, Some(AlertKind::Critical));
        // An error in an existing group does not, cooldown or not.
        let error = record(&f.store, report("n5", &n, Severity::Error, at(1300)), &ALERTS).await;
        assert_eq!(error.alert, None);
        // A regression does, once the cooldown is over.
        f.store.resolve_error_group(&group, at(1300)).await.unwrap();
        let regression = record(&f.store, report("n6", &n, Severity::Warning, at(1301)), &ALERTS).await;
        assert!(regression.regression);
        assert_eq!(regression.alert, Some(AlertKind::Regression));
        // Nothing when alerts are off.
        let off = record(
            &f.store,
            report("o1", &fingerprint("O"), Severity::Critical, T0),
            &AlertPolicy::OFF,
        )
        .await;
        assert!(off.new_group);
        assert_eq!(off.alert, None);
        // Nothing about failing alert deliveries themselves.
        let mut failing = report("a1", &fingerprint("Alerts"), Severity::Critical, T0);
        failing.component = Some("alerts".into());
        let failing = record(&f.store, failing, &ALERTS).await;
        assert!(failing.new_group);
        assert_eq!(failing.alert, None);

        // The outbox holds exactly the alerts decided, oldest first, with the group as it is.
        let claimed = f.store.claim_alerts(at(2000), 60_000, 10).await.unwrap();
        assert_eq!(
            claimed
                .iter()
                .map(|a| (a.kind, a.group.id.clone(), a.created_at, a.attempts))
                .collect::<Vec<_>>(),
            [
                (AlertKind::NewGroup, group.clone(), T0, 0),
                (AlertKind::Critical, group.clone(), at(601), 0),
                (AlertKind::Regression, group.clone(), at(1301), 0),
            ]
        );
        assert!(claimed.iter().all(|a| a.id.starts_with("alr_")));
        assert_ne!(claimed[0].id, claimed[1].id);
        let now = &claimed[2].group;
        assert_eq!(
            (now.count, now.severity, now.resolved, now.last_seen),
            (6, Severity::Critical, false, at(1301))
        );
    });

    both_engines!(claimed_alerts_are_leased_until_finished, |engine| async move {
        let f = fixture(engine, &[]).await;
        let lease = 30_000;
        let group = record(&f.store, report("l1", &fingerprint("L"), Severity::Error, T0), &ALERTS)
            .await
            .group_id;

        let first = f.store.claim_alerts(T0, lease, 10).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].group.id.clone(), first[0].attempts), (group, 0));
        let id = first[0].id.clone();
        assert!(
            f.store.claim_alerts(at(10), lease, 10).await.unwrap().is_empty(),
            "leased to the first claimer"
        );
        // The first claimer never finished: once its lease is over, the alert is due again.
        let second = f.store.claim_alerts(at(30), lease, 10).await.unwrap();
        assert_eq!(
            (second.len(), second[0].id.clone(), second[0].attempts),
            (1, id.clone(), 0)
        );

        let retry = AlertDelivery::Retry {
            error: "HTTP 503".into(),
            retry_at: at(120),
        };
        f.store.finish_alert(&id, &retry, at(31)).await.unwrap();
        assert!(f.store.claim_alerts(at(119), lease, 10).await.unwrap().is_empty());
        let third = f.store.claim_alerts(at(120), lease, 10).await.unwrap();
        assert_eq!((third.len(), third[0].attempts), (1, 1), "the failed attempt counted");
        f.store.finish_alert(&id, &AlertDelivery::Sent, at(121)).await.unwrap();
        assert!(f.store.claim_alerts(at(10_000), lease, 10).await.unwrap().is_empty());
        // A late answer about a delivered alert changes nothing.
        f.store.finish_alert(&id, &retry, at(122)).await.unwrap();
        assert!(f.store.claim_alerts(at(10_000), lease, 10).await.unwrap().is_empty());

        // Given up: never claimed again.
        record(
            &f.store,
            report("m1", &fingerprint("M"), Severity::Error, at(200)),
            &ALERTS,
        )
        .await;
        let given_up = f.store.claim_alerts(at(200), lease, 10).await.unwrap();
        assert_eq!(given_up.len(), 1);
        let gave_up = AlertDelivery::GaveUp {
            error: "HTTP 400".into(),
        };
        f.store.finish_alert(&given_up[0].id, &gave_up, at(201)).await.unwrap();
        assert!(f.store.claim_alerts(at(10_000), lease, 10).await.unwrap().is_empty());

        assert!(matches!(
            f.store.finish_alert("alr_unknown", &AlertDelivery::Sent, at(1)).await,
            Err(StoreError::NotFound("alert"))
        ));

        // Oldest first, at most `limit`.
        for (i, name) in ["X", "Y", "Z"].into_iter().enumerate() {
            let at_ = at(300 + i as u64);
            record(
                &f.store,
                report(&format!("x{i}"), &fingerprint(name), Severity::Error, at_),
                &ALERTS,
            )
            .await;
        }
        let oldest = f.store.claim_alerts(at(400), lease, 2).await.unwrap();
        assert_eq!(
            oldest.iter().map(|a| a.created_at).collect::<Vec<_>>(),
            [at(300), at(301)]
        );
        let rest = f.store.claim_alerts(at(400), lease, 2).await.unwrap();
        assert_eq!(rest.iter().map(|a| a.created_at).collect::<Vec<_>>(), [at(302)]);
    });

    both_engines!(
        pruning_removes_old_and_excess_occurrences_and_empty_groups,
        |engine| async move {
            let f = fixture(engine, &[]).await;
            let off = AlertPolicy::OFF;
            // A: five occurrences ten seconds apart; its alert was delivered.
            let group_a = record(&f.store, report("a0", &fingerprint("A"), Severity::Error, T0), &ALERTS)
                .await
                .group_id;
            let rest: Vec<_> = (1..5)
                .map(|i| report(&format!("a{i}"), &fingerprint("A"), Severity::Error, at(i * 10)))
                .collect();
            f.store.record_errors(&rest, &off).await.unwrap();
            // B: one old occurrence; its alert is still pending.
            let group_b = record(&f.store, report("b0", &fingerprint("B"), Severity::Error, T0), &ALERTS)
                .await
                .group_id;
            // C: three recent occurrences received at one instant.
            let same: Vec<_> = (1..=3)
                .map(|i| report(&format!("c{i}"), &fingerprint("C"), Severity::Error, at(50)))
                .collect();
            let group_c = f.store.record_errors(&same, &off).await.unwrap()[0].group_id.clone();
            // D: an old and a recent occurrence; its alert was given up on.
            let group_d = record(
                &f.store,
                report("d0", &fingerprint("D"), Severity::Error, at(10)),
                &ALERTS,
            )
            .await
            .group_id;
            record(&f.store, report("d1", &fingerprint("D"), Severity::Error, at(20)), &off).await;
            // E: an old and a recent occurrence; its alert is still pending.
            let group_e = record(&f.store, report("e0", &fingerprint("E"), Severity::Error, T0), &ALERTS)
                .await
                .group_id;
            record(&f.store, report("e1", &fingerprint("E"), Severity::Error, at(20)), &off).await;

            for alert in f.store.claim_alerts(at(20), 1_000, 10).await.unwrap() {
                if alert.group.id == group_a {
                    f.store
                        .finish_alert(&alert.id, &AlertDelivery::Sent, at(21))
                        .await
                        .unwrap();
                } else if alert.group.id == group_d {
                    let gave_up = AlertDelivery::GaveUp {
                        error: "HTTP 400".into(),
                    };
                    f.store.finish_alert(&alert.id, &gave_up, at(21)).await.unwrap();
                }
            }

            let pruned = f.store.prune_errors(at(15), 2).await.unwrap();
            assert_eq!(
                pruned,
                Pruned {
                    // a0, a1, b0, d0, e0 by age; a2 and c1 beyond the cap.
                    events: 7,
                    groups: 1,
                    // A's delivered and D's abandoned alerts; B's with its group.
                    alerts: 3,
                }
            );
            assert_eq!(event_ids(&f.store, &group_a).await, ["a4", "a3"]);
            assert_eq!(event_ids(&f.store, &group_c).await, ["c3", "c2"], "ties go by event id");
            assert_eq!(event_ids(&f.store, &group_d).await, ["d1"]);
            assert_eq!(event_ids(&f.store, &group_e).await, ["e1"]);
            assert!(matches!(
                f.store.get_error_group(&group_b, 0).await,
                Err(StoreError::NotFound(_))
            ));
            assert_eq!(
                f.store.get_error_group(&group_a, 0).await.unwrap().0.count,
                5,
                "the count is of occurrences seen, not kept"
            );
            let pending = f.store.claim_alerts(at(100), 1_000, 10).await.unwrap();
            assert_eq!(
                pending.iter().map(|a| &a.group.id).collect::<Vec<_>>(),
                [&group_e],
                "a pending alert of a kept group stays"
            );
            assert_eq!(f.store.prune_errors(at(15), 2).await.unwrap(), Pruned::default());

            // Recently seen groups stay even with no occurrence kept; later they go.
            let emptied = f.store.prune_errors(at(15), 0).await.unwrap();
            assert_eq!(
                emptied,
                Pruned {
                    events: 6,
                    groups: 0,
                    alerts: 0
                }
            );
            assert_eq!(
                f.store
                    .list_error_groups(&GroupFilter::default(), 10)
                    .await
                    .unwrap()
                    .len(),
                4
            );
            let all = f.store.prune_errors(at(1_000), 0).await.unwrap();
            assert_eq!(
                all,
                Pruned {
                    events: 0,
                    groups: 4,
                    alerts: 1
                }
            );
            assert!(
                f.store
                    .list_error_groups(&GroupFilter::default(), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    );

    both_engines!(error_projects_are_numbered_by_the_database, |engine| async move {
        let f = fixture(engine, &[]).await;
        let first = f.store.get_error_project(&f.org).await.unwrap();
        assert_eq!((first.project_id, &first.organization_id), (1, &f.org));
        assert_eq!(first.public_key.len(), 32);

        let org = Organization {
            id: OrganizationId::generate(),
            name: Name::parse("Second").unwrap(),
            created_at: T0,
        };
        let key = random_hex();
        let second = f.store.create_organization(&org, &key).await.unwrap();
        assert_eq!(
            second,
            ErrorProject {
                project_id: 2,
                organization_id: org.id.clone(),
                public_key: key.clone(),
            }
        );
        let third = f
            .store
            .get_error_project(&organization(&f.store, "Third").await)
            .await
            .unwrap();
        assert_eq!(third.project_id, 3);
        assert_ne!(third.public_key, second.public_key);

        assert_eq!(f.store.find_error_project(2).await.unwrap(), Some(second.clone()));
        assert_eq!(f.store.get_error_project(&org.id).await.unwrap(), second);
        assert_eq!(f.store.find_error_project(99).await.unwrap(), None);
        assert!(matches!(
            f.store.get_error_project(&OrganizationId::generate()).await,
            Err(StoreError::NotFound("organization"))
        ));

        // Atomic: when the project cannot be stored (its key is taken), neither is the
        // organization.
        let clash = Organization {
            id: OrganizationId::generate(),
            name: Name::parse("Clash").unwrap(),
            created_at: T0,
        };
        assert!(f.store.create_organization(&clash, &key).await.is_err());
        assert!(matches!(
            f.store.get_organization(&clash.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(f.store.count_organizations().await.unwrap(), 3);
        let fourth = f
            .store
            .get_error_project(&organization(&f.store, "Fourth").await)
            .await
            .unwrap();
        assert!(fourth.project_id > third.project_id);
    });

    both_engines!(concurrent_batches_count_exactly, |engine| async move {
        let f = fixture(engine, &[]).await;
        let groups = [fingerprint("G0"), fingerprint("G1"), fingerprint("G2")];
        let (tasks, batches, per_batch) = (8, 10, 12);
        let recorders = (0..tasks).map(|task| {
            let (store, groups) = (f.store.clone(), groups.clone());
            tokio::spawn(async move {
                let mut recorded = Vec::new();
                for batch in 0..batches {
                    // The groups in an order of this task's own; one report repeated within
                    // the batch, and one from the batch before.
                    let id = |batch: usize, i: usize| format!("t{task}-b{batch}-{i}");
                    let group = |batch: usize, i: usize| &groups[(i + task + batch) % groups.len()];
                    let mut reports: Vec<ErrorReport> = (0..per_batch)
                        .map(|i| report(&id(batch, i), group(batch, i), Severity::Critical, T0))
                        .collect();
                    reports.push(reports[3].clone());
                    if batch > 0 {
                        reports.push(report(&id(batch - 1, 1), group(batch - 1, 1), Severity::Critical, T0));
                    }
                    recorded.extend(store.record_errors(&reports, &ALERTS).await.unwrap());
                }
                recorded
            })
        });
        let recorded: Vec<Recorded> = futures::future::join_all(recorders)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .collect();
        assert_eq!(
            recorded.iter().filter(|r| r.duplicate).count(),
            tasks * batches + tasks * (batches - 1)
        );
        assert_eq!(recorded.iter().filter(|r| r.new_group).count(), groups.len());
        assert_eq!(
            recorded.iter().filter(|r| r.alert.is_some()).count(),
            groups.len(),
            "one alert per group: the cooldown holds across concurrent batches"
        );
        let stored = f.store.list_error_groups(&GroupFilter::default(), 10).await.unwrap();
        assert_eq!(stored.len(), groups.len());
        let expected = (tasks * batches * per_batch / groups.len()) as i64;
        assert!(
            stored.iter().all(|group| group.count == expected),
            "every occurrence counted once: {stored:?}"
        );
        for group in &stored {
            assert_eq!(event_ids(&f.store, &group.id).await.len() as i64, expected.min(100));
        }
        let alerts = f.store.claim_alerts(T0, 60_000, 10).await.unwrap();
        assert_eq!(alerts.len(), groups.len());
        assert!(alerts.iter().all(|a| a.kind == AlertKind::NewGroup));
    });
}

// ----- the operator's dashboard ---------------------------------------------------------

mod dashboard {
    use boxoffice_core::ids::OrderId;
    use boxoffice_core::payments::{IdempotencyRecord, Order, OrderPhase, OrderStatus, RecoveryPoint};

    use super::*;

    /// A hold of one ticket placed at `now`, with its order created at `now`.
    async fn order_at(f: &Fixture, key: &str, now: Timestamp) -> Order {
        let hold = f.place(&[(0, 1)], now).await.unwrap();
        let record = IdempotencyRecord {
            scope: "anonymous".into(),
            key: key.into(),
            hold_id: hold.id.clone(),
            fingerprint: "fp".into(),
            recovery_point: RecoveryPoint::Started,
            order_id: None,
            response: None,
            created_at: now,
        };
        f.store
            .begin_idempotent_request(&record, now.plus(Duration::from_secs(60)), now)
            .await
            .unwrap();
        let OrderPhase::Ready(order) = f
            .store
            .create_order_for_request("anonymous", key, &OrderId::generate(), Duration::from_secs(300), now)
            .await
            .unwrap()
        else {
            panic!("the hold is active")
        };
        order
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
}

// ----- buyer e-mail (SPEC §9) -------------------------------------------------------------

mod mail {
    use std::collections::HashSet;

    use boxoffice_core::holds::EmailAddress;
    use boxoffice_core::ids::{EmailId, OrderId};
    use boxoffice_core::mail::{EmailDelivery, EmailKind, EmailStatus, QueuedEmail};
    use boxoffice_core::payments::OrderStatus;
    use boxoffice_core::webhooks::ApplyOutcome;

    use super::*;

    const BUYER: &str = "buyer@example.com";
    const LEASE_MS: i64 = 60_000;

    /// A hold of `quantity` of ticket type 0 for `email`, with an order whose PaymentIntent
    /// is `pi`.
    async fn ordered(f: &Fixture, quantity: u32, pi: &str, email: Option<&str>, now: Timestamp) -> (Hold, OrderId) {
        let mut hold = hold(&f.event, &[(&f.ticket_types[0], quantity)], now);
        hold.customer_email = email.map(|e| EmailAddress::parse(e).unwrap());
        f.store.place_hold(&hold, now).await.unwrap();
        let order = order_for_hold(f, &hold, pi, now).await;
        (hold, order)
    }

    /// Records and applies a webhook event of `event_type` for PaymentIntent `pi`.
    async fn apply(f: &Fixture, id: &str, event_type: &str, pi: &str, now: Timestamp) -> ApplyOutcome {
        let event = webhook_event(id, event_type, pi);
        f.store.record_webhook_event(&event, true, now, now).await.unwrap();
        f.store.apply_webhook_event(id, now).await.unwrap()
    }

    /// A paid order for `email`, paid at `now`.
    async fn paid(f: &Fixture, pi: &str, email: Option<&str>, now: Timestamp) -> OrderId {
        let (_, order) = ordered(f, 1, pi, email, now).await;
        assert!(matches!(
            apply(f, &format!("evt_{pi}"), "payment_intent.succeeded", pi, now).await,
            ApplyOutcome::Applied(_)
        ));
        order
    }

    async fn emails(f: &Fixture) -> Vec<QueuedEmail> {
        f.store
            .list_emails(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(email, _)| email)
            .collect()
    }

    both_engines!(
        a_payment_queues_one_confirmation_and_a_refund_one_notice,
        |engine| async move {
            let f = fixture(engine, &[10]).await;
            assert!(emails(&f).await.is_empty());
            assert_eq!(f.store.email_counts().await.unwrap(), (0, 0, 0));

            let (_, order) = ordered(&f, 2, "pi_mail", Some(BUYER), T0).await;
            apply(&f, "evt_paid", "payment_intent.succeeded", "pi_mail", at(1)).await;
            let queued = emails(&f).await;
            assert_eq!(queued.len(), 1);
            let confirmation = &queued[0];
            assert!(confirmation.id.as_str().starts_with("eml_"));
            assert_eq!(
                (
                    &confirmation.order_id,
                    confirmation.kind,
                    confirmation.recipient.as_str(),
                    confirmation.status,
                    confirmation.attempts,
                ),
                (&order, EmailKind::Confirmation, BUYER, EmailStatus::Queued, 0)
            );
            assert_eq!(
                (
                    confirmation.next_attempt_at,
                    confirmation.created_at,
                    confirmation.sent_at
                ),
                (at(1), at(1), None)
            );
            assert_eq!(confirmation.last_error, None);

            // The same event redelivered, and another success event for the same payment.
            apply(&f, "evt_paid", "payment_intent.succeeded", "pi_mail", at(2)).await;
            apply(&f, "evt_paid_again", "payment_intent.succeeded", "pi_mail", at(2)).await;
            assert_eq!(emails(&f).await.len(), 1, "one confirmation per paid order");

            // An order without an e-mail address gets no mail.
            let silent = paid(&f, "pi_silent", None, at(3)).await;
            assert_eq!(f.store.get_order(&silent).await.unwrap().status, OrderStatus::Paid);
            assert_eq!(emails(&f).await.len(), 1);

            apply(&f, "evt_refund", "charge.refunded", "pi_mail", at(4)).await;
            apply(&f, "evt_refund_again", "charge.refunded", "pi_mail", at(5)).await;
            apply(&f, "evt_silent_refund", "charge.refunded", "pi_silent", at(5)).await;
            let queued = emails(&f).await;
            assert_eq!(
                queued
                    .iter()
                    .map(|e| (e.order_id.clone(), e.kind, e.created_at))
                    .collect::<Vec<_>>(),
                [
                    (order.clone(), EmailKind::Refund, at(4)),
                    (order.clone(), EmailKind::Confirmation, at(1))
                ],
                "newest first; one refund notice"
            );
            assert_eq!(f.store.email_counts().await.unwrap(), (2, 0, 0));
        }
    );

    both_engines!(late_payments_queue_what_happened_to_them, |engine| async move {
        let f = fixture(engine, &[1]).await;
        // Paid late, tickets still there: a confirmation.
        let (late, order) = ordered(&f, 1, "pi_lucky", Some(BUYER), T0).await;
        let now = late.expires_at.plus(Duration::from_secs(60));
        assert!(matches!(
            apply(&f, "evt_lucky", "payment_intent.succeeded", "pi_lucky", now).await,
            ApplyOutcome::Applied(_)
        ));
        let queued = emails(&f).await;
        assert_eq!(
            queued.iter().map(|e| (&e.order_id, e.kind)).collect::<Vec<_>>(),
            [(&order, EmailKind::Confirmation)]
        );

        // Paid late, tickets gone: no confirmation; a refund notice once refunded.
        let f = fixture(engine, &[1]).await;
        let (late, order) = ordered(&f, 1, "pi_late", Some(BUYER), T0).await;
        f.place(&[(0, 1)], late.expires_at.plus(Duration::from_secs(300)))
            .await
            .unwrap();
        let now = late.expires_at.plus(Duration::from_secs(301));
        assert!(matches!(
            apply(&f, "evt_late", "payment_intent.succeeded", "pi_late", now).await,
            ApplyOutcome::RefundNeeded { .. }
        ));
        assert!(emails(&f).await.is_empty(), "nothing until the refund is recorded");
        f.store.complete_late_refund("evt_late", &order, now).await.unwrap();
        f.store.complete_late_refund("evt_late", &order, now).await.unwrap();
        // Stripe then reports the refund it made.
        apply(&f, "evt_late_refund", "charge.refunded", "pi_late", now).await;
        let queued = emails(&f).await;
        assert_eq!(
            queued
                .iter()
                .map(|e| (&e.order_id, e.kind, e.recipient.as_str(), e.status))
                .collect::<Vec<_>>(),
            [(&order, EmailKind::Refund, BUYER, EmailStatus::Queued)]
        );
        let claimed = f.store.claim_emails(now, LEASE_MS, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(
            claimed[0].tickets.is_empty(),
            "a refunded late payment never had tickets"
        );
        assert_eq!(claimed[0].order.status, OrderStatus::Refunded);
    });

    both_engines!(claims_are_leased_and_every_attempt_is_recorded, |engine| async move {
        let f = fixture(engine, &[10]).await;
        let first = paid(&f, "pi_1", Some(BUYER), at(1)).await;
        let second = paid(&f, "pi_2", Some("other@example.org"), at(2)).await;
        assert!(
            f.store.claim_emails(T0, LEASE_MS, 10).await.unwrap().is_empty(),
            "not due yet"
        );

        let claimed = f.store.claim_emails(at(10), LEASE_MS, 10).await.unwrap();
        assert_eq!(
            claimed.iter().map(|m| &m.email.order_id).collect::<Vec<_>>(),
            [&first, &second],
            "oldest first"
        );
        let mail = &claimed[0];
        assert_eq!(mail.order.id, first);
        assert_eq!(mail.order.status, OrderStatus::Paid);
        assert_eq!(
            (mail.event_name.as_str(), mail.event_starts_at),
            ("Concert", at(86_400))
        );
        assert_eq!(mail.tickets.len(), 1);
        let (ticket, type_name) = &mail.tickets[0];
        assert_eq!(
            (&ticket.ticket_type_id, ticket.status.as_str(), type_name.as_str()),
            (&f.ticket_types[0], "valid", "Type 0")
        );
        assert_eq!(f.store.order_tickets(&first).await.unwrap()[0].code, ticket.code);
        assert_eq!(
            mail.email.next_attempt_at,
            at(10).plus(Duration::from_secs(60)),
            "the lease"
        );
        assert!(
            f.store.claim_emails(at(11), LEASE_MS, 10).await.unwrap().is_empty(),
            "leased to the first claimer"
        );

        let (a, b) = (claimed[0].email.id.clone(), claimed[1].email.id.clone());
        f.store
            .finish_email(&a, &EmailDelivery::Sent { reply: "250 OK".into() }, at(12))
            .await
            .unwrap();
        f.store
            .finish_email(
                &b,
                &EmailDelivery::Retry {
                    error: "421 try later".into(),
                    retry_at: at(100),
                },
                at(12),
            )
            .await
            .unwrap();
        assert!(f.store.claim_emails(at(99), LEASE_MS, 10).await.unwrap().is_empty());
        let again = f.store.claim_emails(at(100), LEASE_MS, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((&again[0].email.id, again[0].email.attempts), (&b, 1));
        assert_eq!(again[0].email.last_error.as_deref(), Some("421 try later"));
        f.store
            .finish_email(
                &b,
                &EmailDelivery::GaveUp {
                    error: "550 no such user".into(),
                },
                at(101),
            )
            .await
            .unwrap();
        assert!(f.store.claim_emails(at(10_000), LEASE_MS, 10).await.unwrap().is_empty());

        let listed = f.store.list_emails(None, 10).await.unwrap();
        assert_eq!(listed.len(), 2);
        let (failed, failed_attempts) = &listed[0];
        let (sent, sent_attempts) = &listed[1];
        assert_eq!(
            (&sent.id, sent.status, sent.attempts, sent.sent_at),
            (&a, EmailStatus::Sent, 1, Some(at(12)))
        );
        assert_eq!(
            sent_attempts
                .iter()
                .map(|t| (t.attempted_at, t.outcome.as_str(), t.reply.as_str()))
                .collect::<Vec<_>>(),
            [(at(12), "sent", "250 OK")]
        );
        assert_eq!(
            (
                &failed.id,
                failed.status,
                failed.attempts,
                failed.sent_at,
                failed.last_error.as_deref()
            ),
            (&b, EmailStatus::Failed, 2, None, Some("550 no such user"))
        );
        assert_eq!(
            failed_attempts
                .iter()
                .map(|t| (t.attempted_at, t.outcome.as_str(), t.reply.as_str()))
                .collect::<Vec<_>>(),
            [
                (at(12), "failed", "421 try later"),
                (at(101), "failed", "550 no such user")
            ]
        );

        let by_status = |status| {
            let store = f.store.clone();
            async move {
                store
                    .list_emails(Some(status), 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(e, _)| e.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(by_status(EmailStatus::Sent).await, std::slice::from_ref(&a));
        assert_eq!(by_status(EmailStatus::Failed).await, std::slice::from_ref(&b));
        assert!(by_status(EmailStatus::Queued).await.is_empty());
        let newest = f.store.list_emails(None, 1).await.unwrap();
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].0.id, b);
        assert_eq!(f.store.email_counts().await.unwrap(), (0, 1, 1));

        // A late finish by a sender whose lease ran out: the message stays as it is, the
        // attempt is recorded.
        f.store
            .finish_email(
                &a,
                &EmailDelivery::Sent {
                    reply: "250 again".into(),
                },
                at(200),
            )
            .await
            .unwrap();
        let listed = f.store.list_emails(Some(EmailStatus::Sent), 10).await.unwrap();
        assert_eq!(
            (listed[0].0.status, listed[0].0.attempts, listed[0].0.sent_at),
            (EmailStatus::Sent, 1, Some(at(12)))
        );
        assert_eq!(listed[0].1.len(), 2);
        assert!(matches!(
            f.store
                .finish_email(
                    &EmailId::generate(),
                    &EmailDelivery::Sent { reply: "x".into() },
                    at(200)
                )
                .await,
            Err(StoreError::NotFound("email"))
        ));
    });

    both_engines!(failed_emails_can_be_retried, |engine| async move {
        let f = fixture(engine, &[10]).await;
        paid(&f, "pi_1", Some(BUYER), at(1)).await;
        paid(&f, "pi_2", Some(BUYER), at(2)).await;
        let claimed = f.store.claim_emails(at(10), LEASE_MS, 10).await.unwrap();
        let (sent, failed) = (claimed[0].email.id.clone(), claimed[1].email.id.clone());
        f.store
            .finish_email(&sent, &EmailDelivery::Sent { reply: "250 OK".into() }, at(11))
            .await
            .unwrap();
        f.store
            .finish_email(
                &failed,
                &EmailDelivery::GaveUp {
                    error: "timeout".into(),
                },
                at(11),
            )
            .await
            .unwrap();

        let retried = f.store.retry_email(&failed, at(500)).await.unwrap();
        assert_eq!(
            (&retried.id, retried.status, retried.next_attempt_at, retried.attempts),
            (&failed, EmailStatus::Queued, at(500), 1)
        );
        assert_eq!(f.store.email_counts().await.unwrap(), (1, 1, 0));
        let again = f.store.claim_emails(at(500), LEASE_MS, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].email.id, failed);

        // A queued message is made due now; a sent one stays sent.
        let requeued = f.store.retry_email(&failed, at(501)).await.unwrap();
        assert_eq!(
            (requeued.status, requeued.next_attempt_at),
            (EmailStatus::Queued, at(501))
        );
        let unchanged = f.store.retry_email(&sent, at(501)).await.unwrap();
        assert_eq!((unchanged.status, unchanged.sent_at), (EmailStatus::Sent, Some(at(11))));
        assert!(matches!(
            f.store.retry_email(&EmailId::generate(), at(501)).await,
            Err(StoreError::NotFound("email"))
        ));
    });

    both_engines!(concurrent_claims_never_share_a_message, |engine| async move {
        let f = fixture(engine, &[100]).await;
        for i in 0..24 {
            paid(&f, &format!("pi_{i}"), Some(BUYER), at(i)).await;
        }
        let now = at(1_000);
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let store = f.store.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let claimed = store.claim_emails(now, LEASE_MS, 2).await.unwrap();
                        if claimed.is_empty() {
                            return mine;
                        }
                        mine.extend(claimed.into_iter().map(|m| m.email.id));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let distinct: HashSet<_> = all.iter().cloned().collect();
        assert_eq!(distinct.len(), all.len(), "no message handed to two claimers");
        assert!(f.store.claim_emails(now, LEASE_MS, 100).await.unwrap().is_empty());
        assert_eq!(all.len(), 24, "every message claimed once");
    });
}
