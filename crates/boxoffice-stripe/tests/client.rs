//! The Stripe client against the test double over real HTTP: every endpoint, the
//! idempotency contract, and the typed errors.

mod common;

use std::time::Duration;

use boxoffice_stripe::{PaymentIntentStatus, StripeClient, StripeConfig, StripeError};
use common::*;
use secrecy::SecretString;

#[tokio::test]
async fn create_retrieve_and_list_payment_intents() {
    let double = spawn_double(None).await;
    let client = client(&double.base, 0);

    let first = bounded(client.create_payment_intent(&params(2500, "ord_1"), "key-1"))
        .await
        .expect("create");
    assert!(first.id.starts_with("pi_"), "{}", first.id);
    assert_eq!(first.object, "payment_intent");
    assert_eq!(first.amount, 2500);
    assert_eq!(first.currency, "eur");
    assert_eq!(first.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(first.metadata.get("order_id").map(String::as_str), Some("ord_1"));
    assert_eq!(first.description.as_deref(), Some("Order ord_1"));
    let secret = first.client_secret.clone().expect("client secret");
    assert!(secret.starts_with(&format!("{}_secret_", first.id)), "{secret}");
    assert!(!first.livemode);

    let again = bounded(client.retrieve_payment_intent(&first.id))
        .await
        .expect("retrieve");
    assert_eq!(again, first);

    let second = bounded(client.create_payment_intent(&params(100, "ord_2"), "key-2"))
        .await
        .expect("create");
    let third = bounded(client.create_payment_intent(&params(100, "ord_3"), "key-3"))
        .await
        .expect("create");

    let page = bounded(client.list_payment_intents(2, None)).await.expect("list");
    let ids: Vec<_> = page.data.iter().map(|pi| pi.id.as_str()).collect();
    assert_eq!(ids, [third.id.as_str(), second.id.as_str()], "newest first");
    assert!(page.has_more);
    let rest = bounded(client.list_payment_intents(10, Some(&second.id)))
        .await
        .expect("list");
    assert_eq!(
        rest.data.iter().map(|pi| pi.id.as_str()).collect::<Vec<_>>(),
        [first.id.as_str()]
    );
    assert!(!rest.has_more);

    let missing = bounded(client.retrieve_payment_intent("pi_doesnotexist"))
        .await
        .expect_err("missing");
    match missing {
        StripeError::Api { status: 404, error, .. } => assert_eq!(error.code.as_deref(), Some("resource_missing")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn confirm_with_visa_succeeds_and_refund_refunds() {
    let double = spawn_double(None).await;
    let client = client(&double.base, 0);
    let pi = bounded(client.create_payment_intent(&params(4200, "ord_visa"), "create-visa"))
        .await
        .expect("create");

    let paid = bounded(client.confirm_payment_intent(&pi.id, "pm_card_visa", "confirm-visa"))
        .await
        .expect("confirm");
    assert_eq!(paid.status, PaymentIntentStatus::Succeeded);
    assert_eq!(paid.amount_received, 4200);
    assert!(paid.latest_charge.as_deref().is_some_and(|c| c.starts_with("ch_")));
    assert!(paid.payment_method.as_deref().is_some_and(|p| p.starts_with("pm_")));

    // Confirming a succeeded intent again (another key) is a definitive error.
    let twice = bounded(client.confirm_payment_intent(&pi.id, "pm_card_visa", "confirm-again"))
        .await
        .expect_err("twice");
    assert_eq!(
        twice.api_error().and_then(|e| e.code.as_deref()),
        Some("payment_intent_unexpected_state")
    );

    let refund = bounded(client.create_refund(&pi.id, "refund-1")).await.expect("refund");
    assert!(refund.id.starts_with("re_"));
    assert_eq!(refund.amount, 4200);
    assert_eq!(refund.status.as_deref(), Some("succeeded"));
    assert_eq!(refund.payment_intent.as_deref(), Some(pi.id.as_str()));
    assert_eq!(refund.charge, paid.latest_charge);

    let again = bounded(client.create_refund(&pi.id, "refund-2"))
        .await
        .expect_err("already refunded");
    assert_eq!(
        again.api_error().and_then(|e| e.code.as_deref()),
        Some("charge_already_refunded")
    );

    let events = bounded(client.list_events(10, None, None)).await.expect("events");
    let types: Vec<_> = events.data.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["refund.created", "charge.refunded", "payment_intent.succeeded"]);
    let charge = events.data[1].charge().expect("charge.refunded carries a charge");
    assert!(charge.refunded);
    assert_eq!(charge.amount_refunded, 4200);
    assert_eq!(charge.payment_intent.as_deref(), Some(pi.id.as_str()));
    let succeeded = events.data[2].payment_intent().expect("payment intent");
    assert_eq!(succeeded.status, PaymentIntentStatus::Succeeded);
    assert_eq!(
        events.data[2]
            .request
            .as_ref()
            .and_then(|r| r.idempotency_key.as_deref()),
        Some("confirm-visa")
    );
    assert_eq!(events.data[0].refund().expect("refund").id, refund.id);
}

#[tokio::test]
async fn declined_card_is_a_typed_card_error() {
    let double = spawn_double(None).await;
    let client = client(&double.base, 0);
    let pi = bounded(client.create_payment_intent(&params(999, "ord_decl"), "create-decl"))
        .await
        .expect("create");

    let declined = bounded(client.confirm_payment_intent(&pi.id, "pm_card_chargeDeclined", "confirm-decl"))
        .await
        .expect_err("declined");
    assert!(!declined.is_indeterminate());
    let card = declined.card_error().expect("card error");
    assert_eq!(card.code.as_deref(), Some("card_declined"));
    assert_eq!(card.decline_code.as_deref(), Some("generic_decline"));
    assert_eq!(card.payment_intent_id.as_deref(), Some(pi.id.as_str()));
    assert!(matches!(declined, StripeError::Api { status: 402, .. }));

    let after = bounded(client.retrieve_payment_intent(&pi.id)).await.expect("retrieve");
    assert_eq!(after.status, PaymentIntentStatus::RequiresPaymentMethod);
    let last = after.last_payment_error.expect("last_payment_error");
    assert_eq!(last.decline_code.as_deref(), Some("generic_decline"));

    // The same key replays the decline; a new key can pay with another card.
    let replay = bounded(client.confirm_payment_intent(&pi.id, "pm_card_chargeDeclined", "confirm-decl"))
        .await
        .expect_err("replayed decline");
    assert_eq!(
        replay.card_error().map(|e| e.decline_code.clone()),
        Some(Some("generic_decline".into()))
    );
    let paid = bounded(client.confirm_payment_intent(&pi.id, "pm_card_visa", "confirm-decl-2"))
        .await
        .expect("retry");
    assert_eq!(paid.status, PaymentIntentStatus::Succeeded);

    let events = bounded(client.list_events(10, None, None)).await.expect("events");
    let types: Vec<_> = events.data.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["payment_intent.succeeded", "payment_intent.payment_failed"]);
}

#[tokio::test]
async fn same_key_same_request_is_replayed_once() {
    let double = spawn_double(None).await;
    let client = client(&double.base, 0);
    let first = bounded(client.create_payment_intent(&params(700, "ord_r"), "replay-key"))
        .await
        .expect("create");
    let second = bounded(client.create_payment_intent(&params(700, "ord_r"), "replay-key"))
        .await
        .expect("replay");
    assert_eq!(first, second);

    // The header is visible on the wire.
    let response = bounded(
        reqwest::Client::new()
            .post(format!("{}/v1/payment_intents", double.base))
            .bearer_auth(API_KEY)
            .header("Idempotency-Key", "replay-key")
            .header("Content-Type", "application/x-www-form-urlencoded")
            // Same parameters, another order: Stripe compares parameters, not bytes.
            .body("metadata%5Border_id%5D=ord_r&description=Order+ord_r&currency=eur&amount=700")
            .send(),
    )
    .await
    .expect("raw replay");
    assert_eq!(
        response.headers().get("Idempotent-Replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["id"], first.id.as_str());

    let list = bounded(client.list_payment_intents(100, None)).await.expect("list");
    assert_eq!(list.data.len(), 1);
}

#[tokio::test]
async fn same_key_other_request_is_an_idempotency_error() {
    let double = spawn_double(None).await;
    let client = client(&double.base, 3);
    let pi = bounded(client.create_payment_intent(&params(700, "ord_m"), "mismatch"))
        .await
        .expect("create");
    let other = bounded(client.create_payment_intent(&params(701, "ord_m"), "mismatch"))
        .await
        .expect_err("mismatch");
    match &other {
        StripeError::Idempotency { status: 400, error, .. } => assert_eq!(error.error_type, "idempotency_error"),
        other => panic!("unexpected {other:?}"),
    }
    // Another endpoint with the same key is a mismatch too.
    let confirm = bounded(client.confirm_payment_intent(&pi.id, "pm_card_visa", "mismatch"))
        .await
        .expect_err("endpoint");
    assert!(matches!(confirm, StripeError::Idempotency { .. }), "{confirm:?}");
}

#[tokio::test]
async fn concurrent_duplicate_gets_409_in_use() {
    let double = spawn_double(None).await;
    set_fault(&double.base, "delay", 1, Some(1500)).await;
    let slow_client = client(&double.base, 0);
    let slow = tokio::spawn(async move {
        slow_client
            .create_payment_intent(&params(500, "ord_c"), "in-flight")
            .await
    });
    // Let the slow request claim the key.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let duplicate = bounded(client(&double.base, 0).create_payment_intent(&params(500, "ord_c"), "in-flight"))
        .await
        .expect_err("in use");
    match &duplicate {
        StripeError::Indeterminate {
            reason:
                boxoffice_stripe::IndeterminateReason::Status {
                    status: 409,
                    error: Some(error),
                },
            ..
        } => {
            assert_eq!(error.error_type, "idempotency_error");
            assert_eq!(error.code.as_deref(), Some("idempotency_key_in_use"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let first = bounded(slow).await.expect("join").expect("slow create");
    // Once the first finished, the duplicate is a replay.
    let replay = bounded(client(&double.base, 0).create_payment_intent(&params(500, "ord_c"), "in-flight"))
        .await
        .expect("replay");
    assert_eq!(replay.id, first.id);
    // A retrying client rides out the 409 and gets the replay.
    set_fault(&double.base, "delay", 1, Some(600)).await;
    let retrying = client(&double.base, 10);
    let racer = tokio::spawn({
        let c = client(&double.base, 0);
        async move { c.create_payment_intent(&params(501, "ord_d"), "in-flight-2").await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let won = bounded(retrying.create_payment_intent(&params(501, "ord_d"), "in-flight-2"))
        .await
        .expect("retried");
    let raced = bounded(racer).await.expect("join").expect("racer");
    assert_eq!(won.id, raced.id);
    assert_eq!(
        bounded(client(&double.base, 0).list_payment_intents(100, None))
            .await
            .expect("list")
            .data
            .len(),
        2
    );
}

#[tokio::test]
async fn wrong_api_key_is_401() {
    let double = spawn_double(None).await;
    let mut config = StripeConfig::new(&double.base, SecretString::from("sk_test_wrong"));
    config.max_retries = 0;
    let client = StripeClient::new(config).expect("client");
    let error = bounded(client.list_events(1, None, None)).await.expect_err("401");
    match error {
        StripeError::Api { status: 401, error, .. } => assert_eq!(error.error_type, "invalid_request_error"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn events_filter_by_created_and_paginate() {
    let double = spawn_double(None).await;
    let client = client(&double.base, 0);
    for n in 0..3 {
        let pi = bounded(client.create_payment_intent(&params(100, &format!("o{n}")), &format!("c{n}")))
            .await
            .expect("create");
        bounded(client.confirm_payment_intent(&pi.id, "pm_card_visa", &format!("f{n}")))
            .await
            .expect("confirm");
    }
    let all = bounded(client.list_events(100, None, None)).await.expect("events");
    assert_eq!(all.data.len(), 3);
    let page = bounded(client.list_events(2, None, None)).await.expect("page");
    assert!(page.has_more);
    let next = bounded(client.list_events(2, Some(&page.data[1].id), None))
        .await
        .expect("next");
    assert_eq!(next.data.len(), 1);
    assert_eq!(next.data[0].id, all.data[2].id);
    let future = all.data[0].created + 3600;
    assert!(
        bounded(client.list_events(10, None, Some(future)))
            .await
            .expect("none")
            .data
            .is_empty()
    );
    let past = all.data[2].created;
    assert_eq!(
        bounded(client.list_events(10, None, Some(past)))
            .await
            .expect("all")
            .data
            .len(),
        3
    );
}

#[tokio::test]
async fn double_nested_under_a_prefix_works_with_the_client() {
    let fake =
        boxoffice_stripe::FakeStripe::new(boxoffice_stripe::FakeStripeConfig::new(API_KEY, WEBHOOK_SECRET, None));
    let app: axum::Router = axum::Router::new().nest("/_fake-stripe", fake.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/_fake-stripe", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = client(&base, 0);
    let pi = bounded(client.create_payment_intent(&params(100, "nested"), "nested"))
        .await
        .expect("create");
    assert_eq!(
        bounded(client.retrieve_payment_intent(&pi.id)).await.expect("get").id,
        pi.id
    );
    set_fault(&base, "http_500", 1, None).await;
    assert!(
        bounded(client.list_events(1, None, None))
            .await
            .expect_err("500")
            .is_indeterminate()
    );
}

#[tokio::test]
async fn unreachable_stripe_is_indeterminate() {
    // A port nobody listens on: bind, take the port, close.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let error = bounded(client(&base, 1).create_payment_intent(&params(100, "x"), "k"))
        .await
        .expect_err("down");
    match error {
        StripeError::Indeterminate { attempts: 2, reason } => {
            assert!(
                matches!(reason, boxoffice_stripe::IndeterminateReason::Connection(_)),
                "{reason:?}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
}
