//! The CatalogStore contract (SPEC §3): organizations and their API keys, events with their
//! ticket types listed newest first with cursors, nothing created under a missing parent,
//! and capacity never set below what is sold and held.

use boxoffice_core::auth::{SecretToken, StoredApiKey, mint_api_key};
use boxoffice_core::catalog::{Capacity, Event, MaxPerOrder, TicketTypeChanges};
use boxoffice_core::ids::{ApiKeyId, EventId, OrganizationId, TicketTypeId};
use boxoffice_core::money::Cents;
use boxoffice_core::organizations::Name;
use boxoffice_core::{PageRequest, StoreError};

use crate::{T0, at, event, fixture, new_ticket_type, organization};

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
