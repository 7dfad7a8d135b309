//! The double's webhook deliveries into a small receiver started by each test: signed so
//! that `webhook::verify` accepts them, retried with backoff, and bent by the webhook faults.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use boxoffice_stripe::webhook;
use boxoffice_stripe::{Event, StripeClient};
use common::*;

#[derive(Clone, Default)]
struct Receiver {
    /// Verified events, in arrival order.
    events: Arc<Mutex<Vec<Event>>>,
    /// Deliveries whose signature did not verify.
    rejected: Arc<Mutex<usize>>,
    /// Answer 500 to this many deliveries first.
    fail_first: Arc<Mutex<usize>>,
}

impl Receiver {
    fn event_types(&self) -> Vec<String> {
        self.events
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.event_type.clone())
            .collect()
    }

    fn event_ids(&self) -> Vec<String> {
        self.events.lock().expect("lock").iter().map(|e| e.id.clone()).collect()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get(webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    if webhook::verify(&body, signature, &["whsec_not_this_one", WEBHOOK_SECRET], now).is_err() {
        *receiver.rejected.lock().expect("lock") += 1;
        return StatusCode::BAD_REQUEST;
    }
    {
        let mut fail = receiver.fail_first.lock().expect("lock");
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let event: Event = serde_json::from_slice(&body).expect("event JSON");
    receiver.events.lock().expect("lock").push(event);
    StatusCode::OK
}

async fn spawn_receiver(receiver: Receiver) -> String {
    let app = axum::Router::new()
        .route("/webhooks/stripe", axum::routing::post(receive))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/webhooks/stripe", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Creates and confirms `n` PaymentIntents with visa: `n` `payment_intent.succeeded` events.
async fn pay(client: &StripeClient, n: usize, tag: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let pi = bounded(client.create_payment_intent(&params(100, &format!("{tag}{i}")), &format!("{tag}-c{i}")))
            .await
            .expect("create");
        bounded(client.confirm_payment_intent(&pi.id, "pm_card_visa", &format!("{tag}-f{i}")))
            .await
            .expect("confirm");
        ids.push(pi.id);
    }
    ids
}

async fn listed_event_ids_oldest_first(client: &StripeClient) -> Vec<String> {
    let mut ids: Vec<String> = bounded(client.list_events(100, None, None))
        .await
        .expect("events")
        .data
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.reverse();
    ids
}

#[tokio::test]
async fn deliveries_are_signed_and_in_order() {
    let receiver = Receiver::default();
    let double = spawn_double(Some(spawn_receiver(receiver.clone()).await)).await;
    let client = client(&double.base, 0);
    let ids = pay(&client, 2, "order").await;
    let pi = bounded(client.create_payment_intent(&params(100, "declined"), "declined-c"))
        .await
        .expect("create");
    let _ = bounded(client.confirm_payment_intent(&pi.id, "pm_card_chargeDeclined", "declined-f")).await;
    bounded(client.create_refund(&ids[0], "refund")).await.expect("refund");

    let expected = listed_event_ids_oldest_first(&client).await;
    assert_eq!(expected.len(), 5);
    eventually(|| (receiver.event_ids().len() >= 5).then_some(())).await;
    assert_eq!(receiver.event_ids(), expected);
    assert_eq!(
        receiver.event_types(),
        [
            "payment_intent.succeeded",
            "payment_intent.succeeded",
            "payment_intent.payment_failed",
            "charge.refunded",
            "refund.created"
        ]
    );
    assert_eq!(*receiver.rejected.lock().expect("lock"), 0);
    let refunded = receiver.events.lock().expect("lock")[3].charge().expect("charge");
    assert!(refunded.refunded);
    assert_eq!(refunded.payment_intent.as_deref(), Some(ids[0].as_str()));
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff() {
    let receiver = Receiver::default();
    *receiver.fail_first.lock().expect("lock") = 3;
    let double = spawn_double(Some(spawn_receiver(receiver.clone()).await)).await;
    let client = client(&double.base, 0);
    pay(&client, 2, "retry").await;

    eventually(|| (receiver.event_ids().len() >= 2).then_some(())).await;
    assert_eq!(
        receiver.event_ids(),
        listed_event_ids_oldest_first(&client).await,
        "order kept across retries"
    );
    let attempts = double.fake.delivery_attempts();
    let first: Vec<_> = attempts
        .iter()
        .filter(|a| a.event_id == receiver.event_ids()[0])
        .collect();
    assert_eq!(first.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(
        first.iter().map(|a| a.status).collect::<Vec<_>>(),
        [Some(500), Some(500), Some(500), Some(200)]
    );
    assert!(first[3].delivered);
}

#[tokio::test]
async fn deliveries_to_a_receiver_that_is_down_are_retried() {
    // Reserve a port, start the receiver on it only after the first attempts failed.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let double = spawn_double(Some(format!("http://{addr}/webhooks/stripe"))).await;
    pay(&client(&double.base, 0), 1, "down").await;
    eventually(|| (double.fake.delivery_attempts().len() >= 2).then_some(())).await;
    assert!(
        double
            .fake
            .delivery_attempts()
            .iter()
            .all(|a| a.status.is_none() && a.error.is_some())
    );

    let receiver = Receiver::default();
    let app = axum::Router::new()
        .route("/webhooks/stripe", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    tokio::spawn(async move { axum::serve(listener, app).await });
    eventually(|| (!receiver.event_ids().is_empty()).then_some(())).await;
}

#[tokio::test]
async fn duplicate_webhooks_fault_sends_twice() {
    let receiver = Receiver::default();
    let double = spawn_double(Some(spawn_receiver(receiver.clone()).await)).await;
    set_fault(&double.base, "duplicate_webhooks", 1, None).await;
    let client = client(&double.base, 0);
    pay(&client, 2, "dup").await;
    let listed = listed_event_ids_oldest_first(&client).await;
    eventually(|| (receiver.event_ids().len() >= 3).then_some(())).await;
    assert_eq!(
        receiver.event_ids(),
        [listed[0].clone(), listed[0].clone(), listed[1].clone()]
    );
}

#[tokio::test]
async fn reorder_webhooks_fault_reverses_the_next_deliveries() {
    let receiver = Receiver::default();
    let double = spawn_double(Some(spawn_receiver(receiver.clone()).await)).await;
    set_fault(&double.base, "reorder_webhooks", 3, None).await;
    let client = client(&double.base, 0);
    pay(&client, 4, "reorder").await;
    let listed = listed_event_ids_oldest_first(&client).await;
    eventually(|| (receiver.event_ids().len() >= 4).then_some(())).await;
    assert_eq!(
        receiver.event_ids(),
        [
            listed[2].clone(),
            listed[1].clone(),
            listed[0].clone(),
            listed[3].clone()
        ]
    );
}

#[tokio::test]
async fn drop_webhooks_fault_loses_deliveries_but_not_events() {
    let receiver = Receiver::default();
    let double = spawn_double(Some(spawn_receiver(receiver.clone()).await)).await;
    set_fault(&double.base, "drop_webhooks", 2, None).await;
    let client = client(&double.base, 0);
    pay(&client, 3, "lost").await;
    let listed = listed_event_ids_oldest_first(&client).await;
    assert_eq!(listed.len(), 3, "dropped events stay listable for reconciliation");
    eventually(|| (!receiver.event_ids().is_empty()).then_some(())).await;
    // Give a wrongly sent delivery time to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.event_ids(), [listed[2].clone()]);
    let dropped: Vec<_> = double
        .fake
        .delivery_attempts()
        .into_iter()
        .filter(|a| a.dropped)
        .collect();
    assert_eq!(dropped.len(), 2);

    // The control listing shows the same.
    let listing: serde_json::Value = reqwest::get(format!("{}/_control/webhooks", double.base))
        .await
        .expect("listing")
        .json()
        .await
        .expect("json");
    assert_eq!(listing["attempts"].as_array().map(Vec::len), Some(3));
}
