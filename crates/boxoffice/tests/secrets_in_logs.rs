//! Secrets never reach the logs: the real binary with every secret configured, at the most
//! verbose log level for our crates (and debug for every dependency), driven through a
//! whole sale and through its failure paths (an unreachable SMTP server, alert receiver and
//! Sentry), then everything it wrote to stdout and stderr is searched for each secret, the
//! API key minted during the run, the payment's client secret and the buyer's e-mail.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn random_hex() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    base: String,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Drop for Server {
    // A failed assertion must not leave a server running after the test.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn output(&self) -> String {
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("{stdout}\n{stderr}")
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

/// Every secret the run handles.
struct Secrets {
    admin_token: String,
    stripe_key: String,
    webhook_secret: String,
    smtp_password: String,
    sentry_key: String,
    alert_token: String,
    buyer_email: String,
}

fn start(dir: &std::path::Path, secrets: &Secrets) -> Server {
    let database = format!("sqlite://{}", dir.join("bo.db").display());
    let smtp_url = format!(
        "smtp://tickets:{}@127.0.0.1:{}?tls=none",
        secrets.smtp_password,
        closed_port()
    );
    let sentry_dsn = format!("http://{}@127.0.0.1:{}/42", secrets.sentry_key, closed_port());
    let alert_url = format!(
        "http://127.0.0.1:{}/services/T0001/B0001/{}",
        closed_port(),
        secrets.alert_token
    );
    let stdout = dir.join("stdout.log");
    let stderr = dir.join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("BOXOFFICE_DATABASE_URL", &database)
        // Secrets through the environment, as deployments give them…
        .env("BOXOFFICE_ADMIN_TOKEN", &secrets.admin_token)
        .env("STRIPE_SECRET_KEY", &secrets.stripe_key)
        .env("STRIPE_WEBHOOK_SECRET", &secrets.webhook_secret)
        .env("SENTRY_DSN", &sentry_dsn)
        // …and through flags, which show in `ps` but must not in the logs.
        .args(["--smtp-url", &smtp_url, "--alert-webhook-url", &alert_url])
        // Loopback receivers: allowed, so the failing delivery is really attempted.
        .arg("--alert-webhook-allow-private")
        .args(["--mail-interval", "1s", "--mail-give-up", "1ms"])
        .args(["--sweep-interval", "1s", "--webhook-worker-interval", "1s"])
        .args([
            "--payment-completer-interval",
            "1s",
            "--webhook-reconcile-interval",
            "2s",
        ])
        // Everything at the most verbose level, the libraries' own lines too (hyper, reqwest,
        // sqlx, lettre): those are where a URL with credentials or a header would surface.
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        base: String::new(),
        stdout,
        stderr,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let printed = std::fs::read_to_string(&server.stdout).unwrap_or_default();
        if let Some(rest) = printed.split("boxoffice is serving ").nth(1) {
            server.base = rest.split_whitespace().next().unwrap().to_owned();
            return server;
        }
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server exited early:\n{}",
            server.output()
        );
        assert!(
            Instant::now() < deadline,
            "the server did not start:\n{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_stdout_or_stderr_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = Secrets {
        admin_token: format!("bo_admin_{}", random_hex()),
        stripe_key: format!("sk_test_{}", random_hex()),
        webhook_secret: format!("whsec_{}", random_hex()),
        smtp_password: format!("smtppw{}", random_hex()),
        sentry_key: random_hex(),
        alert_token: format!("alerttoken{}", random_hex()),
        buyer_email: format!("buyer.{}@example.org", &random_hex()[..12]),
    };
    let mut server = start(dir.path(), &secrets);
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let operator = secrets.admin_token.as_str();

    // An organization, its API key, and an event with tickets made with that key.
    let (status, org) = call(
        client
            .post(format!("{base}/api/v1/organizations"))
            .bearer_auth(operator)
            .json(&json!({ "name": "Logs" })),
    )
    .await;
    assert_eq!(status, 201, "{org}");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let dsn = url::Url::parse(org["error_dsn"].as_str().unwrap()).unwrap();
    let (status, minted) = call(
        client
            .post(format!("{base}/api/v1/organizations/{org_id}/api-keys"))
            .bearer_auth(operator),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let api_key = minted["key"].as_str().unwrap().to_owned();
    let (status, event) = call(
        client
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(&api_key)
            .json(&json!({ "name": "Night", "starts_at": "2030-01-01T20:00:00Z", "currency": "EUR" })),
    )
    .await;
    assert_eq!(status, 201, "{event}");
    let event_id = event["id"].as_str().unwrap().to_owned();
    let (status, tt) = call(
        client
            .post(format!("{base}/api/v1/events/{event_id}/ticket-types"))
            .bearer_auth(&api_key)
            .json(&json!({ "name": "GA", "price_cents": 4_200, "capacity": 10 })),
    )
    .await;
    assert_eq!(status, 201, "{tt}");

    // A hold for a buyer, paid through the Stripe double; its signed webhook pays the order.
    let (status, hold) = call(client.post(format!("{base}/api/v1/reservations")).json(&json!({
        "event_id": event_id, "items": [{ "ticket_type_id": tt["id"], "quantity": 2 }],
        "customer_email": secrets.buyer_email,
    })))
    .await;
    assert_eq!(status, 201, "{hold}");
    let hold_id = hold["id"].as_str().unwrap().to_owned();
    let (status, intent) = call(
        client
            .post(format!("{base}/api/v1/reservations/{hold_id}/payment-intent"))
            .bearer_auth(&api_key)
            .header("idempotency-key", "logs-checkout-1"),
    )
    .await;
    assert_eq!(status, 201, "{intent}");
    let client_secret = intent["client_secret"].as_str().unwrap().to_owned();
    let order_id = intent["order_id"].as_str().unwrap().to_owned();
    let payment_intent = intent["payment_intent_id"].as_str().unwrap();
    let (status, confirmed) = call(
        client
            .post(format!(
                "{base}/_fake-stripe/v1/payment_intents/{payment_intent}/confirm"
            ))
            .bearer_auth(&secrets.stripe_key)
            .form(&[("payment_method", "pm_card_visa")]),
    )
    .await;
    assert_eq!(status, 200, "{confirmed}");
    wait_for("the order to be paid", || async {
        let (_, order) = call(client.get(format!("{base}/api/v1/orders/{order_id}"))).await;
        order["status"] == "paid"
    })
    .await;

    // Error paths: refused credentials that look like secrets, a forged webhook, an error
    // report and a Sentry envelope carrying the buyer's address.
    let wrong_token = format!("bo_admin_{}", random_hex());
    let (status, _) = call(
        client
            .get(format!("{base}/api/v1/admin/errors"))
            .bearer_auth(&wrong_token),
    )
    .await;
    assert_eq!(status, 401);
    let forged_key = format!("{}_{}", api_key.rsplit_once('_').unwrap().0, "f".repeat(64));
    let (status, _) = call(
        client
            .get(format!("{base}/api/v1/organizations/{org_id}"))
            .bearer_auth(&forged_key),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(
        client
            .post(format!("{base}/webhooks/stripe"))
            .header("stripe-signature", "t=1,v1=deadbeef")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        client
            .post(format!("{base}/api/v1/errors"))
            .bearer_auth(&api_key)
            .json(&json!({
                "severity": "critical",
                "message": format!("checkout failed for {}", secrets.buyer_email),
                "context": { "email": secrets.buyer_email, "password": secrets.smtp_password },
            })),
    )
    .await;
    assert_eq!(status, 202);
    let project = dsn.path().trim_start_matches('/');
    let envelope_event = json!({
        "message": format!("TypeError for {}", secrets.buyer_email),
        "level": "error",
        "user": { "email": secrets.buyer_email },
    });
    let (status, _) = call(
        client
            .post(format!("{base}/api/{project}/envelope/"))
            .header(
                "x-sentry-auth",
                format!("Sentry sentry_version=7, sentry_key={}", dsn.username()),
            )
            .body(format!("{{}}\n{{\"type\":\"event\"}}\n{envelope_event}\n")),
    )
    .await;
    assert_eq!(status, 200);

    // The failing deliveries: the confirmation e-mail (SMTP refused, given up at its first attempt,
    // then recorded and alerted) and the alerts (their receiver refuses connections).
    wait_for("the e-mail to be given up", || async {
        let (_, emails) = call(
            client
                .get(format!("{base}/api/v1/admin/emails?status=failed"))
                .bearer_auth(operator),
        )
        .await;
        emails["data"].as_array().is_some_and(|data| !data.is_empty())
    })
    .await;
    // A failed attempt that will be retried is not logged (only giving up is, after about
    // 25 minutes): the attempt is seen in the metrics; its reqwest/hyper debug lines, which
    // would carry the URL, are in the output searched below.
    wait_for("an alert delivery to fail", || async {
        let response = client.get(format!("{base}/metrics")).send().await.unwrap();
        let metrics = response.text().await.unwrap();
        metrics
            .lines()
            .any(|line| line.starts_with("boxoffice_alerts_total{outcome=\"attempt_failed\"}"))
    })
    .await;
    server.stop();

    let output = server.output();
    // The run was verbose and went through the failure paths it is meant to cover.
    for expected in ["DEBUG", "TRACE", "smtp"] {
        assert!(
            output.to_lowercase().contains(&expected.to_lowercase()),
            "the logs do not mention {expected:?}; the test would prove nothing:\n{}",
            &output[..output.len().min(4000)]
        );
    }
    let secret_part = api_key.rsplit_once('_').unwrap().1.to_owned();
    let searched = [
        ("the operator token", secrets.admin_token.clone()),
        ("the Stripe secret key", secrets.stripe_key.clone()),
        ("the webhook signing secret", secrets.webhook_secret.clone()),
        ("the SMTP password", secrets.smtp_password.clone()),
        ("the Sentry DSN key", secrets.sentry_key.clone()),
        ("the alert webhook token", secrets.alert_token.clone()),
        ("the minted API key", api_key.clone()),
        ("the minted API key's secret", secret_part),
        ("the refused token", wrong_token),
        ("the forged key's secret", "f".repeat(64)),
        ("the payment's client secret", client_secret),
        ("the buyer's e-mail address", secrets.buyer_email.clone()),
    ];
    let mut leaks = Vec::new();
    for (what, secret) in &searched {
        for line in output.lines().filter(|line| line.contains(secret.as_str())) {
            leaks.push(format!("{what}: {}", line.chars().take(400).collect::<String>()));
        }
    }
    assert!(leaks.is_empty(), "secrets in the logs:\n{}", leaks.join("\n"));
}
