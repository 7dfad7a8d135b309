//! The double's API faults, seen through the client: every indeterminate failure is retried
//! with the same idempotency key and ends in exactly one PaymentIntent; without retries the
//! client reports the outcome as unknown.

mod common;

use std::time::Duration;

use boxoffice_stripe::{IndeterminateReason, StripeError};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn payment_intent_count(base: &str) -> usize {
    bounded(client(base, 0).list_payment_intents(100, None))
        .await
        .expect("list")
        .data
        .len()
}

async fn retried_create_makes_one_intent(fault: &str) {
    let double = spawn_double(None).await;
    set_fault(&double.base, fault, 2, None).await;
    let pi = bounded(client(&double.base, 3).create_payment_intent(&params(1200, fault), fault))
        .await
        .unwrap_or_else(|e| panic!("{fault}: {e}"));
    assert_eq!(payment_intent_count(&double.base).await, 1, "{fault}");
    let listed = bounded(client(&double.base, 0).retrieve_payment_intent(&pi.id))
        .await
        .expect("retrieve");
    assert_eq!(listed.id, pi.id);
}

#[tokio::test]
async fn http_500_is_retried_into_one_intent() {
    retried_create_makes_one_intent("http_500").await;
}

#[tokio::test]
async fn drop_connection_is_retried_into_one_intent() {
    retried_create_makes_one_intent("drop_connection").await;
}

#[tokio::test]
async fn drop_response_after_commit_is_retried_into_one_intent() {
    retried_create_makes_one_intent("drop_response_after_commit").await;
}

#[tokio::test]
async fn without_retries_each_fault_is_indeterminate() {
    let double = spawn_double(None).await;
    let client = client(&double.base, 0);
    for fault in ["http_500", "drop_connection", "drop_response_after_commit"] {
        set_fault(&double.base, fault, 1, None).await;
        let error = bounded(client.create_payment_intent(&params(300, fault), fault))
            .await
            .expect_err(fault);
        match &error {
            StripeError::Indeterminate { attempts: 1, reason } => match (fault, reason) {
                ("http_500", IndeterminateReason::Status { status: 500, .. }) => {}
                ("drop_connection" | "drop_response_after_commit", IndeterminateReason::IncompleteResponse(_)) => {}
                _ => panic!("{fault}: unexpected reason {reason:?}"),
            },
            other => panic!("{fault}: unexpected {other:?}"),
        }
    }
    // Only the commit-then-cut request did the work; its retry replays it.
    assert_eq!(payment_intent_count(&double.base).await, 1);
    let replay =
        bounded(client.create_payment_intent(&params(300, "drop_response_after_commit"), "drop_response_after_commit"))
            .await
            .expect("replay");
    assert_eq!(replay.amount, 300);
    assert_eq!(payment_intent_count(&double.base).await, 1);
}

#[tokio::test]
async fn drop_connection_sends_no_response_at_all() {
    let double = spawn_double(None).await;
    set_fault(&double.base, "drop_connection", 1, None).await;
    let addr = double.base.trim_start_matches("http://").to_owned();
    let received = bounded(async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let request = format!("GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buffer = Vec::new();
        // EOF or reset: either way, nothing of a response.
        let _ = stream.read_to_end(&mut buffer).await;
        buffer
    })
    .await;
    assert!(received.is_empty(), "got {:?}", String::from_utf8_lossy(&received));
}

#[tokio::test]
async fn delay_fault_slows_the_next_requests_only() {
    let double = spawn_double(None).await;
    let client = client(&double.base, 0);
    set_fault(&double.base, "delay", 1, Some(400)).await;
    let started = std::time::Instant::now();
    bounded(client.list_events(1, None, None)).await.expect("slow");
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = std::time::Instant::now();
    bounded(client.list_events(1, None, None)).await.expect("fast");
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn reset_clears_faults_and_control_needs_no_key() {
    let double = spawn_double(None).await;
    set_fault(&double.base, "http_500", 5, None).await;
    let response = reqwest::Client::new()
        .post(format!("{}/_control/reset", double.base))
        .send()
        .await
        .expect("reset");
    assert!(response.status().is_success());
    bounded(client(&double.base, 0).list_events(1, None, None))
        .await
        .expect("no fault left");

    let unknown = reqwest::Client::new()
        .post(format!("{}/_control/faults", double.base))
        .json(&serde_json::json!({"fault": "meteor", "count": 1}))
        .send()
        .await
        .expect("unknown fault");
    assert_eq!(unknown.status(), 400);
}
