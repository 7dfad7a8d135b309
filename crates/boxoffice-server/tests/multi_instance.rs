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
