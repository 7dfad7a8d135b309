//! The binary as a user runs it: flags and environment variables, the subcommands, the
//! demo, the operator token printed once, and graceful shutdown on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn boxoffice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
    command
        .env_remove("BOXOFFICE_DATABASE_URL")
        .env_remove("BOXOFFICE_ADMIN_TOKEN")
        .env("RUST_LOG", "warn");
    command
}

fn output(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let help = output(boxoffice().arg("--help"));
    for expected in ["serve", "migrate", "sweep", "stats"] {
        assert!(help.contains(expected), "subcommand {expected} missing:\n{help}");
    }
    let serve_help = output(boxoffice().args(["serve", "--help"]));
    for expected in [
        "--database-url",
        "BOXOFFICE_DATABASE_URL",
        "--listen",
        "BOXOFFICE_LISTEN",
        "--admin-token",
        "BOXOFFICE_ADMIN_TOKEN",
        "--hold-duration",
        "BOXOFFICE_HOLD_DURATION",
        "--sweep-interval",
        "BOXOFFICE_SWEEP_INTERVAL",
        "--rate-limit-per-minute",
        "BOXOFFICE_RATE_LIMIT_PER_MINUTE",
        "--demo",
        "--smtp-url",
        "BOXOFFICE_SMTP_URL",
        "--mail-from",
        "BOXOFFICE_MAIL_FROM",
        "--mail-dir",
        "BOXOFFICE_MAIL_DIR",
        "--mail-give-up",
        "BOXOFFICE_MAIL_GIVE_UP",
    ] {
        assert!(serve_help.contains(expected), "{expected} missing:\n{serve_help}");
    }
    let bad = boxoffice().args(["serve", "--hold-duration", "soon"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("15m"),
        "the error shows examples"
    );
}

#[test]
fn migrate_sweep_and_stats_work_on_a_fresh_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bo.db").display());
    let migrated = output(boxoffice().args(["migrate", "--database-url", &url]));
    assert!(migrated.contains("migrations applied"));
    assert!(dir.path().join("bo.db").exists());
    // The environment variable works as well as the flag.
    let sweep: Value =
        serde_json::from_str(&output(boxoffice().arg("sweep").env("BOXOFFICE_DATABASE_URL", &url))).unwrap();
    assert_eq!(
        (
            sweep["job"].as_str(),
            sweep["outcome"].as_str(),
            sweep["affected"].as_u64()
        ),
        (Some("expire-holds"), Some("succeeded"), Some(0))
    );
    let stats: Value = serde_json::from_str(&output(boxoffice().args(["stats", "--database-url", &url]))).unwrap();
    assert_eq!(stats["reservations"]["active"], 0);
    assert_eq!(
        stats["latest_sweeps"].as_array().unwrap().len(),
        1,
        "the sweep above was recorded"
    );
}

struct Running {
    child: Child,
    base: String,
    lines: Vec<String>,
}

impl Drop for Running {
    // A failed assertion must not leave a server running after the test.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(url: &str) -> Running {
    start_with(url, &["--demo", "--sweep-interval", "1s"], &[])
}

// The child is waited for by `terminate`, or killed and reaped by `Running`'s Drop.
#[allow(clippy::zombie_processes)]
fn start_with(url: &str, args: &[&str], envs: &[(&str, &str)]) -> Running {
    let listen: &[&str] = if args.contains(&"--listen") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut child = boxoffice()
        .args(listen)
        .args(args)
        .envs(envs.iter().copied())
        .env("BOXOFFICE_DATABASE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the server exited early: {lines:?}"
        );
        if let Some(rest) = line.split("serving ").nth(1) {
            let base = rest.split_whitespace().next().unwrap().to_owned();
            lines.push(line);
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            return Running { child, base, lines };
        }
        lines.push(line);
    }
}

fn terminate(mut running: Running) {
    let pid = running.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    for _ in 0..100 {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success(), "a graceful shutdown exits 0, got {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    running.child.kill().unwrap();
    panic!("the server did not stop within 10 s of SIGTERM");
}

#[tokio::test]
async fn the_demo_serves_a_box_office_and_prints_the_operator_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let running = start(&url);
    let token_line = running
        .lines
        .iter()
        .find(|l| l.starts_with("Operator token"))
        .expect("token printed at first start");
    let token = token_line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        running
            .lines
            .iter()
            .any(|l| l.starts_with("Stripe test double:") && l.contains("sk_test_")),
        "the double's key is printed so a purchase can be tried by hand: {:?}",
        running.lines
    );
    let client = reqwest::Client::new();
    let events = get(&client, &running.base, "/api/v1/events", None).await.1;
    let event = &events["data"][0];
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    assert_eq!(event["ticket_types"].as_array().unwrap().len(), 3);
    let hold = client
        .post(format!("{}/api/v1/reservations", running.base))
        .json(&serde_json::json!({ "event_id": event["id"], "items": [{ "ticket_type_id": event["ticket_types"][0]["id"], "quantity": 2 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(hold.status(), 201);
    let (status, _) = get(&client, &running.base, "/api/v1/admin/stats/reservations", Some(&token)).await;
    assert_eq!(status, 200, "the printed token is the operator's");
    // The sweeper runs in the background every second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let runs = get(&client, &running.base, "/api/v1/admin/jobs/runs", Some(&token))
        .await
        .1;
    assert!(
        !runs["data"].as_array().unwrap().is_empty(),
        "background sweeps are recorded: {runs}"
    );
    terminate(running);

    // A second start on the same database: no new token, no second demo event, same token works.
    let again = start(&url);
    assert!(
        !again.lines.iter().any(|l| l.starts_with("Operator token")),
        "{:?}",
        again.lines
    );
    let events = get(&client, &again.base, "/api/v1/events", None).await.1;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    let (status, stats) = get(&client, &again.base, "/api/v1/admin/stats/reservations", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(stats["active"], 1, "the hold survived the restart");
    terminate(again);
}

#[tokio::test]
async fn without_an_smtp_url_the_demo_writes_ticket_email_beside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let url = format!("sqlite://{}", db.display());
    let running = start_with(&url, &["--demo", "--mail-interval", "200ms"], &[]);
    let mail_dir = dir.path().join("demo.db-mail");
    assert!(
        running
            .lines
            .iter()
            .any(|l| l.starts_with("Buyer e-mail: written to") && l.contains(&mail_dir.display().to_string())),
        "where mail goes is printed: {:?}",
        running.lines
    );
    let key = running
        .lines
        .iter()
        .find_map(|l| l.split("API key: ").nth(1))
        .unwrap()
        .trim_end_matches(|c: char| c == ')' || c.is_whitespace())
        .to_owned();
    let client = reqwest::Client::new();
    let events = get(&client, &running.base, "/api/v1/events", None).await.1;
    let event = &events["data"][0];
    let hold = client
        .post(format!("{}/api/v1/reservations", running.base))
        .json(&serde_json::json!({
            "event_id": event["id"], "customer_email": "ana@example.org",
            "items": [{ "ticket_type_id": event["ticket_types"][0]["id"], "quantity": 1 }],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(hold.status(), 201);
    let hold: Value = hold.json().await.unwrap();
    let intent: Value = client
        .post(format!(
            "{}/api/v1/reservations/{}/payment-intent",
            running.base,
            hold["id"].as_str().unwrap()
        ))
        .header("idempotency-key", "cli-mail")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let confirmed = client
        .post(format!(
            "{}/_fake-stripe/v1/payment_intents/{}/confirm",
            running.base,
            intent["payment_intent_id"].as_str().unwrap()
        ))
        .bearer_auth(&key)
        .form(&[("payment_method", "pm_card_visa")])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    // The webhook marks the order paid; the sender job (every 200 ms) writes the message
    // (to a temporary file first, renamed into place: wait for the rename).
    let mut files = Vec::new();
    for _ in 0..100 {
        files = std::fs::read_dir(&mail_dir)
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if files
            .iter()
            .any(|file| file.extension().is_some_and(|ext| ext == "eml"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(files.len(), 1, "one message: {files:?}");
    assert!(files[0].extension().is_some_and(|ext| ext == "eml"), "{files:?}");
    let message = std::fs::read_to_string(&files[0]).unwrap();
    assert!(message.contains("To: ana@example.org"), "{message}");
    assert!(message.contains("From: boxoffice@localhost"), "{message}");
    assert_eq!(message.matches("Content-Type: image/png").count(), 1);
    terminate(running);
}

#[test]
fn an_unusable_smtp_url_stops_the_start_without_showing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("mail.db").display());
    let out = boxoffice()
        .args(["--listen", "127.0.0.1:0", "--database-url", &url])
        .env(
            "BOXOFFICE_SMTP_URL",
            "smtp://ana:hunter2secret@mail.example.org?tls=opportunistic",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls=required"), "the error says what to use: {stderr}");
    assert!(!stderr.contains("hunter2secret"), "{stderr}");
}

async fn get(client: &reqwest::Client, base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client.get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn fake_stripe_runs_alone_and_speaks_to_the_real_client() {
    let running = spawn_fake_stripe("sk_test_cli", "whsec_cli", None);
    let base = running.base.clone();

    let client =
        boxoffice_stripe::StripeClient::new(boxoffice_stripe::StripeConfig::new(base, "sk_test_cli".into())).unwrap();
    let params = boxoffice_stripe::CreatePaymentIntent {
        amount: 5_000,
        currency: "eur".into(),
        metadata: [("order_id".to_owned(), "ord_1".to_owned())].into(),
        description: None,
    };
    let first = client.create_payment_intent(&params, "cli-test-key").await.unwrap();
    let replay = client.create_payment_intent(&params, "cli-test-key").await.unwrap();
    assert_eq!(
        first.id, replay.id,
        "the same idempotency key creates one PaymentIntent"
    );
    assert!(first.id.starts_with("pi_"));
    let wrong_key = boxoffice_stripe::StripeClient::new(boxoffice_stripe::StripeConfig::new(
        running.base.clone(),
        "sk_test_wrong".into(),
    ))
    .unwrap();
    assert!(wrong_key.retrieve_payment_intent(&first.id).await.is_err());
    terminate(running);
}

/// A fresh database of each engine: a SQLite file, or a new PostgreSQL database on the
/// server `scripts/test.sh` provides.
async fn fresh_database(postgres: bool, dir: &tempfile::TempDir) -> String {
    if !postgres {
        return format!("sqlite://{}", dir.path().join("crash.db").display());
    }
    use rand::RngCore;
    use sqlx::Connection;
    let admin = std::env::var("BOXOFFICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let mut suffix = [0u8; 8];
    rand::rng().fill_bytes(&mut suffix);
    let name = format!("boxoffice_test_{}", hex::encode(suffix));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// Kill -9 at the worst moment: the provider created the PaymentIntent, boxoffice has not
/// recorded it. After a restart the completer records it, and a retry with the same key
/// gets it; one PaymentIntent in all. The double runs alone so its state outlives the crash.
async fn a_crash_between_the_provider_and_our_record_charges_once(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(postgres, &dir).await;
    let fake = spawn_fake_stripe("sk_test_crash", "whsec_crash", None);
    let stripe = fake.base.clone();

    let token = "bo_admin_crash_test";
    let common = [
        "--admin-token",
        token,
        "--stripe-api-base",
        &stripe,
        "--stripe-secret-key",
        "sk_test_crash",
        "--idempotency-lock-timeout",
        "1s",
        "--sweep-interval",
        "0s",
    ];
    let crashing = start_with(
        &url,
        &common,
        &[("BOXOFFICE_TEST_CRASH_POINT", "after-payment-intent-created")],
    );
    let client = reqwest::Client::new();
    let (_, hold) = event_and_hold(&client, &crashing.base, token, 1).await;
    let pay_path = format!("/api/v1/reservations/{hold}/payment-intent");
    let pay = |base: String| {
        let request = client
            .post(format!("{base}{pay_path}"))
            .header("idempotency-key", "crash-key")
            .json(&serde_json::json!({}));
        async move { request.send().await }
    };
    assert!(
        pay(crashing.base.clone()).await.is_err(),
        "the process dies before it answers"
    );
    let mut crashing = crashing;
    let status = crashing.child.wait().unwrap();
    assert!(!status.success(), "aborted: {status}");

    let stripe_client = boxoffice_stripe::StripeClient::new(boxoffice_stripe::StripeConfig::new(
        stripe.clone(),
        "sk_test_crash".into(),
    ))
    .unwrap();
    let intents = stripe_client.list_payment_intents(100, None).await.unwrap().data;
    assert_eq!(intents.len(), 1, "the provider did create it");
    let order_id = intents[0].metadata["order_id"].clone();

    // Restarted without the crash point; the completer runs every 200 ms.
    let restarted = start_with(
        &url,
        &[&common[..], &["--payment-completer-interval", "200ms"]].concat(),
        &[],
    );
    let mut recorded = Value::Null;
    for _ in 0..50 {
        let order: Value = get(&client, &restarted.base, &format!("/api/v1/orders/{order_id}"), None)
            .await
            .1;
        if order["payment_intent_id"].is_string() {
            recorded = order;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        recorded["payment_intent_id"].as_str(),
        Some(intents[0].id.as_str()),
        "the completer recorded it"
    );
    let retried = pay(restarted.base.clone()).await.unwrap();
    assert_eq!(retried.status(), 201);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    let body: Value = retried.json().await.unwrap();
    assert_eq!(body["payment_intent_id"].as_str(), Some(intents[0].id.as_str()));
    assert_eq!(
        stripe_client.list_payment_intents(100, None).await.unwrap().data.len(),
        1,
        "never charged twice"
    );
    terminate(restarted);
    terminate(fake);
}

#[tokio::test]
async fn crash_after_the_provider_answered_sqlite() {
    a_crash_between_the_provider_and_our_record_charges_once(false).await;
}

#[tokio::test]
async fn crash_after_the_provider_answered_postgres() {
    a_crash_between_the_provider_and_our_record_charges_once(true).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kill -9 inside the transaction that applies a webhook: nothing of it commits, the event
/// is already stored, and after a restart it is applied exactly once (by the double's
/// redelivery or by the webhook worker, whichever comes first).
async fn a_crash_while_applying_a_webhook_loses_nothing(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(postgres, &dir).await;
    let port = free_port().to_string();
    let server_listen = format!("127.0.0.1:{port}");
    let webhook_url = format!("http://{server_listen}/webhooks/stripe");
    let fake = spawn_fake_stripe("sk_test_apply", "whsec_apply", Some(&webhook_url));
    let stripe = fake.base.clone();

    let token = "bo_admin_apply_test";
    let args = [
        "--listen",
        &server_listen,
        "--admin-token",
        token,
        "--stripe-api-base",
        &stripe,
        "--stripe-secret-key",
        "sk_test_apply",
        "--stripe-webhook-secret",
        "whsec_apply",
        "--sweep-interval",
        "0s",
        "--webhook-worker-interval",
        "200ms",
    ];
    let crashing = start_with(&url, &args, &[("BOXOFFICE_TEST_CRASH_POINT", "during-webhook-apply")]);
    let client = reqwest::Client::new();
    let base = crashing.base.clone();
    let (event_id, hold) = event_and_hold(&client, &base, token, 2).await;
    let paid: Value = client
        .post(format!("{base}/api/v1/reservations/{hold}/payment-intent"))
        .header("idempotency-key", "apply-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_id = paid["order_id"].as_str().unwrap().to_owned();
    let stripe_client = boxoffice_stripe::StripeClient::new(boxoffice_stripe::StripeConfig::new(
        stripe.clone(),
        "sk_test_apply".into(),
    ))
    .unwrap();
    stripe_client
        .confirm_payment_intent(paid["payment_intent_id"].as_str().unwrap(), "pm_card_visa", "confirm-1")
        .await
        .unwrap();

    // The delivery reaches the server, which stores the event and dies while applying it.
    let mut crashing = crashing;
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = crashing.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        exited.is_some_and(|status| !status.success()),
        "the server should have aborted: {exited:?}"
    );

    let restarted = start_with(&url, &args, &[]);
    let mut order = Value::Null;
    for _ in 0..100 {
        order = get(&client, &restarted.base, &format!("/api/v1/orders/{order_id}"), None)
            .await
            .1;
        if order["status"] == "paid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(order["status"], "paid", "applied after the restart: {order}");
    assert_eq!(order["tickets"].as_array().unwrap().len(), 2);
    // Give a late redelivery time to arrive: it must change nothing.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let event: Value = get(&client, &restarted.base, &format!("/api/v1/events/{event_id}"), None)
        .await
        .1;
    let inventory = &event["ticket_types"][0];
    assert_eq!(
        (inventory["sold"].as_i64(), inventory["held"].as_i64()),
        (Some(2), Some(0)),
        "sold exactly once"
    );
    let again: Value = get(&client, &restarted.base, &format!("/api/v1/orders/{order_id}"), None)
        .await
        .1;
    assert_eq!(again["tickets"], order["tickets"]);
    terminate(restarted);
    terminate(fake);
}

#[tokio::test]
async fn crash_while_applying_a_webhook_sqlite() {
    a_crash_while_applying_a_webhook_loses_nothing(false).await;
}

#[tokio::test]
async fn crash_while_applying_a_webhook_postgres() {
    a_crash_while_applying_a_webhook_loses_nothing(true).await;
}

/// The Stripe double on its own, as `boxoffice fake-stripe` on a free port.
fn spawn_fake_stripe(api_key: &str, webhook_secret: &str, webhook_url: Option<&str>) -> Running {
    let mut command = boxoffice();
    command.args([
        "fake-stripe",
        "--listen",
        "127.0.0.1:0",
        "--api-key",
        api_key,
        "--webhook-secret",
        webhook_secret,
    ]);
    if let Some(url) = webhook_url {
        command.args(["--webhook-url", url]);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let base = line
        .split("serving ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    Running {
        child,
        base,
        lines: vec![line],
    }
}

/// An organization, an event with ten 42.00 tickets, and a hold of `quantity` of them,
/// created as the operator. Returns the event id and the hold id.
async fn event_and_hold(client: &reqwest::Client, base: &str, token: &str, quantity: i64) -> (String, String) {
    let post = |path: String, body: Value| {
        let request = client.post(format!("{base}{path}")).bearer_auth(token).json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let org = post("/api/v1/organizations".into(), serde_json::json!({ "name": "Crash" })).await;
    let event = post(
        "/api/v1/events".into(),
        serde_json::json!({ "organization_id": org["id"], "name": "Night", "starts_at": "2030-01-01T20:00:00Z", "currency": "EUR" }),
    )
    .await;
    let event_id = event["id"].as_str().unwrap().to_owned();
    let tt = post(
        format!("/api/v1/events/{event_id}/ticket-types"),
        serde_json::json!({ "name": "GA", "price_cents": 4_200, "capacity": 10 }),
    )
    .await;
    let hold = post(
        "/api/v1/reservations".into(),
        serde_json::json!({ "event_id": event_id, "items": [{ "ticket_type_id": tt["id"], "quantity": quantity }] }),
    )
    .await;
    (event_id, hold["id"].as_str().unwrap().to_owned())
}

/// `boxoffice errors` straight on the database: what a server recorded is listed (open and
/// resolved, by severity), shown with its events, and resolved.
#[tokio::test]
async fn errors_subcommand_lists_shows_and_resolves_error_groups() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("errors.db").display());
    let token = "bo_admin_errors_cli";
    let running = start_with(&url, &["--admin-token", token, "--sweep-interval", "0s"], &[]);
    let client = reqwest::Client::new();
    for body in [
        serde_json::json!({ "severity": "error", "message": "Checkout crashed for order 17 (ana@example.org)", "component": "checkout" }),
        serde_json::json!({ "severity": "error", "message": "Checkout crashed for order 18 (bo@example.com)", "component": "checkout" }),
        serde_json::json!({ "severity": "warning", "message": "Seat map slow", "component": "seatmap" }),
    ] {
        let answer = client
            .post(format!("{}/api/v1/errors", running.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "{body}");
    }
    terminate(running);

    let errors = |args: &[&str]| {
        let mut command = boxoffice();
        command.args(["errors", "--database-url", &url]).args(args);
        command
    };
    // `list` is the default.
    let listed = output(&mut errors(&[]));
    assert_eq!(output(&mut errors(&["list"])), listed);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "two groups:\n{listed}");
    let checkout = lines
        .iter()
        .find(|line| line.contains("Checkout crashed"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(checkout.contains("error") && checkout.contains(" 2x"), "{checkout}");
    assert!(
        !listed.contains("example.org") && !listed.contains("example.com"),
        "scrubbed: {listed}"
    );
    let group_id = checkout.split_whitespace().next().unwrap().to_owned();
    assert!(group_id.starts_with("grp_"), "{checkout}");
    let warnings = output(&mut errors(&["list", "--severity", "warning"]));
    assert!(
        warnings.lines().count() == 1 && warnings.contains("Seat map slow"),
        "{warnings}"
    );

    let shown: Value = serde_json::from_str(&output(&mut errors(&["show", &group_id]))).unwrap();
    assert_eq!(shown["id"], group_id.as_str());
    assert_eq!(
        (
            shown["count"].as_i64(),
            shown["severity"].as_str(),
            shown["component"].as_str(),
            shown["scope"].as_str(),
            shown["resolved"].as_bool()
        ),
        (Some(2), Some("error"), Some("checkout"), Some("server"), Some(false))
    );
    let events = shown["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{shown:#}");
    assert!(events.iter().all(|event| {
        event["id"].as_str().is_some_and(|id| id.len() == 32)
            && event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Checkout crashed"))
            && event["payload"].is_object()
    }));
    assert!(!shown.to_string().contains("example.org"), "{shown:#}");

    let resolved = output(&mut errors(&["resolve", &group_id]));
    assert!(resolved.contains(&format!("resolved {group_id}")), "{resolved}");
    let shown: Value = serde_json::from_str(&output(&mut errors(&["show", &group_id]))).unwrap();
    assert_eq!(shown["resolved"], true);
    let resolved_list = output(&mut errors(&["list", "--resolved", "true"]));
    assert!(
        resolved_list.lines().count() == 1 && resolved_list.contains(&group_id) && resolved_list.contains("[resolved]"),
        "{resolved_list}"
    );
    let open = output(&mut errors(&["list", "--resolved", "false"]));
    assert!(
        open.lines().count() == 1 && open.contains("Seat map slow") && !open.contains(&group_id),
        "{open}"
    );
    let none = output(&mut errors(&["list", "--severity", "critical"]));
    assert_eq!(none.trim(), "no error groups");

    for missing in ["grp_00000000000000000000000000000000", "not-a-group"] {
        let failed = errors(&["show", missing]).output().unwrap();
        assert!(!failed.status.success(), "show {missing} must fail");
        assert!(!String::from_utf8_lossy(&failed.stderr).is_empty());
    }
    assert!(!errors(&["resolve", "not-a-group"]).output().unwrap().status.success());
    assert!(
        !errors(&["list", "--severity", "loud"])
            .output()
            .unwrap()
            .status
            .success()
    );
}

/// Two `boxoffice serve` processes on one PostgreSQL database and one Stripe: the checkout
/// page of the first confirms a card at Stripe (slowed down at the double) while the page's
/// leave beacon reaches the second. The hold is kept: that a confirmation is under way is
/// marked on the order in the database (SPEC §12), where the second process sees it; a mark
/// in the first process's memory would let the second release the hold mid-payment.
#[tokio::test]
async fn a_leave_beacon_at_another_process_keeps_a_hold_whose_payment_is_being_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(true, &dir).await;
    let fake = spawn_fake_stripe("sk_test_leave", "whsec_leave", None);
    let token = "bo_admin_leave_test";
    let common = [
        "--admin-token",
        token,
        "--stripe-api-base",
        &fake.base,
        "--stripe-secret-key",
        "sk_test_leave",
        "--sweep-interval",
        "0s",
    ];
    let first = start_with(&url, &common, &[]);
    let second = start_with(&url, &common, &[]);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (_, hold) = event_and_hold(&browser, &first.base, token, 1).await;
    let pay = |card: &'static str| {
        let request = browser
            .post(format!("{}/checkout/{hold}/pay", first.base))
            .header("accept", "text/html")
            .form(&[("card_number", card)]);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let hold_status = || {
        let request = browser.get(format!("{}/api/v1/reservations/{hold}", second.base));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap()["status"].clone() }
    };

    // A declined card first: the order and its PaymentIntent exist, nothing is under way.
    assert_eq!(pay("4000000000000002").await, 402);
    // The page's next two requests to Stripe (its look at the PaymentIntent, then the
    // confirmation of the good card) take seconds each.
    let armed = browser
        .post(format!("{}/_control/faults", fake.base))
        .json(&serde_json::json!({ "fault": "delay", "count": 2, "delay_ms": 3_000 }))
        .send()
        .await
        .unwrap();
    assert!(armed.status().is_success());
    let paying = tokio::spawn(pay("4242424242424242"));

    // Once the first process has started confirming, the buyer leaves, heard by the second.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
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
    assert!(marked, "the first process marks the order as being confirmed");
    let left = browser
        .post(format!("{}/checkout/{hold}/leave", second.base))
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 204);
    assert_eq!(hold_status().await, "active", "kept while the first process confirms");

    assert_eq!(paying.await.unwrap(), 303, "the good card pays");
    let mark: Option<i64> = sqlx::query_scalar("SELECT confirming_until FROM orders")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mark, None, "the mark is cleared when the confirmation ends");
    // Paid at Stripe, not yet applied here (this double sends no webhooks): a leave now is
    // answered by Stripe's word, and keeps the hold too.
    let left = browser
        .post(format!("{}/checkout/{hold}/leave", second.base))
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 204);
    assert_eq!(hold_status().await, "active");
    terminate(first);
    terminate(second);
    terminate(fake);
}
