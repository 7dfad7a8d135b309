//! Webhooks applied exactly once, over real HTTP with the built-in Stripe double delivering
//! signed events, on both engines (SPEC §6).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_core::ManualClock;
use common::{AppOptions, Engine, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use serde_json::{Value, json};

const STRIPE_KEY: &str = "sk_test_webhooks_suite";
const SECRET: &str = "whsec_webhooks_suite_primary";
const ROTATED: &str = "whsec_webhooks_suite_next";

struct Shop {
    app: Arc<TestApp>,
    event: String,
    ticket_type: String,
    _db: TestDatabase,
}

async fn shop(engine: Engine, capacity: i64, clock: Option<ManualClock>) -> Shop {
    let db = TestDatabase::new(engine).await;
    let options = AppOptions {
        clock,
        stripe_secret_key: Some(STRIPE_KEY.into()),
        webhook_secrets: vec![SECRET.into(), ROTATED.into()],
        ..Default::default()
    };
    let app = spawn_app(&db, options).await;
    let org = app.create_organization("Org").await;
    let (event, tts) = app
        .create_event_with(&org, json!({ "hold_seconds": 600 }), &[("GA", 2_500, capacity)])
        .await;
    Shop {
        app: Arc::new(app),
        event,
        ticket_type: tts[0].clone(),
        _db: db,
    }
}

struct Purchase {
    hold: String,
    order: String,
    payment_intent: String,
}

impl Shop {
    async fn hold(&self, quantity: i64) -> common::Answer {
        self.app.hold(&self.event, &[(&self.ticket_type, quantity)]).await
    }

    /// A hold with a PaymentIntent, not paid yet.
    async fn start_purchase(&self, quantity: i64) -> Purchase {
        let hold = self.hold(quantity).await;
        assert_eq!(hold.status, 201, "{}", hold.body);
        let hold = hold.body["id"].as_str().unwrap().to_owned();
        let request = self
            .app
            .client
            .post(self.app.url(&format!("/api/v1/reservations/{hold}/payment-intent")))
            .header("idempotency-key", format!("pay-{hold}"));
        let paid = self.app.send(request).await;
        assert_eq!(paid.status, 201, "{}", paid.body);
        Purchase {
            hold,
            order: paid.body["order_id"].as_str().unwrap().to_owned(),
            payment_intent: paid.body["payment_intent_id"].as_str().unwrap().to_owned(),
        }
    }

    async fn stripe(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> common::Answer {
        self.app.fake_stripe(STRIPE_KEY, method, path, form).await
    }

    async fn confirm(&self, purchase: &Purchase, payment_method: &str) -> common::Answer {
        self.stripe(
            reqwest::Method::POST,
            &format!("/v1/payment_intents/{}/confirm", purchase.payment_intent),
            &[("payment_method", payment_method)],
        )
        .await
    }

    async fn fault(&self, fault: &str, count: u32) {
        let answer = self
            .app
            .post(
                "/_fake-stripe/_control/faults",
                json!({ "fault": fault, "count": count }),
            )
            .await;
        assert!(answer.status < 300, "{}", answer.body);
    }

    async fn order(&self, purchase: &Purchase) -> Value {
        self.app.get(&format!("/api/v1/orders/{}", purchase.order)).await.body
    }

    /// Waits (bounded) until the order has `status`.
    async fn order_becomes(&self, purchase: &Purchase, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let order = self.order(purchase).await;
            if order["status"] == status {
                return order;
            }
            assert!(Instant::now() < deadline, "order never became {status}: {order}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn inventory(&self) -> (i64, i64, i64) {
        self.app.inventory(&self.event, &self.ticket_type).await
    }

    /// The double's events of a type for a PaymentIntent, newest first, as raw JSON.
    async fn stripe_events(&self, event_type: &str, payment_intent: &str) -> Vec<Value> {
        let list = self.stripe(reqwest::Method::GET, "/v1/events?limit=100", &[]).await;
        list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["type"] == event_type
                    && (e["data"]["object"]["id"] == payment_intent
                        || e["data"]["object"]["payment_intent"] == payment_intent)
            })
            .cloned()
            .collect()
    }

    async fn deliver(&self, payload: &str, secret: &str) -> common::Answer {
        self.app.deliver_stripe_webhook(payload, secret).await
    }

    async fn deliver_signed(&self, payload: &str, signature: &str) -> common::Answer {
        self.app.post_stripe_webhook(payload, signature).await
    }

    async fn webhook_events(&self) -> Vec<Value> {
        self.app
            .get_as(OPERATOR_TOKEN, "/api/v1/admin/webhooks/events?limit=500")
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn run_job(&self, job: &str) -> Value {
        let run = self
            .app
            .post_as(OPERATOR_TOKEN, &format!("/api/v1/admin/jobs/{job}/run"), json!({}))
            .await;
        assert_eq!(run.status, 200, "{}", run.body);
        run.body
    }
}

fn ticket_codes(order: &Value) -> Vec<String> {
    let mut codes: Vec<String> = order["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect();
    codes.sort();
    codes
}

both_engines!(
    a_confirmed_payment_becomes_a_paid_order_with_unique_tickets,
    |engine| async move {
        let shop = shop(engine, 100, None).await;
        let purchase = shop.start_purchase(3).await;
        assert_eq!(shop.confirm(&purchase, "pm_card_visa").await.status, 200);
        let order = shop.order_becomes(&purchase, "paid").await;
        let codes = ticket_codes(&order);
        assert_eq!(codes.len(), 3, "one ticket per seat");
        codes.windows(2).for_each(|pair| assert_ne!(pair[0], pair[1]));
        assert!(
            codes.iter().all(|code| code.len() >= 32),
            "unguessable codes: {codes:?}"
        );
        assert_eq!(shop.inventory().await, (3, 0, 97), "held became sold");
        let hold = shop.app.get(&format!("/api/v1/reservations/{}", purchase.hold)).await;
        assert_eq!(hold.body["status"], "completed");
        let cancel = shop
            .app
            .delete(&format!("/api/v1/reservations/{}", purchase.hold))
            .await;
        assert_eq!((cancel.status, cancel.code()), (409, "hold_completed"));
        let events = shop.webhook_events().await;
        let succeeded = events.iter().find(|e| e["type"] == "payment_intent.succeeded").unwrap();
        assert_eq!(
            (succeeded["status"].as_str(), succeeded["delivery_count"].as_i64()),
            (Some("applied"), Some(1))
        );
    }
);

both_engines!(
    redeliveries_and_distinct_events_for_one_payment_take_effect_once,
    |engine| async move {
        let shop = Arc::new(shop(engine, 100, None).await);
        let purchase = shop.start_purchase(2).await;
        shop.confirm(&purchase, "pm_card_visa").await;
        let paid = shop.order_becomes(&purchase, "paid").await;
        let event = shop
            .stripe_events("payment_intent.succeeded", &purchase.payment_intent)
            .await
            .remove(0);
        let payload = event.to_string();

        // 30 concurrent redeliveries of the same event, and 5 distinct events for the same change.
        let mut deliveries = Vec::new();
        for _ in 0..30 {
            let (shop, payload) = (shop.clone(), payload.clone());
            deliveries.push(tokio::spawn(async move { shop.deliver(&payload, SECRET).await }));
        }
        for i in 0..5 {
            let mut distinct = event.clone();
            distinct["id"] = json!(format!("evt_distinct_{i}_{}", purchase.order));
            let (shop, payload) = (shop.clone(), distinct.to_string());
            deliveries.push(tokio::spawn(async move { shop.deliver(&payload, SECRET).await }));
        }
        for answer in futures::future::join_all(deliveries).await {
            let answer = answer.unwrap();
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
        let after = shop.order(&purchase).await;
        assert_eq!(
            ticket_codes(&after),
            ticket_codes(&paid),
            "the same tickets, no new ones"
        );
        assert_eq!(shop.inventory().await, (2, 0, 98), "sold counted once");
        let events = shop.webhook_events().await;
        let original = events.iter().find(|e| e["id"] == event["id"]).unwrap();
        assert_eq!(original["delivery_count"], 31);
        assert_eq!(
            events
                .iter()
                .filter(|e| e["type"] == "payment_intent.succeeded")
                .count(),
            6
        );
    }
);

both_engines!(bad_signatures_are_refused_and_nothing_is_stored, |engine| async move {
    let shop = shop(engine, 100, None).await;
    let payload = json!({ "id": "evt_forged", "object": "event", "type": "payment_intent.succeeded",
        "created": 1, "data": { "object": { "id": "pi_forged" } } })
    .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sign = |body: &str, secret: &str, t: i64| boxoffice_stripe::webhook::sign(body.as_bytes(), secret, t);
    let good = sign(&payload, SECRET, now);
    let v1 = good.split("v1=").nth(1).unwrap().to_owned();
    let cases = [
        ("wrong secret", payload.clone(), sign(&payload, "whsec_wrong", now)),
        ("tampered body", payload.replace("pi_forged", "pi_other"), good.clone()),
        ("stale timestamp", payload.clone(), sign(&payload, SECRET, now - 301)),
        ("missing header", payload.clone(), String::new()),
        ("garbage header", payload.clone(), "not a signature at all".into()),
        ("only v0", payload.clone(), format!("t={now},v0={v1}")),
    ];
    for (name, body, signature) in cases {
        let answer = shop.deliver_signed(&body, &signature).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "invalid_signature"),
            "{name}: {}",
            answer.body
        );
    }
    assert!(shop.webhook_events().await.is_empty(), "nothing stored");
    let rotated = shop.deliver(&payload, ROTATED).await;
    assert_eq!(
        rotated.status, 200,
        "the second configured secret is accepted: {}",
        rotated.body
    );
    let events = shop.webhook_events().await;
    assert_eq!(
        (events.len(), events[0]["status"].as_str()),
        (1, Some("ignored")),
        "not our PaymentIntent"
    );
    let not_an_event = shop.deliver("[1,2,3]", SECRET).await;
    assert_eq!(not_an_event.status, 400);
});

both_engines!(
    a_failure_while_applying_leaves_nothing_half_applied,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let shop = shop(engine, 100, Some(clock.clone())).await;
        let purchase = shop.start_purchase(2).await;
        boxoffice_core::faults::fail_next_applies(1);
        shop.confirm(&purchase, "pm_card_visa").await;
        // Delivered, stored, acknowledged; applying failed after its writes and rolled back.
        let deadline = Instant::now() + Duration::from_secs(10);
        let event = loop {
            let events = shop.webhook_events().await;
            if let Some(event) = events
                .into_iter()
                .find(|e| e["type"] == "payment_intent.succeeded" && e["status"] != "pending")
            {
                break event;
            }
            assert!(Instant::now() < deadline, "the event never arrived or was never tried");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(event["status"], "failed", "{event}");
        assert!(event["last_error"].as_str().unwrap().contains("injected"));
        let order = shop.order(&purchase).await;
        assert_eq!(
            (order["status"].as_str(), order["tickets"].as_array().unwrap().len()),
            (Some("pending"), 0)
        );
        assert_eq!(
            shop.inventory().await,
            (0, 2, 98),
            "no ticket sold, the hold still holds"
        );

        assert_eq!(
            shop.run_job("webhook-worker").await["affected"],
            0,
            "not due before its retry time"
        );
        clock.advance(Duration::from_secs(6));
        let run = shop.run_job("webhook-worker").await;
        assert_eq!(run["affected"], 1);
        let order = shop.order_becomes(&purchase, "paid").await;
        assert_eq!(ticket_codes(&order).len(), 2);
        assert_eq!(shop.inventory().await, (2, 0, 98));
        assert_eq!(
            shop.run_job("webhook-worker").await["affected"],
            0,
            "applied exactly once"
        );
    }
);

both_engines!(
    a_declined_card_fails_the_order_and_a_refund_gives_capacity_back,
    |engine| async move {
        let shop = shop(engine, 10, None).await;
        let purchase = shop.start_purchase(2).await;
        let declined = shop.confirm(&purchase, "pm_card_chargeDeclined").await;
        assert_eq!(declined.status, 402);
        shop.order_becomes(&purchase, "failed").await;
        let hold = shop.app.get(&format!("/api/v1/reservations/{}", purchase.hold)).await;
        assert_eq!(hold.body["status"], "active", "the buyer may try another card");
        assert_eq!(shop.inventory().await, (0, 2, 8));

        // Another card succeeds; then the organizer refunds.
        assert_eq!(shop.confirm(&purchase, "pm_card_visa").await.status, 200);
        shop.order_becomes(&purchase, "paid").await;
        assert_eq!(shop.inventory().await, (2, 0, 8));
        let refund = shop
            .stripe(
                reqwest::Method::POST,
                "/v1/refunds",
                &[("payment_intent", &purchase.payment_intent)],
            )
            .await;
        assert_eq!(refund.status, 200, "{}", refund.body);
        let order = shop.order_becomes(&purchase, "refunded").await;
        assert!(order["tickets"].as_array().unwrap().is_empty(), "tickets void");
        assert_eq!(shop.inventory().await, (0, 0, 10), "capacity back");
    }
);

both_engines!(
    duplicated_and_reordered_deliveries_take_effect_once,
    |engine| async move {
        let shop = shop(engine, 10, None).await;
        let purchase = shop.start_purchase(1).await;
        shop.fault("duplicate_webhooks", 5).await;
        shop.confirm(&purchase, "pm_card_visa").await;
        let order = shop.order_becomes(&purchase, "paid").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(ticket_codes(&shop.order(&purchase).await), ticket_codes(&order));
        assert_eq!(shop.inventory().await.0, 1);

        // A decline and then a success, delivered in reverse: the stale failure changes nothing.
        let second = shop.start_purchase(1).await;
        shop.fault("reorder_webhooks", 2).await;
        shop.confirm(&second, "pm_card_chargeDeclined").await;
        shop.confirm(&second, "pm_card_visa").await;
        shop.order_becomes(&second, "paid").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while shop
            .stripe_events("payment_intent.payment_failed", &second.payment_intent)
            .await
            .is_empty()
            || !shop
                .webhook_events()
                .await
                .iter()
                .any(|e| e["type"] == "payment_intent.payment_failed")
        {
            assert!(Instant::now() < deadline, "the held-back failure was never delivered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            shop.order(&second).await["status"],
            "paid",
            "a failure after success is stale"
        );
        assert_eq!(shop.inventory().await, (2, 0, 8));
    }
);

both_engines!(
    a_late_payment_takes_free_tickets_or_is_refunded_without_overselling,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let shop = shop(engine, 1, Some(clock.clone())).await;

        // Still available after the hold ran out: taken, paid.
        let late = shop.start_purchase(1).await;
        clock.advance(Duration::from_secs(601));
        assert_eq!(shop.inventory().await, (0, 0, 1));
        shop.confirm(&late, "pm_card_visa").await;
        let order = shop.order_becomes(&late, "paid").await;
        assert_eq!(ticket_codes(&order).len(), 1);
        assert_eq!(shop.inventory().await, (1, 0, 0));

        // Sold to someone else meanwhile: refunded automatically, nothing oversold.
        let refund = shop
            .stripe(
                reqwest::Method::POST,
                "/v1/refunds",
                &[("payment_intent", &late.payment_intent)],
            )
            .await;
        assert_eq!(refund.status, 200);
        shop.order_becomes(&late, "refunded").await;
        assert_eq!(shop.inventory().await, (0, 0, 1));
        let unlucky = shop.start_purchase(1).await;
        clock.advance(Duration::from_secs(601));
        let other = shop.hold(1).await;
        assert_eq!(other.status, 201, "the expired hold blocks nobody");
        shop.confirm(&unlucky, "pm_card_visa").await;
        shop.order_becomes(&unlucky, "refunded").await;
        assert_eq!(
            shop.inventory().await,
            (0, 1, 0),
            "the other buyer keeps the ticket; nothing oversold"
        );
        let refunds = shop.stripe_events("charge.refunded", &unlucky.payment_intent).await;
        assert_eq!(refunds.len(), 1, "refunded once at the provider");
        let events = shop.webhook_events().await;
        let succeeded = events.iter().find(|e| {
            e["type"] == "payment_intent.succeeded"
                && e["status"] == "applied"
                && e["outcome"].as_str().unwrap().contains("refunded automatically")
        });
        assert!(succeeded.is_some(), "{events:?}");
    }
);

// Regression (found in the issue-8 review): the late path counted other buyers' holds that
// had run out but were not swept yet as taken, and refunded a payment whose tickets were free.
both_engines!(
    a_late_payment_is_not_refused_by_another_buyers_expired_unswept_hold,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let shop = shop(engine, 1, Some(clock.clone())).await;
        let late = shop.start_purchase(1).await;
        clock.advance(Duration::from_secs(601));
        // The only ticket goes to another buyer (releasing the first hold on the way)…
        let other = shop.hold(1).await;
        assert_eq!(other.status, 201, "{}", other.body);
        // …whose hold runs out too, and no sweeper has run.
        clock.advance(Duration::from_secs(601));
        assert_eq!(shop.inventory().await, (0, 0, 1), "the ticket is free again");

        shop.confirm(&late, "pm_card_visa").await;
        let order = shop.order_becomes(&late, "paid").await;
        assert_eq!(ticket_codes(&order).len(), 1);
        assert_eq!(
            shop.inventory().await,
            (1, 0, 0),
            "sold once, nothing held, nothing oversold"
        );
        let expired = shop
            .app
            .get(&format!("/api/v1/reservations/{}", other.body["id"].as_str().unwrap()))
            .await;
        assert_eq!(expired.body["status"], "expired", "{}", expired.body);
        let refunds = shop.stripe_events("charge.refunded", &late.payment_intent).await;
        assert!(refunds.is_empty(), "not refunded: {refunds:?}");
    }
);

both_engines!(
    reconciliation_applies_events_that_were_never_delivered,
    |engine| async move {
        let shop = shop(engine, 10, None).await;
        let purchase = shop.start_purchase(2).await;
        shop.fault("drop_webhooks", 10).await;
        shop.confirm(&purchase, "pm_card_visa").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(shop.order(&purchase).await["status"], "pending", "the webhook was lost");
        let run = shop.run_job("webhook-reconciler").await;
        assert!(run["affected"].as_i64().unwrap() >= 1, "{run}");
        let order = shop.order_becomes(&purchase, "paid").await;
        assert_eq!(ticket_codes(&order).len(), 2);
        let again = shop.run_job("webhook-reconciler").await;
        assert_eq!(again["affected"], 0, "nothing new the second time");
        assert_eq!(shop.inventory().await, (2, 0, 8));
        let events = shop.webhook_events().await;
        let found = events.iter().find(|e| e["type"] == "payment_intent.succeeded").unwrap();
        assert_eq!(found["delivery_count"], 0, "found by reconciliation, never delivered");
        let metrics = shop.app.metrics().await;
        assert!(
            metrics.contains("boxoffice_webhook_events_total{outcome=\"reconciled\"}"),
            "{metrics}"
        );
    }
);
