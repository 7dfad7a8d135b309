//! The error store end to end (SPEC §7), on both engines: alerts to a real webhook receiver
//! (policy, cooldown, retries, giving up), reports kept in the spool while the database is
//! down and stored once it is back, panics and failing jobs recorded with what explains
//! them, forwarding to Sentry, and retention.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_core::ManualClock;
use boxoffice_core::error_store::alerts::AlertRetry;
use boxoffice_core::error_store::reports::GroupFilter;
use boxoffice_server::faults;
use common::{Answer, AppOptions, Engine, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use serde_json::{Value, json};
use sqlx::Connection;

/// The panic hook of `faults` is process-global: a test that arms it holds this for writing,
/// every other test holds it for reading, so no other test's request takes the panic when
/// the tests of this file share one process (`cargo test`; nextest runs each test alone).
static FAULTS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// How long any wait for something asynchronous (the writer, the spool drainer, Sentry's
/// transport) may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

// ----- a webhook receiver -------------------------------------------------------------

/// A Slack-like incoming webhook on 127.0.0.1:0 that records every POST and answers 500 as
/// often as it is told to.
struct Receiver {
    url: String,
    posts: Arc<Mutex<Vec<(u16, Value)>>>,
    failures_left: Arc<AtomicUsize>,
}

type ReceiverState = (Arc<Mutex<Vec<(u16, Value)>>>, Arc<AtomicUsize>);

async fn receive(State((posts, failures_left)): State<ReceiverState>, body: axum::body::Bytes) -> StatusCode {
    let fail = failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
        .is_ok();
    let status = if fail { 500 } else { 200 };
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    posts.lock().unwrap().push((status, body));
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    /// A receiver that fails its first `failures` requests (`usize::MAX`: always).
    async fn start(failures: usize) -> Self {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let failures_left = Arc::new(AtomicUsize::new(failures));
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state((posts.clone(), failures_left.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            url,
            posts,
            failures_left,
        }
    }

    /// Every POST so far: the status answered and the body.
    fn posts(&self) -> Vec<(u16, Value)> {
        self.posts.lock().unwrap().clone()
    }

    /// The bodies of the POSTs answered 200.
    fn delivered(&self) -> Vec<Value> {
        self.posts()
            .into_iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
            .collect()
    }

    fn fail_next(&self, failures: usize) {
        self.failures_left.store(failures, Ordering::SeqCst);
    }
}

// ----- helpers --------------------------------------------------------------------------

/// Reports an error as the operator; returns the event id.
async fn report(app: &TestApp, body: Value) -> String {
    let answer = app.post_as(OPERATOR_TOKEN, "/api/v1/errors", body).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

async fn run_job(app: &TestApp, job: &str) -> Answer {
    app.post_as(OPERATOR_TOKEN, &format!("/api/v1/admin/jobs/{job}/run"), json!({}))
        .await
}

/// Runs the alert job once; returns how many alerts it delivered.
async fn run_alerts(app: &TestApp) -> u64 {
    let run = run_job(app, "alert-sender").await;
    assert_eq!(run.status, 200, "{}", run.body);
    assert_eq!(run.body["outcome"], "succeeded", "{}", run.body);
    run.body["affected"].as_u64().unwrap()
}

/// Every group, as the admin API lists them.
async fn groups(app: &TestApp) -> Vec<Value> {
    let answer = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["data"].as_array().unwrap().clone()
}

async fn group_detail(app: &TestApp, group_id: &str) -> Answer {
    app.get_as(OPERATOR_TOKEN, &format!("/api/v1/admin/errors/{group_id}"))
        .await
}

/// Polls `check` every 100 ms until it answers, for at most [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a group matching `matches` to be listed.
async fn wait_for_group(app: &TestApp, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    eventually(what, || async {
        let answer = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
        (answer.status == 200)
            .then(|| answer.body["data"].as_array().cloned())
            .flatten()?
            .into_iter()
            .find(|group| matches(group))
    })
    .await
}

/// Waits for the stored event of the request `request_id` (a recorded server failure);
/// returns its group (as listed) and the event (as the group's detail shows it).
async fn wait_for_request_event(app: &TestApp, request_id: &str) -> (Value, Value) {
    eventually(&format!("the failure of request {request_id}"), || async {
        let answer = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
        for group in answer.body["data"].as_array()? {
            let detail = group_detail(app, group["id"].as_str()?).await;
            let found = detail.body["events"]
                .as_array()?
                .iter()
                .find(|event| event["request_id"] == request_id);
            if let Some(event) = found {
                return Some((group.clone(), event.clone()));
            }
        }
        None
    })
    .await
}

/// Waits until the jobs that run once at start (the hourly ones) have run, so that their
/// writes are out of the way.
async fn wait_for_startup_jobs(app: &TestApp) {
    // The jobs a test server starts on its own (the others are off in `spawn_app`).
    for job in ["idempotency-reaper"] {
        eventually(&format!("the first run of {job}"), || async {
            let runs = app
                .get_as(OPERATOR_TOKEN, &format!("/api/v1/admin/jobs/runs?job={job}"))
                .await;
            (runs.status == 200 && runs.body["data"].as_array().is_some_and(|runs| !runs.is_empty())).then_some(())
        })
        .await;
    }
}

/// Every stored event id with its group's scope, read through the store (all events, not
/// only the latest 20 the admin API shows). `None` while the database cannot be read.
async fn stored_events(app: &TestApp) -> Option<HashMap<String, String>> {
    let groups = app.store.list_error_groups(&GroupFilter::default(), 500).await.ok()?;
    let mut events = HashMap::new();
    for group in groups {
        let (group, stored) = app.store.get_error_group(&group.id, 100_000).await.ok()?;
        for event in stored {
            events.insert(event.event_id, group.scope.clone());
        }
    }
    Some(events)
}

/// Spooled files waiting (`jsonl`) or set aside (`rejected`) in the spool directory.
fn spool_files(dir: &Path, extension: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                !name.starts_with('.') && entry.path().extension().is_some_and(|ext| ext == extension)
            })
            .count()
    })
}

fn request_id(answer: &Answer) -> String {
    answer.headers["x-request-id"].to_str().unwrap().to_owned()
}

/// An organization's id and its DSN's project id and public key.
async fn organization_with_dsn(app: &TestApp, name: &str) -> (String, String, i64, String) {
    let answer = app
        .post_as(OPERATOR_TOKEN, "/api/v1/organizations", json!({ "name": name }))
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let dsn = answer.body["error_dsn"].as_str().unwrap().to_owned();
    let (key, rest) = dsn.strip_prefix("http://").unwrap().split_once('@').unwrap();
    let project_id = rest.rsplit('/').next().unwrap().parse().unwrap();
    (
        answer.body["id"].as_str().unwrap().to_owned(),
        dsn.clone(),
        project_id,
        key.to_owned(),
    )
}

/// Sends a minimal Sentry envelope with one event.
async fn send_envelope(app: &TestApp, project_id: i64, key: &str, event_id: &str, message: &str) -> Answer {
    let body = format!(
        "{}\n{}\n{}\n",
        json!({ "event_id": event_id }),
        json!({ "type": "event" }),
        json!({ "message": message, "level": "error", "fingerprint": ["outage-envelope"] }),
    );
    app.send(
        app.client
            .post(app.url(&format!("/api/{project_id}/envelope/?sentry_key={key}")))
            .header("content-type", "application/x-sentry-envelope")
            .body(body),
    )
    .await
}

fn postgres_admin_url() -> String {
    std::env::var("BOXOFFICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Lets the test database accept connections or not, terminating those it has when not.
async fn postgres_accepts_connections(db: &TestDatabase, accept: bool) {
    let name = db.url.rsplit('/').next().unwrap();
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url()).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {accept}"))
        .execute(&mut admin)
        .await
        .unwrap();
    if !accept {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

// ----- 1. alerts --------------------------------------------------------------------------

both_engines!(
    alerts_go_out_once_per_new_group_critical_or_regression_outside_the_cooldown,
    |engine| async move {
        let _faults = FAULTS.read().await;
        let receiver = Receiver::start(0).await;
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(
            &db,
            AppOptions {
                clock: Some(ManualClock::starting_now()),
                alert_webhook_url: Some(receiver.url.clone()),
                alert_webhook_allow_private: true,
                ..AppOptions::default()
            },
        )
        .await;
        assert_eq!(run_alerts(&app).await, 0, "nothing queued, nothing sent");

        // Personal data planted in every report: none of it may reach the receiver.
        let crash = |severity: &str| {
            json!({
                "severity": severity,
                "message": "Checkout crashed for ana.planted@example.org from 203.0.113.9",
                "component": "checkout",
                "fingerprint": ["checkout-crash"],
                "context": { "email": "ana.planted@example.org", "card": "4242 4242 4242 4242" },
            })
        };
        report(
            &app,
            json!({ "severity": "warning", "message": "Seat map slow for ana.planted@example.org", "component": "seatmap" }),
        )
        .await;
        assert_eq!(run_alerts(&app).await, 0, "a new warning-only group does not alert");
        assert!(receiver.posts().is_empty());

        report(&app, crash("error")).await;
        report(
            &app,
            json!({ "severity": "critical", "message": "Payment provider timed out", "component": "payments" }),
        )
        .await;
        assert_eq!(
            run_alerts(&app).await,
            2,
            "one alert per new group of severity error or worse"
        );
        let posts = receiver.posts();
        assert_eq!(posts.len(), 2);
        for (status, body) in &posts {
            assert_eq!(*status, 200);
            let text = body["text"]
                .as_str()
                .unwrap_or_else(|| panic!("Slack needs \"text\": {body}"));
            assert!(text.contains("New error"), "{text}");
            let blocks = body["blocks"]
                .as_array()
                .unwrap_or_else(|| panic!("\"blocks\": {body}"));
            assert!(!blocks.is_empty());
            assert!(blocks.iter().all(|block| block["type"].is_string()), "{body}");
        }
        let listed = groups(&app).await;
        let checkout = listed.iter().find(|g| g["component"] == "checkout").unwrap();
        let checkout_id = checkout["id"].as_str().unwrap().to_owned();
        let payments_id = listed.iter().find(|g| g["component"] == "payments").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for id in [&checkout_id, &payments_id] {
            assert_eq!(
                posts
                    .iter()
                    .filter(|(_, body)| body.to_string().contains(id.as_str()))
                    .count(),
                1,
                "exactly one alert names {id}"
            );
        }
        assert_eq!(run_alerts(&app).await, 0, "a delivered alert is not sent again");

        // Two more critical events within 10 minutes of the group's alert: no alert.
        app.advance(minutes(1));
        report(&app, crash("critical")).await;
        assert_eq!(run_alerts(&app).await, 0);
        app.advance(minutes(1));
        report(&app, crash("critical")).await;
        assert_eq!(run_alerts(&app).await, 0);
        assert_eq!(receiver.posts().len(), 2, "the cooldown holds");

        // 13 minutes after the group's alert, a critical event alerts again.
        app.advance(minutes(11));
        report(&app, crash("critical")).await;
        assert_eq!(run_alerts(&app).await, 1);
        let critical = receiver.posts().last().unwrap().1.clone();
        assert!(critical["text"].as_str().unwrap().contains("Critical"), "{critical}");
        assert!(critical.to_string().contains(&checkout_id));

        // Resolved, then seen again after the cooldown: one regression alert.
        let resolved = app
            .post_as(
                OPERATOR_TOKEN,
                &format!("/api/v1/admin/errors/{checkout_id}/resolve"),
                json!({}),
            )
            .await;
        assert_eq!(resolved.status, 200, "{}", resolved.body);
        app.advance(minutes(11));
        report(&app, crash("error")).await;
        assert_eq!(run_alerts(&app).await, 1);
        let regression = receiver.posts().last().unwrap().1.clone();
        assert!(
            regression["text"].as_str().unwrap().contains("Regression"),
            "{regression}"
        );
        assert!(regression.to_string().contains(&checkout_id));

        // Resolved again and back within the cooldown: reopened, but no second alert yet.
        app.post_as(
            OPERATOR_TOKEN,
            &format!("/api/v1/admin/errors/{checkout_id}/resolve"),
            json!({}),
        )
        .await;
        app.advance(minutes(1));
        report(&app, crash("error")).await;
        assert_eq!(run_alerts(&app).await, 0);
        assert_eq!(group_detail(&app, &checkout_id).await.body["resolved"], false);

        let posts = receiver.posts();
        assert_eq!(posts.len(), 4, "{posts:#?}");
        for (_, body) in posts {
            let text = body.to_string();
            for planted in ["ana.planted", "example.org", "203.0.113.9", "4242 4242"] {
                assert!(!text.contains(planted), "{planted} reached the alert webhook: {text}");
            }
        }
    }
);

// ----- 2. a failing receiver ------------------------------------------------------------------

both_engines!(
    failed_deliveries_are_retried_with_backoff_then_recorded_without_alerting,
    |engine| async move {
        let _faults = FAULTS.read().await;
        let receiver = Receiver::start(usize::MAX).await;
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(
            &db,
            AppOptions {
                clock: Some(ManualClock::starting_now()),
                alert_webhook_url: Some(receiver.url.clone()),
                alert_webhook_allow_private: true,
                alert_retry: AlertRetry {
                    base: Duration::from_secs(1),
                    max_wait: minutes(1),
                    max_attempts: 3,
                },
                ..AppOptions::default()
            },
        )
        .await;
        report(
            &app,
            json!({ "severity": "error", "message": "Inventory sync failed", "component": "sync" }),
        )
        .await;
        assert_eq!(run_alerts(&app).await, 0);
        assert_eq!(receiver.posts().len(), 1, "first attempt");
        assert_eq!(run_alerts(&app).await, 0);
        assert_eq!(receiver.posts().len(), 1, "not due again before its backoff");
        app.advance(Duration::from_secs(1));
        run_alerts(&app).await;
        assert_eq!(receiver.posts().len(), 2, "second attempt after 1 s");
        app.advance(Duration::from_secs(1));
        run_alerts(&app).await;
        assert_eq!(receiver.posts().len(), 2, "the backoff doubled to 2 s");
        app.advance(Duration::from_secs(1));
        run_alerts(&app).await;
        assert_eq!(receiver.posts().len(), 3, "third and last attempt");
        app.advance(Duration::from_secs(60 * 60));
        run_alerts(&app).await;
        assert_eq!(receiver.posts().len(), 3, "given up after max_attempts");

        let gave_up = wait_for_group(&app, "the give-up recorded under component alerts", |g| {
            g["component"] == "alerts" && g["scope"] == "server"
        })
        .await;
        assert_eq!(gave_up["severity"], "error");
        let detail = group_detail(&app, gave_up["id"].as_str().unwrap()).await;
        let message = detail.body["events"][0]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("after 3 attempts") && message.contains("500"),
            "{message}"
        );
        app.advance(Duration::from_secs(60 * 60));
        assert_eq!(run_alerts(&app).await, 0);
        assert_eq!(receiver.posts().len(), 3, "the alerts group itself never alerts");

        // A receiver that fails once, then works: delivered exactly once.
        receiver.fail_next(1);
        report(
            &app,
            json!({ "severity": "error", "message": "Seat release failed", "component": "holds" }),
        )
        .await;
        assert_eq!(run_alerts(&app).await, 0);
        app.advance(Duration::from_secs(1));
        assert_eq!(run_alerts(&app).await, 1);
        app.advance(Duration::from_secs(60 * 60));
        assert_eq!(run_alerts(&app).await, 0);
        let posts = receiver.posts();
        assert_eq!(posts.len(), 5, "{posts:#?}");
        let delivered = receiver.delivered();
        assert_eq!(delivered.len(), 1, "{delivered:#?}");
        assert!(
            delivered[0]["text"].as_str().unwrap().contains("Seat release failed"),
            "{}",
            delivered[0]
        );
    }
);

// ----- 3. the database is down: spooled, then stored, none lost -----------------------------

/// PostgreSQL refuses connections (`ALLOW_CONNECTIONS false`, connections terminated) while
/// 50 reports arrive, by the JSON API and as Sentry envelopes, and a request fails: all
/// are answered, spooled, and stored once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_reports_are_spooled_then_all_stored() {
    let _faults = FAULTS.read().await;
    let db = TestDatabase::new(Engine::Postgres).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let (org, _, project_id, key) = organization_with_dsn(&app, "Outage").await;
    // One envelope before the outage: the project is cached, so envelopes authenticate
    // without the database.
    let warm = send_envelope(&app, project_id, &key, &boxoffice_core::ids::random_hex(), "warm-up").await;
    assert_eq!(warm.status, 200, "{}", warm.body);
    assert_eq!(app.get("/readyz").await.status, 200);

    postgres_accepts_connections(&db, false).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);

    let mut sent: HashMap<String, &str> = HashMap::new();
    for chunk in 0..5 {
        let requests = (0..10).map(|i| {
            let n = chunk * 10 + i;
            let app = &app;
            let key = &key;
            async move {
                if n % 3 == 0 {
                    let id = boxoffice_core::ids::random_hex();
                    let answer = send_envelope(app, project_id, key, &id, &format!("envelope {n} in the outage")).await;
                    assert_eq!(answer.status, 200, "envelope {n}: {}", answer.body);
                    assert_eq!(answer.body["id"].as_str(), Some(id.as_str()));
                    (id, "envelope")
                } else {
                    let answer = app
                        .post_as(
                            OPERATOR_TOKEN,
                            "/api/v1/errors",
                            json!({ "severity": "error", "message": format!("report {n} in the outage"), "fingerprint": ["outage-api"] }),
                        )
                        .await;
                    assert_eq!(answer.status, 202, "report {n}: {}", answer.body);
                    (answer.body["id"].as_str().unwrap().to_owned(), "api")
                }
            }
        });
        sent.extend(futures::future::join_all(requests).await);
    }
    assert_eq!(sent.len(), 50, "50 distinct event ids");
    // A request that needs the database fails meanwhile: a server failure, spooled too.
    let failed = app.get("/api/v1/events").await;
    assert!(failed.status >= 500, "{} {}", failed.status, failed.body);
    let failed_request = request_id(&failed);
    let spooled = eventually("spooled files", || async {
        let files = spool_files(&app.spool_dir, "jsonl");
        (files > 0).then_some(files)
    })
    .await;
    assert!(spooled > 0);
    assert_eq!(app.get("/readyz").await.status, 503);

    postgres_accepts_connections(&db, true).await;
    let stored = eventually("every spooled report stored and the spool empty", || async {
        let stored = stored_events(&app).await?;
        let all = sent.keys().all(|id| stored.contains_key(id));
        (all && spool_files(&app.spool_dir, "jsonl") == 0).then_some(stored)
    })
    .await;
    assert_eq!(spool_files(&app.spool_dir, "rejected"), 0);
    let org_scope = format!("org:{org}");
    for (id, via) in &sent {
        let scope = &stored[id];
        assert_eq!(
            scope,
            if *via == "api" { "server" } else { org_scope.as_str() },
            "{id} via {via}"
        );
    }
    let listed = groups(&app).await;
    let api_group = listed
        .iter()
        .find(|g| g["scope"] == "server" && g["title"].as_str().is_some_and(|t| t.contains("in the outage")))
        .unwrap_or_else(|| panic!("{listed:#?}"));
    let api_sent = sent.values().filter(|via| **via == "api").count() as i64;
    assert_eq!(api_group["count"].as_i64(), Some(api_sent), "each report counted once");

    // The failure during the outage is stored with its request id.
    let (failure, event) = wait_for_request_event(&app, &failed_request).await;
    assert_eq!(
        (failure["scope"].as_str(), failure["component"].as_str()),
        (Some("server"), Some("http"))
    );
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .starts_with("GET /api/v1/events answered 5"),
        "{event}"
    );
    assert_eq!(app.get("/readyz").await.status, 200);
}

/// PostgreSQL refuses connections for longer than 20 drain passes of the spool (40 s):
/// the spooled report must still be stored once the database is back.
///
/// Regression test: `ALLOW_CONNECTIONS false` makes every new connection fail with SQLSTATE
/// 55000, which was taken for an ordinary error rather than an outage; the spool then
/// counted each failed drain pass against its oldest file and, after 20 passes, set it
/// aside as `.rejected`, never to be stored. Now 55000 means unavailable, and a file is
/// only held at fault while the database answers a ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_long_outage_keeps_spooled_reports() {
    let _faults = FAULTS.read().await;
    let db = TestDatabase::new(Engine::Postgres).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    wait_for_startup_jobs(&app).await;
    postgres_accepts_connections(&db, false).await;
    let id = report(
        &app,
        json!({ "severity": "error", "message": "reported during a long outage" }),
    )
    .await;
    assert_eq!(spool_files(&app.spool_dir, "jsonl"), 1);
    // 20 drain passes, one every 2 s, and a margin.
    tokio::time::sleep(Duration::from_secs(44)).await;
    postgres_accepts_connections(&db, true).await;
    let mut stored = false;
    for _ in 0..100 {
        if stored_events(&app).await.is_some_and(|events| events.contains_key(&id)) {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spool: Vec<String> = std::fs::read_dir(&app.spool_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        stored,
        "the report spooled during the outage was not stored 10 s after it; the spool holds {spool:?}"
    );
    assert_eq!(spool_files(&app.spool_dir, "rejected"), 0, "{spool:?}");
}

/// SQLite: another connection holds the write lock (`BEGIN EXCLUSIVE`) for longer than the
/// store's busy timeout (30 s). A report arriving meanwhile is answered once spooled (after
/// the busy timeout) and stored once the lock is released; a server failure recorded at
/// the end of the lock is stored too.
///
/// One spooled report only, so the test takes about 30 s: a locked SQLite answers
/// `SQLITE_BUSY` only after the busy timeout, which the store maps to `StoreError::Other`
/// (not `Unavailable`); every write of the process waits its turn at the store's write gate
/// and then the whole timeout, and the pipeline retries a refused batch report by report,
/// so each further report would add 30 s or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_locked_database_reports_are_spooled_then_stored() {
    let _faults = FAULTS.write().await;
    let db = TestDatabase::new(Engine::Sqlite).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    // The hourly jobs run once at start; taken after them, the lock delays only our writes.
    wait_for_startup_jobs(&app).await;
    let path = db.url.strip_prefix("sqlite://").unwrap();
    // `sqlx::sqlite` is there through `boxoffice-store`'s sqlx features.
    let mut lock =
        sqlx::sqlite::SqliteConnection::connect_with(&sqlx::sqlite::SqliteConnectOptions::new().filename(path))
            .await
            .unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut lock).await.unwrap();

    let started = Instant::now();
    let id = report(
        &app,
        json!({ "severity": "error", "message": "reported while the database was locked" }),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(
        spool_files(&app.spool_dir, "jsonl"),
        1,
        "answered once spooled (after {waited:?})"
    );
    // Reads still work under WAL: it is not stored yet.
    assert!(!stored_events(&app).await.unwrap().contains_key(&id));
    // A server failure while still locked: the request answers at once, its record waits.
    faults::panic_next_request();
    let failed = app.get("/api/v1/events").await;
    assert_eq!(failed.status, 500);
    let failed_request = request_id(&failed);
    tokio::time::sleep(Duration::from_millis(300)).await;

    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    eventually("the report stored and the spool empty", || async {
        let stored = stored_events(&app).await?;
        (stored.contains_key(&id) && spool_files(&app.spool_dir, "jsonl") == 0).then_some(())
    })
    .await;
    let (failure, event) = wait_for_request_event(&app, &failed_request).await;
    assert_eq!(failure["component"], "http");
    assert!(event["message"].as_str().unwrap().contains("injected fault"), "{event}");
    // Counted only now: the failure's record may be stored after the spool has drained.
    let stored = stored_events(&app).await.expect("the database is readable again");
    assert_eq!(stored.len(), 2, "the report and the failure, nothing else: {stored:?}");
    assert_eq!(spool_files(&app.spool_dir, "rejected"), 0);
    println!("the report was answered after {waited:?}");
}

// ----- 4. a panic in a handler ----------------------------------------------------------------

both_engines!(
    a_panicking_handler_answers_500_and_is_recorded_with_its_backtrace,
    |engine| async move {
        let _faults = FAULTS.write().await;
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(&db, AppOptions::default()).await;
        faults::panic_next_request();
        let answer = app.get("/api/v1/events").await;
        assert_eq!((answer.status, answer.code()), (500, "internal"), "{}", answer.body);
        assert!(answer.body["error"]["message"].is_string());
        assert!(
            !answer.body.to_string().contains("injected fault"),
            "the panic stays internal: {}",
            answer.body
        );
        let request = request_id(&answer);
        assert_eq!(app.get("/api/v1/events").await.status, 200, "only that request failed");

        let (group, event) = wait_for_request_event(&app, &request).await;
        assert_eq!(
            (group["scope"].as_str(), group["component"].as_str()),
            (Some("server"), Some("http"))
        );
        let message = event["message"].as_str().unwrap();
        assert!(message.contains("injected fault"), "{message}");
        assert!(message.contains("500"), "{message}");
        let trace = event["payload"]["stack_trace"]
            .as_str()
            .unwrap_or_else(|| panic!("no stack trace: {event}"));
        assert!(
            trace.contains("boxoffice-server/src/faults.rs"),
            "the panic's location: {trace}"
        );
        assert!(
            trace.contains("boxoffice_server::faults"),
            "a backtrace with the panicking frame: {trace}"
        );
        assert!(trace.lines().count() > 5, "{trace}");
    }
);

// ----- 5. a failing job -----------------------------------------------------------------------

both_engines!(a_failing_job_is_recorded_under_its_name, |engine| async move {
    let _faults = FAULTS.read().await;
    let db = TestDatabase::new(engine).await;
    // Nothing listens on port 1: every Stripe call fails (after the client's retries).
    let app = spawn_app(
        &db,
        AppOptions {
            stripe_api_base: Some("http://127.0.0.1:1".into()),
            stripe_secret_key: Some("sk_test_unreachable".into()),
            ..AppOptions::default()
        },
    )
    .await;
    let run = run_job(&app, "webhook-reconciler").await;
    assert_eq!((run.status, run.code()), (502, "provider_unavailable"), "{}", run.body);
    let group = wait_for_group(&app, "the job's failure", |g| {
        g["component"] == "job:webhook-reconciler"
    })
    .await;
    assert_eq!(
        (group["scope"].as_str(), group["severity"].as_str()),
        (Some("server"), Some("error"))
    );
    let detail = group_detail(&app, group["id"].as_str().unwrap()).await;
    let message = detail.body["events"][0]["message"].as_str().unwrap();
    assert!(message.contains("webhook-reconciler"), "{message}");
    // The 502 answer is a server failure of its own, with the request id.
    let (http, event) = wait_for_request_event(&app, &request_id(&run)).await;
    assert_eq!(http["component"], "http");
    assert!(event["message"].as_str().unwrap().contains("answered 502"), "{event}");
});

// ----- 6. forwarding to Sentry ----------------------------------------------------------------

both_engines!(
    server_failures_are_stored_and_forwarded_to_sentry,
    |engine| async move {
        let _faults = FAULTS.read().await;
        // A: a boxoffice standing in for Sentry; its organization's DSN receives B's errors.
        let db_a = TestDatabase::new(engine).await;
        let app_a = spawn_app(&db_a, AppOptions::default()).await;
        let (org, dsn, _, _) = organization_with_dsn(&app_a, "Monitoring").await;
        let db_b = TestDatabase::new(engine).await;
        let app_b = spawn_app(
            &db_b,
            AppOptions {
                sentry_dsn: Some(dsn),
                stripe_api_base: Some("http://127.0.0.1:1".into()),
                stripe_secret_key: Some("sk_test_unreachable".into()),
                ..AppOptions::default()
            },
        )
        .await;
        let run = run_job(&app_b, "webhook-reconciler").await;
        assert_eq!(run.status, 502, "{}", run.body);
        let group = wait_for_group(&app_b, "B's job failure", |g| {
            g["component"] == "job:webhook-reconciler"
        })
        .await;
        let detail = group_detail(&app_b, group["id"].as_str().unwrap()).await;
        let event_id = detail.body["events"][0]["id"].as_str().unwrap().to_owned();

        let org_scope = format!("org:{org}");
        let forwarded = eventually("B's failure in A", || async {
            let stored = stored_events(&app_a).await?;
            stored.get(&event_id).cloned()
        })
        .await;
        assert_eq!(forwarded, org_scope, "under A's organization, with B's event id");
        let in_a = groups(&app_a).await;
        assert!(
            in_a.iter().any(|g| g["scope"] == org_scope.as_str()
                && g["title"].as_str().is_some_and(|t| t.contains("webhook-reconciler"))),
            "{in_a:#?}"
        );
    }
);

// ----- 7. retention ---------------------------------------------------------------------------

both_engines!(
    retention_removes_old_events_empty_groups_and_events_beyond_the_cap,
    |engine| async move {
        let _faults = FAULTS.read().await;
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(
            &db,
            AppOptions {
                clock: Some(ManualClock::starting_now()),
                error_retention: Duration::from_secs(24 * 60 * 60),
                error_events_per_group: 3,
                ..AppOptions::default()
            },
        )
        .await;
        let event = |fingerprint: &str, n: u32| json!({ "severity": "error", "message": format!("{fingerprint} number {n}"), "fingerprint": [fingerprint] });
        let mut busy = Vec::new();
        for n in 0..5 {
            busy.push(report(&app, event("busy", n)).await);
            app.advance(Duration::from_secs(1));
        }
        report(&app, event("old", 0)).await;
        app.advance(Duration::from_secs(12 * 60 * 60));
        busy.push(report(&app, event("busy", 5)).await);
        let recent = report(&app, event("recent", 0)).await;
        let listed = groups(&app).await;
        let id_of = |fingerprint: &str| {
            listed
                .iter()
                .find(|g| g["title"].as_str().unwrap().starts_with(fingerprint))
                .unwrap_or_else(|| panic!("{fingerprint}: {listed:#?}"))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (busy_group, old_group, recent_group) = (id_of("busy"), id_of("old"), id_of("recent"));

        // Nothing is old yet: only the cap applies, keeping the newest three.
        let run = run_job(&app, "error-retention").await;
        assert_eq!(
            (run.status, run.body["outcome"].as_str()),
            (200, Some("succeeded")),
            "{}",
            run.body
        );
        assert_eq!(run.body["affected"], 3, "{}", run.body);
        let kept: Vec<String> = group_detail(&app, &busy_group).await.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            kept,
            [busy[5].clone(), busy[4].clone(), busy[3].clone()],
            "newest first"
        );
        assert_eq!(group_detail(&app, &old_group).await.status, 200);

        // A day after the first reports: they go, and the group left empty goes too.
        app.advance(Duration::from_secs(13 * 60 * 60));
        let run = run_job(&app, "error-retention").await;
        assert_eq!(
            (run.status, run.body["outcome"].as_str()),
            (200, Some("succeeded")),
            "{}",
            run.body
        );
        let busy_events: Vec<String> = group_detail(&app, &busy_group).await.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            busy_events,
            [busy[5].clone()],
            "only the event younger than a day is left"
        );
        assert_eq!(
            group_detail(&app, &old_group).await.status,
            404,
            "the emptied old group is gone"
        );
        let recent_detail = group_detail(&app, &recent_group).await;
        assert_eq!(recent_detail.body["events"][0]["id"], recent.as_str());
        assert_eq!(groups(&app).await.len(), 2);
    }
);
