//! Several boxoffice instances on one PostgreSQL database: no oversell, no double sweep.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::ManualClock;
use common::{AppOptions, Engine, OPERATOR_TOKEN, TestDatabase, spawn_app};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_racing_for_one_ticket_type_never_oversell() {
    let db = TestDatabase::new(Engine::Postgres).await;
    let first = Arc::new(spawn_app(&db, AppOptions::default()).await);
    let second = Arc::new(spawn_app(&db, AppOptions::default()).await);
    let org = first.create_organization("Org").await;
    let (event, tts) = first.create_event(&org, &[("GA", 100, 100), ("VIP", 100, 30)]).await;
    let attempts = (0..400).map(|i| {
        let app = if i % 2 == 0 { first.clone() } else { second.clone() };
        let (event, ga, vip) = (event.clone(), tts[0].clone(), tts[1].clone());
        tokio::spawn(async move {
            if i % 4 == 3 {
                app.hold(&event, &[(&ga, 1), (&vip, 1)]).await
            } else {
                app.hold(&event, &[(&ga, 1)]).await
            }
        })
    });
    let answers: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let granted = answers.iter().filter(|a| a.status == 201).count();
    assert!(
        answers
            .iter()
            .all(|a| a.status == 201 || (a.status == 409 && a.code() == "sold_out"))
    );
    assert_eq!(granted, 100, "GA's capacity, across both instances");
    let vip_granted = answers
        .iter()
        .filter(|a| a.status == 201 && a.body["items"].as_array().unwrap().len() == 2)
        .count();
    assert_eq!(first.inventory(&event, &tts[0]).await, (0, 100, 0));
    assert_eq!(second.inventory(&event, &tts[1]).await.1, vip_granted as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sweeping_at_once_expire_each_hold_exactly_once() {
    let db = TestDatabase::new(Engine::Postgres).await;
    let clock = ManualClock::starting_now();
    let options = || AppOptions {
        clock: Some(clock.clone()),
        ..Default::default()
    };
    let first = Arc::new(spawn_app(&db, options()).await);
    let second = Arc::new(spawn_app(&db, options()).await);
    let org = first.create_organization("Org").await;
    let (event, tts) = first
        .create_event_with(&org, json!({ "hold_seconds": 60 }), &[("GA", 100, 5000)])
        .await;
    for chunk in 0..10 {
        let holds = (0..30).map(|_| {
            let (app, event, tt) = (
                if chunk % 2 == 0 { first.clone() } else { second.clone() },
                event.clone(),
                tts[0].clone(),
            );
            tokio::spawn(async move { app.hold(&event, &[(&tt, 2)]).await.status })
        });
        assert!(
            futures::future::join_all(holds)
                .await
                .into_iter()
                .all(|s| s.unwrap() == 201)
        );
    }
    clock.advance(Duration::from_secs(61));
    let sweeps = (0..6).map(|i| {
        let app = if i % 2 == 0 { first.clone() } else { second.clone() };
        tokio::spawn(async move {
            app.post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/expire-holds/run", json!({}))
                .await
        })
    });
    let runs: Vec<_> = futures::future::join_all(sweeps)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(runs.iter().all(|r| r.status == 200));
    let total: i64 = runs.iter().map(|r| r.body["affected"].as_i64().unwrap()).sum();
    assert_eq!(total, 300, "each of the 300 holds expired exactly once");
    let stats = second.get_as(OPERATOR_TOKEN, "/api/v1/admin/stats/reservations").await;
    assert_eq!(
        (stats.body["active"].as_i64(), stats.body["expired"].as_i64()),
        (Some(0), Some(300))
    );
    let tt = first
        .store
        .get_ticket_type(
            &boxoffice_core::ids::TicketTypeId::parse(&tts[0]).unwrap(),
            clock_now(&clock),
        )
        .await
        .unwrap();
    assert_eq!(tt.held, 0, "the counter was released exactly once per hold");
}

fn clock_now(clock: &ManualClock) -> boxoffice_core::Timestamp {
    boxoffice_core::Clock::now(clock)
}

/// The checkout page of one instance confirms a payment at Stripe while the page's leave
/// beacon (the buyer switched tabs) reaches another instance: the hold is kept, because
/// the mark that a confirmation is under way is in the database, not in the memory of the
/// instance confirming (SPEC §12). The payment then completes the order, never a late
/// refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leave_beacon_at_another_instance_keeps_a_hold_whose_payment_is_being_confirmed() {
    const STRIPE_KEY: &str = "sk_test_multi_instance_checkout";
    let db = TestDatabase::new(Engine::Postgres).await;
    let first = spawn_app(
        &db,
        AppOptions {
            stripe_secret_key: Some(STRIPE_KEY.into()),
            ..Default::default()
        },
    )
    .await;
    // The second instance talks to the first one's Stripe double: one Stripe account.
    let second = spawn_app(
        &db,
        AppOptions {
            stripe_api_base: Some(format!("{}/_fake-stripe", first.base)),
            stripe_secret_key: Some(STRIPE_KEY.into()),
            ..Default::default()
        },
    )
    .await;
    let org = first.create_organization("Org").await;
    let (event, tts) = first.create_event(&org, &[("GA", 2_500, 10)]).await;
    let held = first.hold(&event, &[(&tts[0], 1)]).await;
    assert_eq!(held.status, 201, "{}", held.body);
    let hold = held.body["id"].as_str().unwrap().to_owned();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let pay = |card: &'static str| {
        let request = browser
            .post(first.url(&format!("/checkout/{hold}/pay")))
            .header("accept", "text/html")
            .form(&[("card_number", card)]);
        async move { request.send().await.unwrap().status().as_u16() }
    };

    // A declined card first: the order and its PaymentIntent exist, nothing is under way.
    assert_eq!(pay("4000000000000002").await, 402);
    // The next two requests to Stripe, the page's look at the PaymentIntent and the
    // confirmation of the good card, take seconds each.
    let armed = first
        .post(
            "/_fake-stripe/_control/faults",
            json!({ "fault": "delay", "count": 2, "delay_ms": 3_000 }),
        )
        .await;
    assert!(armed.status < 300, "{}", armed.body);
    let paying = tokio::spawn(pay("4242424242424242"));

    // Once the first instance has started confirming, the buyer leaves, heard by the second.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let mut marked = false;
    for _ in 0..300 {
        let until: Option<i64> = sqlx::query_scalar("SELECT confirming_until FROM orders")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if until.is_some() {
            marked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(marked, "the first instance marks the order as being confirmed");
    let left = browser
        .post(second.url(&format!("/checkout/{hold}/leave")))
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 204);
    let status = second.get(&format!("/api/v1/reservations/{hold}")).await;
    assert_eq!(status.body["status"], "active", "{}", status.body);

    assert_eq!(paying.await.unwrap(), 303, "the good card pays");
    let mut paid = false;
    for _ in 0..100 {
        let order: Option<String> = sqlx::query_scalar("SELECT status FROM orders")
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        if order.as_deref() == Some("paid") {
            paid = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(paid, "the order is paid once the webhook arrives");
    assert_eq!(
        first.inventory(&event, &tts[0]).await,
        (1, 0, 9),
        "sold once, nothing held"
    );
    let hold_now = second.get(&format!("/api/v1/reservations/{hold}")).await;
    assert_eq!(hold_now.body["status"], "completed");
    let mark: Option<i64> = sqlx::query_scalar("SELECT confirming_until FROM orders")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mark, None, "the mark is cleared when the confirmation ends");
}
