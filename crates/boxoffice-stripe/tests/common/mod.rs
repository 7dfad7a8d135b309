//! Shared test plumbing: the double on 127.0.0.1:0 and a client pointed at it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use boxoffice_stripe::fake::{self, WebhookRetry};
use boxoffice_stripe::{CreatePaymentIntent, FakeStripe, FakeStripeConfig, StripeClient, StripeConfig};
use secrecy::SecretString;

pub const API_KEY: &str = "sk_test_boxoffice";
pub const WEBHOOK_SECRET: &str = "whsec_test_boxoffice";

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Double {
    pub fake: FakeStripe,
    /// `http://127.0.0.1:PORT`, to which the client appends `/v1/…`.
    pub base: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub async fn spawn_double(webhook_url: Option<String>) -> Double {
    let mut config = FakeStripeConfig::new(API_KEY, WEBHOOK_SECRET, webhook_url);
    config.webhook_retry = WebhookRetry {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        max_attempts: 10,
        timeout: Duration::from_secs(2),
    };
    let fake = FakeStripe::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = fake.clone();
    tokio::spawn(async move {
        let _ = fake::serve(listener, served, async {
            let _ = rx.await;
        })
        .await;
    });
    Double {
        fake,
        base,
        _shutdown: tx,
    }
}

pub fn client(base: &str, max_retries: u32) -> StripeClient {
    let mut config = StripeConfig::new(base, SecretString::from(API_KEY));
    config.timeout = Duration::from_secs(3);
    config.max_retries = max_retries;
    config.initial_backoff = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(200);
    StripeClient::new(config).expect("client")
}

pub fn params(amount: i64, order: &str) -> CreatePaymentIntent {
    CreatePaymentIntent {
        amount,
        currency: "eur".into(),
        metadata: BTreeMap::from([("order_id".to_owned(), order.to_owned())]),
        description: Some(format!("Order {order}")),
    }
}

pub async fn set_fault(base: &str, fault: &str, count: u32, delay_ms: Option<u64>) {
    let mut body = serde_json::json!({ "fault": fault, "count": count });
    if let Some(ms) = delay_ms {
        body["delay_ms"] = ms.into();
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/_control/faults"))
        .json(&body)
        .send()
        .await
        .expect("fault request");
    assert!(
        response.status().is_success(),
        "setting fault {fault}: {}",
        response.status()
    );
}

/// Bounds a future by [`WAIT`].
pub async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("timed out")
}

/// Polls `check` until it returns `Some`, for at most [`WAIT`].
pub async fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    bounded(async {
        loop {
            if let Some(value) = check() {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}
