//! Holds over HTTP, on both engines: the oversell races, exact expiry, bad input, and the
//! sweeper's endpoints.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::ManualClock;
use boxoffice_core::service::HoldBatching;
use common::{AppOptions, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use serde_json::{Value, json};

/// The `hold_batch_size` histogram from `/metrics`: (transactions, hold requests in them).
async fn hold_batches(app: &TestApp) -> (u64, u64) {
    let metrics = app.metrics().await;
    let read = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map_or(0, |value| value as u64)
    };
    (
        read("boxoffice_hold_batch_size_count "),
        read("boxoffice_hold_batch_size_sum "),
    )
}

/// An app whose idle events wait a second for a batch to fill, so requests sent together
/// share one transaction (two, if the machine stalls for most of that second).
async fn app_batching_for_a_second(db: &TestDatabase) -> TestApp {
    let app = spawn_app(
        db,
        AppOptions {
            hold_batching: HoldBatching {
                max_batch: 128,
                window: Duration::from_secs(1),
            },
            ..Default::default()
        },
    )
    .await;
    // Open the connections a burst of requests will use, so the burst itself is quick.
    let warm = (0..20).map(|_| app.client.get(app.url("/healthz")).send());
    for answer in futures::future::join_all(warm).await {
        answer.unwrap();
    }
    app
}

async fn app_with_clock(engine: common::Engine) -> (TestApp, TestDatabase) {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(
        &db,
        AppOptions {
            clock: Some(ManualClock::starting_now()),
            ..Default::default()
        },
    )
    .await;
    (app, db)
}

both_engines!(five_hundred_buyers_for_one_hundred_tickets, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = Arc::new(spawn_app(&db, AppOptions::default()).await);
    let org = app.create_organization("Org").await;
    let (event, tts) = app.create_event(&org, &[("GA", 2_500, 100)]).await;
    let attempts = (0..500).map(|_| {
        let (app, event, tt) = (app.clone(), event.clone(), tts[0].clone());
        tokio::spawn(async move { app.hold(&event, &[(&tt, 1)]).await })
    });
    let answers: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let created: Vec<&Value> = answers.iter().filter(|a| a.status == 201).map(|a| &a.body).collect();
    let sold_out = answers
        .iter()
        .filter(|a| a.status == 409 && a.code() == "sold_out")
        .count();
    assert_eq!(created.len(), 100, "exactly the capacity is held");
    assert_eq!(sold_out, 400, "every other buyer is told sold_out");
    let ids: HashSet<_> = created.iter().map(|body| body["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 100);
    assert_eq!(app.inventory(&event, &tts[0]).await, (0, 100, 0));
    let stats = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/stats/reservations").await;
    assert_eq!(stats.body["active"], 100);
    let message = answers.iter().find(|a| a.status == 409).unwrap().body["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("GA"), "sold_out names the ticket type: {message}");
    let (batches, requests) = hold_batches(&app).await;
    assert_eq!(requests, 500, "every request went through a batch");
    assert!(
        batches < requests,
        "concurrent requests shared transactions: {requests} requests in {batches} batches"
    );
});

both_engines!(
    one_batch_mixing_fitting_and_non_fitting_requests_answers_each_correctly,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = Arc::new(app_batching_for_a_second(&db).await);
        let org = app.create_organization("Org").await;
        let (event, tts) = app.create_event(&org, &[("GA", 1_000, 10), ("VIP", 5_000, 2)]).await;
        let (ga, vip) = (tts[0].clone(), tts[1].clone());
        // 25 tickets asked of GA's 10 and 7 of VIP's 2: pairs, singles, all-or-nothing pairs
        // of GA + VIP, and one request bigger than the whole of VIP.
        let requests: Vec<Vec<(String, i64)>> = (0..16)
            .map(|i| match i % 4 {
                0 => vec![(ga.clone(), 2)],
                1 => vec![(ga.clone(), 1)],
                2 => vec![(ga.clone(), 1), (vip.clone(), 1)],
                _ if i == 15 => vec![(vip.clone(), 3)],
                _ => vec![(ga.clone(), 3)],
            })
            .collect();
        let attempts = requests.iter().cloned().map(|items| {
            let (app, event) = (app.clone(), event.clone());
            tokio::spawn(async move {
                let items: Vec<(&str, i64)> = items.iter().map(|(id, q)| (id.as_str(), *q)).collect();
                app.hold(&event, &items).await
            })
        });
        let answers: Vec<_> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let (batches, batched) = hold_batches(&app).await;
        assert_eq!(batched, 16);
        assert!(batches <= 2, "the sixteen shared transactions: {batches} batches");
        let (mut held_ga, mut held_vip, mut granted) = (0, 0, 0);
        for (asked, answer) in requests.iter().zip(&answers) {
            match answer.status {
                201 => {
                    granted += 1;
                    let got: Vec<(String, i64)> = answer.body["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|item| {
                            (
                                item["ticket_type_id"].as_str().unwrap().to_owned(),
                                item["quantity"].as_i64().unwrap(),
                            )
                        })
                        .collect();
                    let mut expected = asked.clone();
                    expected.sort();
                    let mut got_sorted = got.clone();
                    got_sorted.sort();
                    assert_eq!(got_sorted, expected, "a granted hold has every item asked, whole");
                    for (id, quantity) in got {
                        if id == ga {
                            held_ga += quantity;
                        } else {
                            held_vip += quantity;
                        }
                    }
                    let read = app
                        .get(&format!("/api/v1/reservations/{}", answer.body["id"].as_str().unwrap()))
                        .await;
                    assert_eq!(read.body["status"], "active", "{}", read.body);
                }
                409 => assert_eq!(answer.code(), "sold_out", "{}", answer.body),
                other => panic!("unexpected status {other}: {}", answer.body),
            }
        }
        assert!(
            granted > 0 && granted < 16,
            "the batch mixed grants ({granted}) and refusals"
        );
        assert_eq!(answers[15].status, 409, "more than the capacity never fits");
        assert!(held_ga <= 10 && held_vip <= 2);
        assert_eq!(app.inventory(&event, &ga).await, (0, held_ga, 10 - held_ga));
        assert_eq!(app.inventory(&event, &vip).await, (0, held_vip, 2 - held_vip));
        let stats = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/stats/reservations").await;
        assert_eq!(stats.body["active"], granted, "no hold row without its grant");
        // Whatever fit in the batch's order, singles of 1 never leave GA with one free
        // ticket unused while a single was refused.
        let refused_single = requests
            .iter()
            .zip(&answers)
            .any(|(asked, answer)| asked.len() == 1 && asked[0].1 == 1 && answer.status == 409);
        assert!(
            !refused_single || held_ga == 10,
            "a single is refused only when GA is full"
        );
    }
);

both_engines!(
    a_failing_transaction_in_a_batch_fails_only_its_culprit_and_leaves_nothing_partial,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = Arc::new(app_batching_for_a_second(&db).await);
        let org = app.create_organization("Org").await;
        let (event, tts) = app.create_event(&org, &[("GA", 1_000, 100)]).await;
        // A real failure inside the batch's transaction: the database refuses one hold row.
        db.execute(match engine {
            common::Engine::Sqlite => {
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON holds
                 WHEN NEW.customer_email = 'poison@example.com'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            }
            common::Engine::Postgres => {
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
                 BEGIN
                     IF NEW.customer_email = 'poison@example.com' THEN RAISE EXCEPTION 'injected failure'; END IF;
                     RETURN NEW;
                 END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER refuse_poison BEFORE INSERT ON holds FOR EACH ROW EXECUTE FUNCTION refuse_poison();"
            }
        })
        .await;
        let attempts = (0..10).map(|i| {
            let (app, event, tt) = (app.clone(), event.clone(), tts[0].clone());
            let email = if i == 4 {
                "poison@example.com".to_owned()
            } else {
                format!("buyer{i}@example.com")
            };
            tokio::spawn(async move {
                let body = json!({
                    "event_id": event,
                    "items": [{ "ticket_type_id": tt, "quantity": 2 }],
                    "customer_email": email,
                });
                app.post("/api/v1/reservations", body).await
            })
        });
        let answers: Vec<_> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let (batches, batched) = hold_batches(&app).await;
        assert_eq!(batched, 10);
        assert!(batches <= 2, "the ten shared transactions: {batches} batches");
        for (i, answer) in answers.iter().enumerate() {
            if i == 4 {
                assert_eq!(answer.status, 500, "the culprit gets the failure: {}", answer.body);
            } else {
                assert_eq!(answer.status, 201, "a neighbour is placed: {}", answer.body);
                assert_eq!(answer.body["customer_email"], format!("buyer{i}@example.com"));
            }
        }
        assert_eq!(
            app.inventory(&event, &tts[0]).await,
            (0, 18, 82),
            "nine holds of two, nothing of the tenth"
        );
        let stats = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/stats/reservations").await;
        assert_eq!(stats.body["active"], 9);
    }
);

both_engines!(
    concurrent_multi_item_holds_never_leave_a_partial_hold,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = Arc::new(spawn_app(&db, AppOptions::default()).await);
        let org = app.create_organization("Org").await;
        let (event, tts) = app
            .create_event(&org, &[("Stalls", 1_000, 40), ("Balcony", 2_000, 25)])
            .await;
        let attempts = (0..150).map(|i| {
            let (app, event, a, b) = (app.clone(), event.clone(), tts[0].clone(), tts[1].clone());
            tokio::spawn(async move {
                match i % 3 {
                    0 => app.hold(&event, &[(&a, 1)]).await,
                    1 => app.hold(&event, &[(&b, 1)]).await,
                    _ => app.hold(&event, &[(&b, 1), (&a, 2)]).await,
                }
            })
        });
        let answers: Vec<_> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let (mut held_a, mut held_b) = (0, 0);
        for answer in &answers {
            match answer.status {
                201 => {
                    for item in answer.body["items"].as_array().unwrap() {
                        let quantity = item["quantity"].as_i64().unwrap();
                        if item["ticket_type_id"] == tts[0].as_str() {
                            held_a += quantity
                        } else {
                            held_b += quantity
                        }
                    }
                }
                409 => assert_eq!(answer.code(), "sold_out"),
                other => panic!("unexpected status {other}: {}", answer.body),
            }
        }
        let (_, server_a, _) = app.inventory(&event, &tts[0]).await;
        let (_, server_b, _) = app.inventory(&event, &tts[1]).await;
        assert_eq!(
            (server_a, server_b),
            (held_a, held_b),
            "the counters match the holds granted, item for item"
        );
        assert!(held_a <= 40 && held_b <= 25);
        assert_eq!(held_b, 25, "the smaller type sells out under this load");
    }
);

both_engines!(
    capacity_returns_the_instant_a_hold_expires_and_the_sweep_counts_it,
    |engine| async move {
        let (app, _db) = app_with_clock(engine).await;
        let org = app.create_organization("Org").await;
        let (event, tts) = app
            .create_event_with(&org, json!({ "hold_seconds": 60 }), &[("A", 100, 2), ("B", 100, 1)])
            .await;
        let first = app.hold(&event, &[(&tts[0], 2), (&tts[1], 1)]).await;
        assert_eq!(first.status, 201, "{}", first.body);
        assert_eq!(first.body["status"], "active");
        let id = first.body["id"].as_str().unwrap().to_owned();
        assert_eq!(app.hold(&event, &[(&tts[0], 1)]).await.status, 409);

        app.advance(Duration::from_secs(59));
        let read = app.get(&format!("/api/v1/reservations/{id}")).await;
        assert_eq!(
            (read.body["status"].as_str(), read.body["seconds_remaining"].as_i64()),
            (Some("active"), Some(1))
        );
        assert_eq!(app.inventory(&event, &tts[0]).await, (0, 2, 0));

        app.advance(Duration::from_secs(1));
        let read = app.get(&format!("/api/v1/reservations/{id}")).await;
        assert_eq!(
            (read.body["status"].as_str(), read.body["seconds_remaining"].as_i64()),
            (Some("expired"), Some(0))
        );
        assert_eq!(app.inventory(&event, &tts[0]).await, (0, 0, 2), "free before any sweep");
        assert_eq!(app.inventory(&event, &tts[1]).await, (0, 0, 1));

        let run = app
            .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/expire-holds/run", json!({}))
            .await;
        assert_eq!(run.status, 200, "{}", run.body);
        assert_eq!(
            (run.body["job"].as_str(), run.body["outcome"].as_str()),
            (Some("expire-holds"), Some("succeeded"))
        );
        assert_eq!(run.body["affected"], 1);
        let runs = app
            .get_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/runs?job=expire-holds&limit=5")
            .await;
        assert_eq!(runs.body["data"][0]["id"], run.body["id"]);
        assert_eq!(runs.body["has_more"], false);
        let again = app
            .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/expire-holds/run", json!({}))
            .await;
        assert_eq!(again.body["affected"], 0);
        let runs = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/runs?limit=1").await;
        assert_eq!(
            (runs.body["data"].as_array().unwrap().len(), &runs.body["has_more"]),
            (1, &json!(true))
        );
        let stats = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/stats/reservations").await;
        assert_eq!(
            (stats.body["active"].as_i64(), stats.body["expired"].as_i64()),
            (Some(0), Some(1))
        );
        assert_eq!(app.hold(&event, &[(&tts[0], 2), (&tts[1], 1)]).await.status, 201);
    }
);

both_engines!(a_one_second_hold_expires_in_real_time, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let org = app.create_organization("Org").await;
    let (event, tts) = app
        .create_event_with(&org, json!({ "hold_seconds": 1 }), &[("A", 100, 1)])
        .await;
    let hold = app.hold(&event, &[(&tts[0], 1)]).await;
    assert_eq!(hold.status, 201);
    assert_eq!(app.hold(&event, &[(&tts[0], 1)]).await.status, 409);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let read = app
        .get(&format!("/api/v1/reservations/{}", hold.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(read.body["status"], "expired");
    assert_eq!(
        app.hold(&event, &[(&tts[0], 1)]).await.status,
        201,
        "the expired hold blocks nothing"
    );
});

both_engines!(
    the_default_hold_duration_applies_when_the_event_sets_none,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let clock = ManualClock::starting_now();
        let options = AppOptions {
            clock: Some(clock),
            hold_duration: Duration::from_secs(90),
            ..Default::default()
        };
        let app = spawn_app(&db, options).await;
        let org = app.create_organization("Org").await;
        let (event, tts) = app.create_event(&org, &[("A", 100, 1)]).await;
        let hold = app.hold(&event, &[(&tts[0], 1)]).await;
        assert_eq!(hold.body["seconds_remaining"], 90);
        app.advance(Duration::from_secs(90));
        assert_eq!(app.hold(&event, &[(&tts[0], 1)]).await.status, 201);
    }
);

both_engines!(cancelling_is_idempotent_and_releases_tickets, |engine| async move {
    let (app, _db) = app_with_clock(engine).await;
    let org = app.create_organization("Org").await;
    let (event, tts) = app.create_event(&org, &[("A", 100, 3)]).await;
    let hold = app.hold(&event, &[(&tts[0], 3)]).await;
    let path = format!("/api/v1/reservations/{}", hold.body["id"].as_str().unwrap());
    let cancelled = app.delete(&path).await;
    assert_eq!(
        (cancelled.status, cancelled.body["status"].as_str()),
        (200, Some("cancelled"))
    );
    assert_eq!(app.inventory(&event, &tts[0]).await, (0, 0, 3));
    let again = app.delete(&path).await;
    assert_eq!((again.status, again.body["status"].as_str()), (200, Some("cancelled")));
    assert_eq!(app.inventory(&event, &tts[0]).await, (0, 0, 3));
    assert_eq!(app.get(&path).await.body["status"], "cancelled");
    let unknown = app
        .delete("/api/v1/reservations/hold_00000000000000000000000000000000")
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    assert_eq!(app.delete("/api/v1/reservations/nonsense").await.status, 404);
});

both_engines!(ticket_type_rules_are_enforced, |engine| async move {
    let (app, _db) = app_with_clock(engine).await;
    let org = app.create_organization("Org").await;
    let (event, tts) = app.create_event(&org, &[("A", 100, 10)]).await;
    let tt = &tts[0];
    assert_eq!(
        app.hold(&event, &[(tt, 11)]).await.status,
        422,
        "above the default max_per_order of 10"
    );
    assert_eq!(app.hold(&event, &[(tt, 4)]).await.status, 201);
    let path = format!("/api/v1/ticket-types/{tt}");
    let refused = app.patch_as(OPERATOR_TOKEN, &path, json!({ "capacity": 3 })).await;
    assert_eq!((refused.status, refused.code()), (422, "invalid_request"));
    let ok = app
        .patch_as(
            OPERATOR_TOKEN,
            &path,
            json!({ "capacity": 4, "price_cents": 150, "max_per_order": 2 }),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        (ok.body["capacity"].as_i64(), ok.body["available"].as_i64()),
        (Some(4), Some(0))
    );
    app.patch_as(OPERATOR_TOKEN, &path, json!({ "capacity": 10 })).await;
    assert_eq!(
        app.hold(&event, &[(tt, 3)]).await.status,
        422,
        "the new max_per_order applies"
    );
    let hold = app.hold(&event, &[(tt, 2)]).await;
    assert_eq!(hold.body["amount_cents"], 300, "the new price applies to new holds");
    let off = app.patch_as(OPERATOR_TOKEN, &path, json!({ "on_sale": false })).await;
    assert_eq!(off.body["on_sale"], false);
    let refused = app.hold(&event, &[(tt, 1)]).await;
    assert_eq!((refused.status, refused.code()), (422, "invalid_request"));
    assert_eq!(
        app.patch_as(OPERATOR_TOKEN, &path, json!({ "capacity": -1 }))
            .await
            .status,
        422
    );
});

both_engines!(bad_input_gets_a_4xx_and_changes_nothing, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let org = app.create_organization("Org").await;
    let (event, tts) = app.create_event(&org, &[("A", 100, 10)]).await;
    let (other_event, other_tts) = app.create_event(&org, &[("Other", 100, 10)]).await;
    let tt = tts[0].as_str();
    let item =
        |quantity: Value| json!({ "event_id": event, "items": [{ "ticket_type_id": tt, "quantity": quantity }] });
    let cases: Vec<(&str, Value, u16)> = vec![
        ("zero quantity", item(json!(0)), 422),
        ("negative quantity", item(json!(-1)), 422),
        ("huge quantity", item(json!(1_000_000_000_000_i64)), 422),
        ("beyond i64", item(json!(1e30)), 422),
        ("fractional quantity", item(json!(1.5)), 422),
        ("string quantity", item(json!("2")), 422),
        ("null quantity", item(Value::Null), 422),
        ("empty items", json!({ "event_id": event, "items": [] }), 422),
        ("missing items", json!({ "event_id": event }), 422),
        ("items not a list", json!({ "event_id": event, "items": {} }), 422),
        (
            "duplicate ticket type",
            json!({ "event_id": event, "items": [
            { "ticket_type_id": tt, "quantity": 1 }, { "ticket_type_id": tt, "quantity": 1 }] }),
            422,
        ),
        (
            "unknown event",
            json!({ "event_id": "ev_00000000000000000000000000000000", "items": [
            { "ticket_type_id": tt, "quantity": 1 }] }),
            404,
        ),
        (
            "malformed event id",
            json!({ "event_id": "'; DROP TABLE holds; --", "items": [
            { "ticket_type_id": tt, "quantity": 1 }] }),
            404,
        ),
        (
            "unknown ticket type",
            json!({ "event_id": event, "items": [
            { "ticket_type_id": "tt_00000000000000000000000000000000", "quantity": 1 }] }),
            422,
        ),
        (
            "ticket type of another event",
            json!({ "event_id": event, "items": [
            { "ticket_type_id": other_tts[0], "quantity": 1 }] }),
            422,
        ),
        (
            "bad e-mail",
            json!({ "event_id": event, "customer_email": "not-an-address", "items": [
            { "ticket_type_id": tt, "quantity": 1 }] }),
            422,
        ),
        ("array body", json!([1, 2, 3]), 422),
    ];
    for (name, body, status) in cases {
        let answer = app.post("/api/v1/reservations", body).await;
        assert_eq!(answer.status, status, "{name}: {}", answer.body);
        assert!(
            answer.body["error"]["code"].is_string() && answer.body["error"]["message"].is_string(),
            "{name}"
        );
        assert!(answer.headers.contains_key("x-request-id"), "{name}");
    }

    let raw = |body: Vec<u8>, content_type: Option<&str>| {
        let mut request = app.client.post(app.url("/api/v1/reservations")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request
    };
    let malformed = app
        .send(raw(b"{\"event_id\": ".to_vec(), Some("application/json")))
        .await;
    assert_eq!((malformed.status, malformed.code()), (400, "invalid_request"));
    let not_utf8 = app.send(raw(vec![0xff, 0xfe, 0x00], Some("application/json"))).await;
    assert_eq!(not_utf8.code(), "invalid_request");
    assert!((400..500).contains(&not_utf8.status));
    let wrong_type = app
        .send(raw(item(json!(1)).to_string().into_bytes(), Some("text/plain")))
        .await;
    assert_eq!((wrong_type.status, wrong_type.code()), (415, "invalid_request"));
    let no_type = app.send(raw(item(json!(1)).to_string().into_bytes(), None)).await;
    assert_eq!(no_type.status, 415);
    let mut huge = item(json!(1));
    huge["customer_email"] = json!("x".repeat(3 * 1024 * 1024));
    let too_large = app
        .send(raw(huge.to_string().into_bytes(), Some("application/json")))
        .await;
    assert_eq!((too_large.status, too_large.code()), (413, "payload_too_large"));
    assert_eq!(
        too_large.headers["connection"], "close",
        "the unread body makes the connection unusable"
    );

    assert_eq!(app.inventory(&event, tt).await, (0, 0, 10), "nothing was held");
    assert_eq!(app.inventory(&other_event, &other_tts[0]).await, (0, 0, 10));
    let stats = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/stats/reservations").await;
    assert_eq!(stats.body["active"], 0);

    // Admin-side bad input too.
    let bad_event = app
        .post_as(
            OPERATOR_TOKEN,
            "/api/v1/events",
            json!({ "organization_id": org, "name": "X", "starts_at": "tomorrow", "currency": "EUR" }),
        )
        .await;
    assert_eq!((bad_event.status, bad_event.code()), (422, "invalid_request"));
    let bad_currency = app
        .post_as(
            OPERATOR_TOKEN,
            "/api/v1/events",
            json!({ "organization_id": org, "name": "X", "starts_at": "2030-01-01T00:00:00Z", "currency": "EURO" }),
        )
        .await;
    assert_eq!(bad_currency.status, 422);
    for body in [
        json!({ "name": "", "price_cents": 1, "capacity": 1 }),
        json!({ "name": "T", "price_cents": -5, "capacity": 1 }),
        json!({ "name": "T", "price_cents": 5, "capacity": -1 }),
        json!({ "name": "T", "price_cents": 5, "capacity": 1, "max_per_order": 0 }),
        json!({ "name": "T", "price_cents": "5", "capacity": 1 }),
    ] {
        let answer = app
            .post_as(
                OPERATOR_TOKEN,
                &format!("/api/v1/events/{event}/ticket-types"),
                body.clone(),
            )
            .await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.body);
    }
    let bad_limit = app.get("/api/v1/events?limit=0").await;
    assert_eq!((bad_limit.status, bad_limit.code()), (400, "invalid_request"));
    assert_eq!(app.get("/api/v1/events?limit=501").await.status, 400);
    assert_eq!(app.get("/api/v1/events?limit=abc").await.status, 400);
});

both_engines!(events_are_public_and_paginated, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let org = app.create_organization("Org").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.create_event(&org, &[("A", 100, 5)]).await.0);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    ids.reverse();
    let first = app.get("/api/v1/events?limit=2").await;
    let got: Vec<_> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ids[..2]);
    assert_eq!(first.body["has_more"], true);
    let next = app
        .get(&format!("/api/v1/events?limit=2&starting_after={}", ids[1]))
        .await;
    assert_eq!(next.body["data"][0]["id"], ids[2].as_str());
    assert_eq!(next.body["has_more"], false);
    let one = app.get(&format!("/api/v1/events/{}", ids[0])).await;
    let tt = &one.body["ticket_types"][0];
    assert_eq!(
        (
            tt["capacity"].as_i64(),
            tt["sold"].as_i64(),
            tt["held"].as_i64(),
            tt["available"].as_i64()
        ),
        (Some(5), Some(0), Some(0), Some(5))
    );
    assert_eq!(
        app.get("/api/v1/events/ev_00000000000000000000000000000000")
            .await
            .status,
        404
    );
    let filtered = app.get(&format!("/api/v1/events?organization_id={org}")).await;
    assert_eq!(filtered.body["data"].as_array().unwrap().len(), 3);
});
