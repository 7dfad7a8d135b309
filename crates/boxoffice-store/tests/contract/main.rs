//! The Store contract (`boxoffice_core::store`, ARCHITECTURE.md: "one contract test suite"):
//! every method of every concept trait, run against SQLite and PostgreSQL alike. Time is
//! passed in explicitly, so expiry is tested without sleeping.
//!
//! One file per concept trait, so a new store method's contract test has an obvious home:
//! `settings` (SettingsStore), `catalog` (CatalogStore, SPEC §3), `holds` (HoldStore,
//! SPEC §4), `jobs` (JobLog), `payments` (PaymentStore, SPEC §5), `webhooks` (WebhookStore,
//! SPEC §6), `error_store` (ErrorStore, SPEC §7), `mail` (MailStore, SPEC §9). This file
//! holds the fixtures they share: a fresh store with an organization, an event and its
//! ticket types, holds on them, and an order paid through a webhook event.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod database;

mod catalog;
mod error_store;
mod holds;
mod jobs;
mod mail;
mod payments;
mod settings;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::catalog::{Capacity, Event, MaxPerOrder, TicketType};
use boxoffice_core::holds::{Hold, HoldItem, HoldStatus, Quantity};
use boxoffice_core::ids::{EventId, HoldId, OrderId, OrganizationId, TicketTypeId, random_hex};
use boxoffice_core::money::{Cents, Currency};
use boxoffice_core::organizations::{Name, Organization};
use boxoffice_core::payments::{IdempotencyRecord, Order, OrderPhase, ProviderIntent, RecoveryPoint, StoredResponse};
use boxoffice_core::webhooks::StripeEvent;
use boxoffice_core::{Store, StoreError, Timestamp};
use database::{Engine, TestDatabase};

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

/// The idempotency record an anonymous payment-intent request for `hold` starts with.
fn idempotency_record(hold: &HoldId, key: &str, fingerprint: &str, now: Timestamp) -> IdempotencyRecord {
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

/// The order for an already placed `hold`, created at `now` the way a payment-intent
/// request with `Idempotency-Key` `key` makes one (begun, then its order phase).
async fn order_for_request(f: &Fixture, hold: &Hold, key: &str, now: Timestamp) -> Order {
    f.store
        .begin_idempotent_request(
            &idempotency_record(&hold.id, key, "fp", now),
            now.plus(Duration::from_secs(60)),
            now,
        )
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

/// An order for an already placed `hold`, created the way a payment-intent request makes
/// one, with PaymentIntent `pi` recorded.
async fn order_for_hold(f: &Fixture, hold: &Hold, pi: &str, now: Timestamp) -> OrderId {
    let key = format!("key-{pi}");
    let order = order_for_request(f, hold, &key, now).await;
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
        .finish_idempotent_request("anonymous", &key, &response, Some((&order.id, &intent)), now)
        .await
        .unwrap();
    order.id
}

/// A Stripe webhook event of `event_type` for PaymentIntent `pi` (a charge of it for
/// `charge.refunded`).
fn webhook_event(id: &str, event_type: &str, pi: &str) -> StripeEvent {
    let object = if event_type == "charge.refunded" {
        serde_json::json!({ "id": "ch_1", "object": "charge", "payment_intent": pi })
    } else {
        serde_json::json!({ "id": pi, "object": "payment_intent" })
    };
    let payload = serde_json::json!({ "id": id, "type": event_type, "data": { "object": object } }).to_string();
    StripeEvent::parse(payload.as_bytes()).unwrap()
}
