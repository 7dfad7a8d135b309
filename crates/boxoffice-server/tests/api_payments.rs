//! Idempotent, crash-safe payment creation over HTTP, on both engines, against the built-in
//! Stripe test double over real HTTP (SPEC §5). PaymentIntents are counted through the
//! double's own Stripe list endpoint.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::ManualClock;
use common::{AppOptions, Engine, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use serde_json::{Value, json};

const STRIPE_KEY: &str = "sk_test_payments_suite";

struct Shop {
    app: Arc<TestApp>,
    event: String,
    ticket_type: String,
    _db: TestDatabase,
}

async fn shop(engine: Engine, clock: Option<ManualClock>) -> Shop {
    let db = TestDatabase::new(engine).await;
    let options = AppOptions {
        clock,
        stripe_secret_key: Some(STRIPE_KEY.into()),
        ..Default::default()
    };
    let app = spawn_app(&db, options).await;
    let org = app.create_organization("Org").await;
    let (event, tts) = app
        .create_event_with(&org, json!({ "hold_seconds": 600 }), &[("GA", 2_500, 1_000)])
        .await;
    Shop {
        app: Arc::new(app),
        event,
        ticket_type: tts[0].clone(),
        _db: db,
    }
}

impl Shop {
    async fn hold(&self, quantity: i64) -> String {
        let answer = self.app.hold(&self.event, &[(&self.ticket_type, quantity)]).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }

    async fn pay(&self, hold: &str, key: &str, body: Value) -> common::Answer {
        let request = self
            .app
            .client
            .post(self.app.url(&format!("/api/v1/reservations/{hold}/payment-intent")))
            .header("idempotency-key", key)
            .json(&body);
        self.app.send(request).await
    }

    /// PaymentIntents at the double, through its Stripe list endpoint.
    async fn payment_intents(&self) -> Vec<Value> {
        let answer = self
            .app
            .send(
                self.app
                    .client
                    .get(self.app.url("/_fake-stripe/v1/payment_intents?limit=100"))
                    .bearer_auth(STRIPE_KEY),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["data"].as_array().unwrap().clone()
    }

    async fn fault(&self, fault: &str, count: u32, delay_ms: u64) {
        let body = json!({ "fault": fault, "count": count, "delay_ms": delay_ms });
        let answer = self.app.post("/_fake-stripe/_control/faults", body).await;
        assert!(answer.status < 300, "{}", answer.body);
    }
}

both_engines!(
    same_key_same_request_replays_without_a_second_payment_intent,
    |engine| async move {
        let shop = shop(engine, None).await;
        let hold = shop.hold(2).await;
        let first = shop.pay(&hold, "order-1", json!({})).await;
        assert_eq!(first.status, 201, "{}", first.body);
        assert!(!first.headers.contains_key("idempotent-replayed"));
        assert_eq!(first.body["amount_cents"], 5_000);
        assert_eq!(first.body["currency"], "EUR");
        assert_eq!(first.body["status"], "requires_payment_method");
        let again = shop.pay(&hold, "order-1", json!({})).await;
        assert_eq!(again.status, 201);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.body, first.body, "the stored answer, byte for byte");
        let quoted = shop.pay(&hold, "\"order-1\"", json!({})).await;
        assert_eq!(
            quoted.headers["idempotent-replayed"], "true",
            "the quoted form is the same key"
        );
        let intents = shop.payment_intents().await;
        assert_eq!(intents.len(), 1);
        assert_eq!(intents[0]["id"], first.body["payment_intent_id"]);
        assert_eq!(intents[0]["amount"], 5_000);
        assert_eq!(intents[0]["metadata"]["order_id"], first.body["order_id"]);

        let order = shop
            .app
            .get(&format!("/api/v1/orders/{}", first.body["order_id"].as_str().unwrap()))
            .await;
        assert_eq!(order.status, 200);
        assert_eq!(
            (
                order.body["status"].as_str(),
                order.body["reservation_id"].as_str(),
                &order.body["payment_intent_id"]
            ),
            (Some("pending"), Some(hold.as_str()), &first.body["payment_intent_id"])
        );
        assert_eq!(order.body["amount_cents"], 5_000);
        assert_eq!(order.body["tickets"], json!([]));
        assert_eq!(
            shop.app
                .get("/api/v1/orders/ord_00000000000000000000000000000000")
                .await
                .status,
            404
        );

        // Another key for the same reservation: the same order and the same PaymentIntent.
        let other_key = shop.pay(&hold, "order-1-second-tab", json!({})).await;
        assert_eq!(other_key.status, 201);
        assert!(!other_key.headers.contains_key("idempotent-replayed"));
        assert_eq!(other_key.body["payment_intent_id"], first.body["payment_intent_id"]);
        assert_eq!(other_key.body["order_id"], first.body["order_id"]);
        assert_eq!(
            shop.payment_intents().await.len(),
            1,
            "one live PaymentIntent per reservation"
        );
    }
);

both_engines!(
    a_hundred_concurrent_requests_with_one_key_create_one_payment_intent,
    |engine| async move {
        let shop = Arc::new(shop(engine, None).await);
        let hold = shop.hold(1).await;
        let requests = (0..100).map(|_| {
            let (shop, hold) = (shop.clone(), hold.clone());
            tokio::spawn(async move { shop.pay(&hold, "stampede", json!({})).await })
        });
        let answers: Vec<_> = futures::future::join_all(requests)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let created: Vec<&Value> = answers.iter().filter(|a| a.status == 201).map(|a| &a.body).collect();
        assert!(!created.is_empty());
        assert!(
            created.iter().all(|body| *body == created[0]),
            "every 201 is the same answer"
        );
        for answer in answers.iter().filter(|a| a.status != 201) {
            assert_eq!(
                (answer.status, answer.code()),
                (409, "idempotency_key_in_use"),
                "{}",
                answer.body
            );
            assert!(answer.headers.contains_key("retry-after"));
        }
        assert_eq!(shop.payment_intents().await.len(), 1);
    }
);

both_engines!(a_duplicate_while_the_first_is_in_flight_gets_409, |engine| async move {
    let shop = Arc::new(shop(engine, None).await);
    let hold = shop.hold(1).await;
    shop.fault("delay", 1, 1_500).await;
    let first = {
        let (shop, hold) = (shop.clone(), hold.clone());
        tokio::spawn(async move { shop.pay(&hold, "slow", json!({})).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let duplicate = shop.pay(&hold, "slow", json!({})).await;
    assert_eq!((duplicate.status, duplicate.code()), (409, "idempotency_key_in_use"));
    let retry_after: u64 = duplicate.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let first = first.await.unwrap();
    assert_eq!(first.status, 201, "{}", first.body);
    let after = shop.pay(&hold, "slow", json!({})).await;
    assert_eq!(after.headers["idempotent-replayed"], "true");
    assert_eq!(shop.payment_intents().await.len(), 1);
});

both_engines!(
    provider_faults_answer_502_and_a_retry_finds_the_first_payment_intent,
    |engine| async move {
        let shop = shop(engine, None).await;
        for fault in ["drop_response_after_commit", "drop_connection", "http_500"] {
            let hold = shop.hold(1).await;
            let before = shop.payment_intents().await.len();
            // Three failures outlast the client's own retries (two), so boxoffice must answer.
            shop.fault(fault, 3, 0).await;
            let failed = shop.pay(&hold, fault, json!({})).await;
            assert_eq!(
                (failed.status, failed.code()),
                (502, "provider_unavailable"),
                "{fault}: {}",
                failed.body
            );
            assert!(failed.headers.contains_key("retry-after"));
            let retried = shop.pay(&hold, fault, json!({})).await;
            assert_eq!(retried.status, 201, "{fault}: {}", retried.body);
            assert!(
                !retried.headers.contains_key("idempotent-replayed"),
                "a 502 is not stored, the retry resumes"
            );
            let intents = shop.payment_intents().await;
            assert_eq!(
                intents.len(),
                before + 1,
                "{fault}: exactly one PaymentIntent, never two"
            );
            assert_eq!(intents[0]["id"], retried.body["payment_intent_id"]);

            // A single failure is absorbed by the client's retries with the same provider key.
            let hold = shop.hold(1).await;
            shop.fault(fault, 1, 0).await;
            let absorbed = shop.pay(&hold, &format!("{fault}-once"), json!({})).await;
            assert_eq!(absorbed.status, 201, "{fault}: {}", absorbed.body);
            assert_eq!(shop.payment_intents().await.len(), before + 2);
        }
    }
);

both_engines!(
    the_completer_finishes_a_request_the_provider_committed_but_we_never_recorded,
    |engine| async move {
        let shop = shop(engine, None).await;
        let hold = shop.hold(1).await;
        shop.fault("drop_response_after_commit", 3, 0).await;
        let failed = shop.pay(&hold, "completer", json!({})).await;
        assert_eq!(failed.status, 502);
        let intents = shop.payment_intents().await;
        assert_eq!(intents.len(), 1, "the provider did create it");

        let run = shop
            .app
            .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/payment-completer/run", json!({}))
            .await;
        assert_eq!(run.status, 200, "{}", run.body);
        assert_eq!(
            (run.body["job"].as_str(), run.body["affected"].as_i64()),
            (Some("payment-completer"), Some(1))
        );
        let order_id = intents[0]["metadata"]["order_id"].as_str().unwrap().to_owned();
        let order = shop.app.get(&format!("/api/v1/orders/{order_id}")).await;
        assert_eq!(
            order.body["payment_intent_id"], intents[0]["id"],
            "recorded by the completer"
        );

        let retried = shop.pay(&hold, "completer", json!({})).await;
        assert_eq!(retried.status, 201);
        assert_eq!(
            retried.headers["idempotent-replayed"], "true",
            "the completer stored the answer"
        );
        assert_eq!(retried.body["payment_intent_id"], intents[0]["id"]);
        assert_eq!(shop.payment_intents().await.len(), 1);
        let idle = shop
            .app
            .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/payment-completer/run", json!({}))
            .await;
        assert_eq!(idle.body["affected"], 0);
    }
);

both_engines!(
    payment_requests_are_validated_and_definitive_answers_are_stored,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let shop = shop(engine, Some(clock.clone())).await;
        let hold = shop.hold(3).await;

        let missing = shop
            .app
            .send(
                shop.app
                    .client
                    .post(shop.app.url(&format!("/api/v1/reservations/{hold}/payment-intent"))),
            )
            .await;
        assert_eq!((missing.status, missing.code()), (400, "invalid_request"));
        for bad in ["x".repeat(300), "has space".into(), "\"unterminated".into()] {
            let answer = shop.pay(&hold, &bad, json!({})).await;
            assert_eq!((answer.status, answer.code()), (400, "invalid_request"), "{bad}");
        }
        let unknown = shop
            .pay("hold_00000000000000000000000000000000", "k-unknown", json!({}))
            .await;
        assert_eq!(unknown.status, 404);

        // A client-sent amount is ignored: the amount comes from the ticket types.
        let paid = shop
            .pay(&hold, "k1", json!({ "amount_cents": 1, "currency": "USD" }))
            .await;
        assert_eq!(paid.status, 201, "{}", paid.body);
        assert_eq!(
            (paid.body["amount_cents"].as_i64(), paid.body["currency"].as_str()),
            (Some(7_500), Some("EUR"))
        );
        let reused_body = shop.pay(&hold, "k1", json!({ "amount_cents": 2 })).await;
        assert_eq!(
            (reused_body.status, reused_body.code()),
            (422, "idempotency_key_reused")
        );
        let other_hold = shop.hold(1).await;
        let reused_path = shop
            .pay(&other_hold, "k1", json!({ "amount_cents": 1, "currency": "USD" }))
            .await;
        assert_eq!(
            (reused_path.status, reused_path.code()),
            (422, "idempotency_key_reused")
        );

        // Keys are scoped per caller: an API key's "k1" is not the anonymous buyers' "k1".
        let org = shop.app.get(&format!("/api/v1/events/{}", shop.event)).await.body["organization_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = shop
            .app
            .post_as(
                OPERATOR_TOKEN,
                &format!("/api/v1/organizations/{org}/api-keys"),
                json!({}),
            )
            .await;
        let api_key = key.body["key"].as_str().unwrap();
        let scoped = shop
            .app
            .send(
                shop.app
                    .client
                    .post(
                        shop.app
                            .url(&format!("/api/v1/reservations/{other_hold}/payment-intent")),
                    )
                    .bearer_auth(api_key)
                    .header("idempotency-key", "k1")
                    .json(&json!({})),
            )
            .await;
        assert_eq!(scoped.status, 201, "{}", scoped.body);
        let bad_token = shop
            .app
            .send(
                shop.app
                    .client
                    .post(
                        shop.app
                            .url(&format!("/api/v1/reservations/{other_hold}/payment-intent")),
                    )
                    .bearer_auth("wrong")
                    .header("idempotency-key", "k9"),
            )
            .await;
        assert_eq!(bad_token.status, 401);

        // An expired hold: 409 hold_expired, stored and replayed.
        let late = shop.hold(1).await;
        clock.advance(Duration::from_secs(601));
        let expired = shop.pay(&late, "late", json!({})).await;
        assert_eq!((expired.status, expired.code()), (409, "hold_expired"));
        let replayed = shop.pay(&late, "late", json!({})).await;
        assert_eq!((replayed.status, replayed.code()), (409, "hold_expired"));
        assert_eq!(replayed.headers["idempotent-replayed"], "true");

        // A cancelled hold cannot be paid either.
        let cancelled = shop.hold(1).await;
        shop.app.delete(&format!("/api/v1/reservations/{cancelled}")).await;
        let answer = shop.pay(&cancelled, "cancelled", json!({})).await;
        assert_eq!((answer.status, answer.code()), (409, "hold_expired"));
    }
);

both_engines!(
    starting_payment_extends_the_hold_to_the_grace_once,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let shop = shop(engine, Some(clock.clone())).await;
        let hold = shop.hold(1).await;
        clock.advance(Duration::from_secs(540)); // 60 s of the 600 s hold left
        assert_eq!(shop.pay(&hold, "grace-1", json!({})).await.status, 201);
        let read = shop.app.get(&format!("/api/v1/reservations/{hold}")).await;
        assert_eq!(read.body["seconds_remaining"], 300, "extended to the 5-minute grace");
        clock.advance(Duration::from_secs(100));
        assert_eq!(shop.pay(&hold, "grace-2", json!({})).await.status, 201);
        let read = shop.app.get(&format!("/api/v1/reservations/{hold}")).await;
        assert_eq!(read.body["seconds_remaining"], 200, "the grace is granted once");
        // A hold with more than the grace left is not shortened.
        let long = shop.hold(1).await;
        assert_eq!(shop.pay(&long, "grace-3", json!({})).await.status, 201);
        assert_eq!(
            shop.app.get(&format!("/api/v1/reservations/{long}")).await.body["seconds_remaining"],
            600
        );
    }
);

both_engines!(
    the_reaper_forgets_finished_keys_after_the_retention,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let shop = shop(engine, Some(clock.clone())).await;
        let hold = shop.hold(1).await;
        assert_eq!(shop.pay(&hold, "old", json!({})).await.status, 201);
        let kept = shop
            .app
            .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/idempotency-reaper/run", json!({}))
            .await;
        assert_eq!(
            (kept.status, kept.body["affected"].as_i64()),
            (200, Some(0)),
            "{}",
            kept.body
        );
        assert_eq!(
            shop.pay(&hold, "old", json!({})).await.headers["idempotent-replayed"],
            "true"
        );
        clock.advance(Duration::from_secs(49 * 60 * 60));
        let reaped = shop
            .app
            .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/idempotency-reaper/run", json!({}))
            .await;
        assert_eq!(reaped.body["affected"], 1);
        // The key is free again: the same request is processed anew (the hold ran out meanwhile).
        let fresh = shop.pay(&hold, "old", json!({})).await;
        assert!(!fresh.headers.contains_key("idempotent-replayed"));
        assert_eq!(fresh.code(), "hold_expired");
        let runs = shop
            .app
            .get_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/runs?job=idempotency-reaper")
            .await;
        // Newest first; the reaper also ran once by itself when the server started.
        assert_eq!(runs.body["data"][0]["id"], reaped.body["id"]);
        assert!(
            runs.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|run| run["id"] == kept.body["id"])
        );
        assert_eq!(
            shop.app
                .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/no-such-job/run", json!({}))
                .await
                .status,
            404
        );
    }
);

both_engines!(
    a_record_older_than_stripe_key_memory_is_looked_up_not_re_driven,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let shop = shop(engine, Some(clock.clone())).await;
        let hold = shop.hold(1).await;
        shop.fault("drop_response_after_commit", 3, 0).await;
        assert_eq!(shop.pay(&hold, "ancient", json!({})).await.status, 502);
        let created = shop.payment_intents().await;
        assert_eq!(created.len(), 1);
        // A day later Stripe may have forgotten the provider key: calling create again could
        // charge twice, so the completer finds the PaymentIntent by its order instead. (The
        // double never forgets keys, so this proves the lookup finds and records the right
        // PaymentIntent; that old records take the lookup path is decided by age in
        // `BoxOffice::drive_payment`.)
        clock.advance(Duration::from_secs(24 * 60 * 60));
        let run = shop
            .app
            .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/payment-completer/run", json!({}))
            .await;
        assert_eq!(run.body["affected"], 1, "{}", run.body);
        let order_id = created[0]["metadata"]["order_id"].as_str().unwrap();
        let order = shop.app.get(&format!("/api/v1/orders/{order_id}")).await;
        assert_eq!(order.body["payment_intent_id"], created[0]["id"]);
        let replay = shop.pay(&hold, "ancient", json!({})).await;
        assert_eq!(
            (replay.status, &replay.body["payment_intent_id"]),
            (201, &created[0]["id"])
        );
        assert_eq!(shop.payment_intents().await.len(), 1);
    }
);
