//! Test helpers: a fresh database per test on either engine, and `spawn_app`, which runs
//! the real server on port 0 over it.
//!
//! PostgreSQL tests use `BOXOFFICE_TEST_POSTGRES_URL` (set by `scripts/test.sh`, which
//! finds or starts a server), falling back to the local server on 127.0.0.1:5432. They
//! fail loudly when no server is reachable; they never skip.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::auth::SecretToken;
use boxoffice_core::{Clock, ManualClock, Store};
use boxoffice_server::{Server, ServerConfig};
use serde_json::{Value, json};
use sqlx::Connection;

/// The two storage engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh, empty database, removed (SQLite) or left for `scripts/test.sh` to drop (PostgreSQL).
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

fn postgres_admin_url() -> String {
    std::env::var("BOXOFFICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl TestDatabase {
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("boxoffice.db").display());
                Self { url, _dir: Some(dir) }
            }
            Engine::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|err| {
                    panic!(
                        "PostgreSQL tests need a server: run scripts/test.sh, or set BOXOFFICE_TEST_POSTGRES_URL \
                         (tried {admin}): {err}"
                    )
                });
                let name = format!("boxoffice_test_{}", hex_suffix());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                }
            }
        }
    }

    pub async fn store(&self) -> Arc<dyn Store> {
        boxoffice_server::store::connect(&self.url).await.unwrap()
    }

    /// Runs one SQL statement straight on the database (to set up a fault, e.g. a trigger).
    pub async fn execute(&self, sql: &str) {
        if self.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }
}

fn hex_suffix() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub const OPERATOR_TOKEN: &str = "bo_admin_test_operator_token";

/// Options for a test server.
pub struct AppOptions {
    pub clock: Option<ManualClock>,
    pub rate_limit_per_minute: u32,
    pub hold_duration: Duration,
    pub sweep_interval: Duration,
    /// A Stripe base URL (e.g. a standalone double); `None` mounts the built-in one.
    pub stripe_api_base: Option<String>,
    pub stripe_secret_key: Option<String>,
    /// Webhook signing secrets; the first also signs the built-in double's deliveries.
    pub webhook_secrets: Vec<String>,
    pub idempotency_lock_timeout: Duration,
    pub payment_grace: Duration,
    /// Where alerts go; `None`: no alerts.
    pub alert_webhook_url: Option<String>,
    /// Let alerts go to non-global addresses (a receiver on 127.0.0.1 needs it).
    pub alert_webhook_allow_private: bool,
    pub alert_retry: boxoffice_core::error_store::alerts::AlertRetry,
    /// How often queued alerts are delivered (`ZERO`: tests run the job themselves).
    pub alert_interval: Duration,
    /// The error spool; `None`: a fresh temporary directory.
    pub error_spool_dir: Option<std::path::PathBuf>,
    pub error_rate_limit_per_minute: u32,
    pub sentry_dsn: Option<String>,
    /// How long error events are kept (the `error-retention` job).
    pub error_retention: Duration,
    /// The newest events kept per error group.
    pub error_events_per_group: u32,
    /// Where buyer e-mail goes (`smtp://127.0.0.1:PORT?tls=none` for a test sink); `None`:
    /// `.eml` files in the mail folder.
    pub smtp_url: Option<String>,
    pub mail_from: String,
    /// The mail folder; `None`: a fresh temporary directory.
    pub mail_dir: Option<std::path::PathBuf>,
    /// How hold requests are batched (the product's default unless a test says otherwise).
    pub hold_batching: boxoffice_core::service::HoldBatching,
    pub mail_retry: boxoffice_core::mail::MailRetry,
    /// How often queued e-mail is sent (`ZERO`: tests run the job themselves).
    pub mail_interval: Duration,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            clock: None,
            rate_limit_per_minute: 0,
            hold_duration: Duration::from_secs(15 * 60),
            // Off: tests drive the sweeper themselves.
            sweep_interval: Duration::ZERO,
            stripe_api_base: None,
            stripe_secret_key: None,
            webhook_secrets: Vec::new(),
            idempotency_lock_timeout: Duration::from_secs(120),
            payment_grace: Duration::from_secs(300),
            alert_webhook_url: None,
            alert_webhook_allow_private: false,
            alert_retry: boxoffice_core::error_store::alerts::AlertRetry::default(),
            alert_interval: Duration::ZERO,
            error_spool_dir: None,
            error_rate_limit_per_minute: 0,
            sentry_dsn: None,
            error_retention: ServerConfig::default().error_retention,
            error_events_per_group: ServerConfig::default().error_events_per_group,
            smtp_url: None,
            mail_from: ServerConfig::default().mail_from,
            mail_dir: None,
            hold_batching: boxoffice_core::service::HoldBatching::default(),
            mail_retry: boxoffice_core::mail::MailRetry::default(),
            mail_interval: Duration::ZERO,
        }
    }
}

/// A running server and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Option<ManualClock>,
    pub store: Arc<dyn Store>,
    /// The error spool directory.
    pub spool_dir: std::path::PathBuf,
    _spool: Option<tempfile::TempDir>,
    /// The mail folder (where messages go without an SMTP URL).
    pub mail_dir: std::path::PathBuf,
    _mail: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(database: &TestDatabase, options: AppOptions) -> TestApp {
    let (spool_dir, spool_tempdir) = match &options.error_spool_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::tempdir().unwrap();
            (dir.path().join("spool"), Some(dir))
        }
    };
    let (mail_dir, mail_tempdir) = match &options.mail_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::tempdir().unwrap();
            (dir.path().join("mail"), Some(dir))
        }
    };
    let config = ServerConfig {
        database_url: database.url.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(SecretToken::new(OPERATOR_TOKEN)),
        hold_duration: options.hold_duration,
        sweep_interval: options.sweep_interval,
        hold_batching: options.hold_batching,
        rate_limit_per_minute: options.rate_limit_per_minute,
        stripe_api_base: options.stripe_api_base.clone(),
        stripe_secret_key: options.stripe_secret_key.as_deref().map(SecretToken::new),
        stripe_webhook_secrets: options.webhook_secrets.iter().map(SecretToken::new).collect(),
        idempotency_lock_timeout: options.idempotency_lock_timeout,
        payment_grace: options.payment_grace,
        payment_completer_interval: Duration::ZERO,
        webhook_worker_interval: Duration::ZERO,
        webhook_reconcile_interval: Duration::ZERO,
        // Off: tests run retention themselves (a run at start would race their reports).
        error_retention_interval: Duration::ZERO,
        alert_webhook_url: options.alert_webhook_url.clone(),
        alert_webhook_allow_private: options.alert_webhook_allow_private,
        alert_retry: options.alert_retry,
        alert_interval: options.alert_interval,
        error_spool_dir: Some(spool_dir.clone()),
        error_rate_limit_per_minute: options.error_rate_limit_per_minute,
        sentry_dsn: options.sentry_dsn.clone(),
        error_retention: options.error_retention,
        error_events_per_group: options.error_events_per_group,
        smtp_url: options.smtp_url.as_deref().map(SecretToken::new),
        mail_from: options.mail_from.clone(),
        mail_dir: Some(mail_dir.clone()),
        mail_retry: options.mail_retry,
        mail_interval: options.mail_interval,
        ..ServerConfig::default()
    };
    let clock: Arc<dyn Clock> = match &options.clock {
        Some(clock) => Arc::new(clock.clone()),
        None => Arc::new(boxoffice_core::SystemClock),
    };
    let server = Server::build(config, clock).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let store = server.boxoffice().store().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    TestApp {
        base,
        client,
        clock: options.clock,
        store,
        spool_dir,
        _spool: spool_tempdir,
        mail_dir,
        _mail: mail_tempdir,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// An answer: status, headers and JSON body (Null when the body is not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.url(path))).await
    }

    /// A request to the built-in Stripe double (mounted under `/_fake-stripe`) with its API
    /// key, form-encoded as Stripe's API is.
    pub async fn fake_stripe(&self, key: &str, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Answer {
        let request = self
            .client
            .request(method, self.url(&format!("/_fake-stripe{path}")))
            .bearer_auth(key)
            .form(form);
        self.send(request).await
    }

    /// POSTs `payload` to the Stripe webhook endpoint with this `Stripe-Signature` header.
    pub async fn post_stripe_webhook(&self, payload: &str, signature: &str) -> Answer {
        let request = self
            .client
            .post(self.url("/webhooks/stripe"))
            .header("stripe-signature", signature)
            .header("content-type", "application/json")
            .body(payload.to_owned());
        self.send(request).await
    }

    /// Delivers `payload` as Stripe does: signed with `secret` at the current time.
    pub async fn deliver_stripe_webhook(&self, payload: &str, secret: &str) -> Answer {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signature = boxoffice_stripe::webhook::sign(payload.as_bytes(), secret, now);
        self.post_stripe_webhook(payload, &signature).await
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.unwrap()
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Answer {
        self.send(self.client.get(self.url(path)).bearer_auth(token)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.client.post(self.url(path)).json(&body)).await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> Answer {
        self.send(self.client.post(self.url(path)).bearer_auth(token).json(&body))
            .await
    }

    pub async fn patch_as(&self, token: &str, path: &str, body: Value) -> Answer {
        self.send(self.client.patch(self.url(path)).bearer_auth(token).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.client.delete(self.url(path))).await
    }

    /// Creates an organization as the operator; returns its id.
    pub async fn create_organization(&self, name: &str) -> String {
        let answer = self
            .post_as(OPERATOR_TOKEN, "/api/v1/organizations", json!({ "name": name }))
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["id"].as_str().unwrap().to_owned()
    }

    /// Creates an event with ticket types `(name, price_cents, capacity)`; returns the event
    /// id and the ticket type ids in order.
    pub async fn create_event(&self, org: &str, ticket_types: &[(&str, i64, i64)]) -> (String, Vec<String>) {
        self.create_event_with(org, json!({}), ticket_types).await
    }

    pub async fn create_event_with(
        &self,
        org: &str,
        extra: Value,
        ticket_types: &[(&str, i64, i64)],
    ) -> (String, Vec<String>) {
        let mut body = json!({
            "organization_id": org, "name": "Test event", "starts_at": "2030-06-01T19:30:00Z", "currency": "EUR",
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let answer = self.post_as(OPERATOR_TOKEN, "/api/v1/events", body).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        let event = answer.body["id"].as_str().unwrap().to_owned();
        let mut ids = Vec::new();
        for (name, price, capacity) in ticket_types {
            let answer = self
                .post_as(
                    OPERATOR_TOKEN,
                    &format!("/api/v1/events/{event}/ticket-types"),
                    json!({ "name": name, "price_cents": price, "capacity": capacity }),
                )
                .await;
            assert_eq!(answer.status, 201, "{}", answer.body);
            ids.push(answer.body["id"].as_str().unwrap().to_owned());
        }
        (event, ids)
    }

    /// Holds `items` of `(ticket_type_id, quantity)`.
    pub async fn hold(&self, event: &str, items: &[(&str, i64)]) -> Answer {
        let items: Vec<Value> = items
            .iter()
            .map(|(id, quantity)| json!({ "ticket_type_id": id, "quantity": quantity }))
            .collect();
        self.post("/api/v1/reservations", json!({ "event_id": event, "items": items }))
            .await
    }

    /// The ticket type's inventory as the public event endpoint shows it: (sold, held, available).
    pub async fn inventory(&self, event: &str, ticket_type: &str) -> (i64, i64, i64) {
        let answer = self.get(&format!("/api/v1/events/{event}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let tt = answer.body["ticket_types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|tt| tt["id"] == ticket_type)
            .unwrap()
            .clone();
        (
            tt["sold"].as_i64().unwrap(),
            tt["held"].as_i64().unwrap(),
            tt["available"].as_i64().unwrap(),
        )
    }

    pub fn advance(&self, by: Duration) {
        self.clock
            .as_ref()
            .expect("this app was spawned with a manual clock")
            .advance(by);
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Declares one async test per engine: `both_engines!(name, |engine| async { … })`
/// expands to `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                ($body)($crate::common::Engine::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                ($body)($crate::common::Engine::Postgres).await
            }
        }
    };
}

impl TestDatabase {
    /// The same PostgreSQL database reached through `host:port` (a proxy in front of the
    /// server), for tests that make the network misbehave. Not for SQLite.
    pub fn postgres_through(&self, host_port: &str) -> TestDatabase {
        let (scheme_and_user, rest) = self.url.split_once('@').expect("a postgres URL with a user");
        let (_, path) = rest.split_once('/').expect("a postgres URL with a database");
        TestDatabase {
            url: format!("{scheme_and_user}@{host_port}/{path}"),
            _dir: None,
        }
    }

    /// The `host:port` of a PostgreSQL test database.
    pub fn postgres_address(&self) -> String {
        let (_, rest) = self.url.split_once('@').expect("a postgres URL with a user");
        rest.split_once('/')
            .expect("a postgres URL with a database")
            .0
            .to_owned()
    }

    /// Drops a PostgreSQL test database right away (the model test creates one per case;
    /// `scripts/test.sh` would otherwise drop them only at the end). SQLite's goes with its
    /// directory. Call it after the server using it has stopped.
    pub async fn drop_now(&self) {
        if self._dir.is_some() {
            return;
        }
        let Some((_, name)) = self.url.rsplit_once('/') else {
            return;
        };
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}
