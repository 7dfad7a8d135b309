//! Golden fixtures from Stripe's API reference (see `fixtures/README.md`): our types parse
//! Stripe's documented shapes, and the test double answers with those shapes — every key a
//! fixture has, with the same JSON type.

mod common;

use boxoffice_stripe::types::ErrorResponse;
use boxoffice_stripe::{Charge, Event, PaymentIntent, PaymentIntentStatus, Refund};
use common::*;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `expected` is in `actual` with the same JSON type, recursively. Null on
/// either side matches anything: those fields are nullable in Stripe's reference.
fn assert_same_shape(path: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let Some(found) = actual.get(key) else {
                    panic!("{path}.{key} is missing from the double's response");
                };
                if key == "metadata" {
                    // Free-form: its keys are the caller's, only its type is Stripe's.
                    assert_eq!(type_name(found), "object", "type of {path}.metadata");
                    continue;
                }
                assert_same_shape(&format!("{path}.{key}"), value, found);
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            if let (Some(e), Some(a)) = (expected.first(), actual.first()) {
                assert_same_shape(&format!("{path}[0]"), e, a);
            }
        }
        (expected, actual) => assert_eq!(type_name(expected), type_name(actual), "type of {path}"),
    }
}

#[test]
fn our_types_parse_stripes_documented_shapes() {
    let pi: PaymentIntent = serde_json::from_value(fixture("payment_intent.json")).expect("payment intent");
    assert_eq!(pi.id, "pi_3MtwBwLkdIwHu7ix28a3tqPa");
    assert_eq!(pi.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(pi.amount, 2000);
    assert!(pi.client_secret.is_some());

    let refund: Refund = serde_json::from_value(fixture("refund.json")).expect("refund");
    assert_eq!(refund.payment_intent.as_deref(), Some("pi_1GszsK2eZvKYlo2CfhZyoZLp"));
    assert_eq!(refund.status.as_deref(), Some("succeeded"));

    let charge: Charge = serde_json::from_value(fixture("charge.json")).expect("charge");
    assert!(charge.refunded);
    assert_eq!(charge.amount_refunded, 1099);

    let event: Event = serde_json::from_value(fixture("event_payment_intent_succeeded.json")).expect("event");
    assert_eq!(event.event_type, "payment_intent.succeeded");
    let inner = event.payment_intent().expect("data.object");
    assert_eq!(inner.status, PaymentIntentStatus::Succeeded);
    assert_eq!(inner.metadata.get("order_id").map(String::as_str), Some("ord_123"));
    assert_eq!(inner.latest_charge.as_deref(), Some("ch_3MtwBwLkdIwHu7ix28a3tqPb"));

    let error: ErrorResponse = serde_json::from_value(fixture("error_card_declined.json")).expect("error");
    assert_eq!(error.error.error_type, "card_error");
    assert_eq!(error.error.decline_code.as_deref(), Some("generic_decline"));
    assert_eq!(
        error.error.payment_intent_id.as_deref(),
        Some("pi_3MtwBwLkdIwHu7ix28a3tqPa")
    );
}

async fn raw(base: &str, method: reqwest::Method, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(API_KEY)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = bounded(request.send()).await.expect("request");
    let status = response.status().as_u16();
    (status, bounded(response.json()).await.expect("json"))
}

#[tokio::test]
async fn the_double_answers_with_stripes_shapes() {
    let double = spawn_double(None).await;
    let base = double.base.as_str();
    let post = reqwest::Method::POST;

    let (status, created) = raw(
        base,
        post.clone(),
        "/v1/payment_intents",
        Some("c1"),
        "amount=2000&currency=usd",
    )
    .await;
    assert_eq!(status, 200);
    assert_same_shape("payment_intent", &fixture("payment_intent.json"), &created);
    let id = created["id"].as_str().expect("id").to_owned();

    let (status, paid) = raw(
        base,
        post.clone(),
        &format!("/v1/payment_intents/{id}/confirm"),
        Some("f1"),
        "payment_method=pm_card_visa",
    )
    .await;
    assert_eq!(status, 200);
    assert_same_shape("confirmed", &fixture("payment_intent.json"), &paid);

    let (status, refund) = raw(
        base,
        post.clone(),
        "/v1/refunds",
        Some("r1"),
        &format!("payment_intent={id}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_same_shape("refund", &fixture("refund.json"), &refund);

    let (_, declined_pi) = raw(
        base,
        post.clone(),
        "/v1/payment_intents",
        Some("c2"),
        "amount=2000&currency=usd",
    )
    .await;
    let declined_id = declined_pi["id"].as_str().expect("id").to_owned();
    let (status, declined) = raw(
        base,
        post,
        &format!("/v1/payment_intents/{declined_id}/confirm"),
        Some("f2"),
        "payment_method=pm_card_chargeDeclined",
    )
    .await;
    assert_eq!(status, 402);
    assert_same_shape("error", &fixture("error_card_declined.json"), &declined);

    let (status, events) = raw(base, reqwest::Method::GET, "/v1/events?limit=100", None, "").await;
    assert_eq!(status, 200);
    let events = events["data"].as_array().expect("data").clone();
    let by_type = |t: &str| {
        events
            .iter()
            .find(|e| e["type"] == t)
            .unwrap_or_else(|| panic!("no {t} event"))
            .clone()
    };
    let event_fixture = fixture("event_payment_intent_succeeded.json");
    for event in &events {
        let mut envelope = event_fixture.clone();
        envelope["data"]["object"] = Value::Null;
        assert_same_shape("event", &envelope, event);
    }
    assert_same_shape("event", &event_fixture, &by_type("payment_intent.succeeded"));
    let refunded = by_type("charge.refunded");
    assert_same_shape("charge.refunded", &fixture("charge.json"), &refunded["data"]["object"]);
    assert_eq!(refunded["data"]["object"]["refunded"], true);
    assert_same_shape(
        "refund.created",
        &fixture("refund.json"),
        &by_type("refund.created")["data"]["object"],
    );
    assert_same_shape(
        "payment_failed",
        &fixture("error_card_declined.json")["error"]["payment_intent"],
        &by_type("payment_intent.payment_failed")["data"]["object"],
    );
}
