//! Sentry-compatible ingestion (SPEC §7), end to end on both engines: the official SDKs
//! (Python from PyPI, the Rust `sentry` crate) report through an organization's
//! `error_dsn`; the captured sample envelopes are accepted in every form the SDKs send;
//! hostile envelopes are refused with the right status and leave the server healthy; CORS,
//! per-project rate limits, grouping, and scrubbing down to the bytes in the database.
//!
//! The Python SDK test runs `tests/sdk/python_client.py` with `BOXOFFICE_TEST_PYTHON`
//! (scripts/test.sh makes a venv with `sentry-sdk`); when that is unset it tries `python3`
//! and skips, saying so, if `sentry_sdk` cannot be imported there.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Answer, AppOptions, Engine, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// An organization's error project, as its `error_dsn` tells it.
#[derive(Debug, Clone)]
struct Project {
    org: String,
    dsn: String,
    key: String,
    id: u64,
}

impl Project {
    fn scope(&self) -> String {
        format!("org:{}", self.org)
    }

    fn path(&self) -> String {
        format!("/api/{}/envelope/", self.id)
    }
}

/// Creates an organization and reads its DSN (`http://<public_key>@<host>/<project_id>`).
async fn project(app: &TestApp, name: &str) -> Project {
    let org = app.create_organization(name).await;
    let answer = app
        .get_as(OPERATOR_TOKEN, &format!("/api/v1/organizations/{org}"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let dsn = answer.body["error_dsn"].as_str().unwrap().to_owned();
    let rest = dsn.strip_prefix("http://").unwrap_or_else(|| panic!("DSN {dsn}"));
    let (key, host_and_path) = rest.split_once('@').unwrap();
    let (_host, id) = host_and_path.rsplit_once('/').unwrap();
    Project {
        org,
        key: key.to_owned(),
        id: id.parse().unwrap_or_else(|_| panic!("numeric project id in {dsn}")),
        dsn,
    }
}

fn sentry_auth(key: &str) -> String {
    format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=boxoffice-tests/1.0")
}

/// POSTs an envelope the way the server SDKs do: `X-Sentry-Auth`, optionally encoded.
async fn post_envelope(app: &TestApp, project: &Project, body: Vec<u8>, encoding: Option<&str>) -> Answer {
    let mut request = app
        .client
        .post(app.url(&project.path()))
        .header("x-sentry-auth", sentry_auth(&project.key))
        .header("content-type", "application/x-sentry-envelope")
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    app.send(request).await
}

/// POSTs an envelope the way the browser SDK does: key in the query string, `text/plain`,
/// no `X-Sentry-Auth`.
async fn post_browser_envelope(app: &TestApp, project: &Project, body: Vec<u8>) -> Answer {
    let url = app.url(&format!(
        "{}?sentry_version=7&sentry_key={}&sentry_client=sentry.javascript.browser%2F11.12.0",
        project.path(),
        project.key
    ));
    app.send(
        app.client
            .post(url)
            .header("content-type", "text/plain;charset=UTF-8")
            .header("user-agent", "node")
            .body(body),
    )
    .await
}

/// An envelope with one event item (with `length`).
fn event_envelope(event_id: &str, event: &Value) -> Vec<u8> {
    let payload = event.to_string();
    format!(
        "{}\n{}\n{payload}\n",
        json!({ "event_id": event_id, "sent_at": "2026-11-27T10:56:05.325Z" }),
        json!({ "type": "event", "content_type": "application/json", "length": payload.len() }),
    )
    .into_bytes()
}

/// A fresh random event id, 32 lowercase hex digits.
fn new_event_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// `8-4-4-4-12` form of a 32-hex id.
fn dashed(id: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    )
}

fn is_hex32(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Asserts a 200 `{"id": "<32 hex>"}` and returns the id.
#[track_caller]
fn accepted(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let object = answer
        .body
        .as_object()
        .unwrap_or_else(|| panic!("a JSON object: {}", answer.body));
    assert_eq!(object.len(), 1, "only the id: {}", answer.body);
    let id = answer.body["id"].as_str().unwrap().to_owned();
    assert!(is_hex32(&id), "32 lowercase hex digits: {id}");
    id
}

/// Asserts a refusal with `status` and the JSON error body `{"error": {"code", "message"}}`.
#[track_caller]
fn refused(answer: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert_eq!(answer.code(), code, "{what}: {}", answer.body);
    let message = answer.body["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{what}: a message: {}", answer.body);
}

/// Every error group (all scopes), most recently seen first.
async fn all_groups(app: &TestApp) -> Vec<Value> {
    let answer = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["has_more"], false);
    answer.body["data"].as_array().unwrap().clone()
}

/// The groups of one project.
async fn groups_of(app: &TestApp, project: &Project) -> Vec<Value> {
    all_groups(app)
        .await
        .into_iter()
        .filter(|group| group["scope"] == project.scope())
        .collect()
}

async fn group_detail(app: &TestApp, group: &Value) -> Value {
    let id = group["id"].as_str().unwrap();
    let answer = app.get_as(OPERATOR_TOKEN, &format!("/api/v1/admin/errors/{id}")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// The group whose title starts with `prefix`.
#[track_caller]
fn group_titled<'a>(groups: &'a [Value], prefix: &str) -> &'a Value {
    let found: Vec<&Value> = groups
        .iter()
        .filter(|g| g["title"].as_str().unwrap_or("").starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "one group titled {prefix:?} in {groups:#?}");
    found[0]
}

fn event_ids(detail: &Value) -> BTreeSet<String> {
    detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Everything the admin API shows about `groups`: the list and each group's detail, as text.
async fn admin_text(app: &TestApp) -> String {
    let groups = all_groups(app).await;
    let mut text = Value::Array(groups.clone()).to_string();
    for group in &groups {
        text.push_str(&group_detail(app, group).await.to_string());
    }
    text
}

#[track_caller]
fn assert_absent(haystack: &str, planted: &[&str], place: &str) {
    for secret in planted {
        assert!(
            !haystack.contains(secret),
            "{secret:?} is in {place}: …{}…",
            excerpt(haystack, secret)
        );
    }
}

fn excerpt<'a>(haystack: &'a str, needle: &str) -> &'a str {
    let Some(at) = haystack.find(needle) else {
        return "";
    };
    let mut start = at.saturating_sub(200);
    while !haystack.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + needle.len() + 200).min(haystack.len());
    while !haystack.is_char_boundary(end) {
        end += 1;
    }
    &haystack[start..end]
}

fn bytes_contain(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

/// The peak resident set size of this process (the server runs in it), in kB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// HTTP `deflate`: zlib-wrapped.
fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Raw deflate, as some clients send for `deflate`.
fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        writer.write_all(data).unwrap();
    }
    out
}

/// `decoded` bytes of zeros, gzip-compressed as one stream while streaming: never more than
/// one chunk of zeros and the (small) output are held.
fn gzip_bomb(decoded: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1024 * 1024];
    let mut written = 0;
    while written < decoded {
        let n = chunk.len().min(decoded - written);
        encoder.write_all(&chunk[..n]).unwrap();
        written += n;
    }
    encoder.finish().unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sentry")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// A fixture with the `public_key` of its envelope header (not its items, whose `length`
/// must stay right) set to `key`.
fn fixture_for(name: &str, key: &str) -> Vec<u8> {
    let data = fixture(name);
    let newline = data.iter().position(|b| *b == b'\n').unwrap();
    let header = std::str::from_utf8(&data[..newline]).unwrap();
    let mut header: Value = serde_json::from_str(header).unwrap();
    if let Some(trace) = header.get_mut("trace").and_then(Value::as_object_mut) {
        trace.insert("public_key".into(), Value::String(key.to_owned()));
    }
    let mut out = header.to_string().into_bytes();
    out.extend_from_slice(&data[newline..]);
    out
}

// ---------------------------------------------------------------------------------------
// Raw database content, for the scrubbing checks
// ---------------------------------------------------------------------------------------

/// The SQLite database file behind a TestDatabase URL.
fn sqlite_file(db: &TestDatabase) -> PathBuf {
    let path = db.url.strip_prefix("sqlite://").unwrap();
    PathBuf::from(path.split('?').next().unwrap())
}

/// The text of every column of every row of `table`.
async fn table_text(db: &TestDatabase, engine: Engine, table: &str) -> String {
    use sqlx::{Column, Connection, Row};
    let mut out = String::new();
    match engine {
        Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let rows = sqlx::query(&format!("SELECT t::text AS row FROM {table} t"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for row in rows {
                out.push_str(&row.get::<String, _>("row"));
                out.push('\n');
            }
            conn.close().await.unwrap();
        }
        Engine::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let rows = sqlx::query(&format!("SELECT * FROM {table}"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for row in rows {
                for column in row.columns() {
                    if let Ok(Some(text)) = row.try_get::<Option<String>, _>(column.ordinal()) {
                        out.push_str(&text);
                        out.push('\t');
                    }
                }
                out.push('\n');
            }
            conn.close().await.unwrap();
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. The official Python SDK
// ---------------------------------------------------------------------------------------

/// The Python interpreter to run the SDK with: `BOXOFFICE_TEST_PYTHON` (which must have
/// `sentry_sdk`: the test fails otherwise), else `python3` if it has it, else `None` (skip).
fn python_with_sdk() -> Option<String> {
    let can_import = |python: &str| {
        Command::new(python)
            .args(["-c", "import sentry_sdk"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    match std::env::var("BOXOFFICE_TEST_PYTHON") {
        Ok(python) if !python.trim().is_empty() => {
            assert!(
                can_import(&python),
                "BOXOFFICE_TEST_PYTHON={python} cannot `import sentry_sdk` (scripts/test.sh makes a venv with it)"
            );
            Some(python)
        }
        _ => can_import("python3").then(|| "python3".to_owned()),
    }
}

/// Runs `program args` with `envs`, killing it after `timeout`; returns its stdout and stderr.
fn run_with_timeout(mut command: Command, timeout: Duration) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the child process did not finish within {timeout:?}; stderr: {}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// Planted by tests/sdk/python_client.py.
const PYTHON_PLANTED: &[&str] = &[
    "carol.buyer@example.com",
    "Tr0ub4dor&3-sdk",
    "4111 1111 1111 1111",
    "4111111111111111",
    "dave.user@example.org",
];

both_engines!(official_python_sdk_reports_through_the_dsn, |engine| async move {
    let Some(python) = python_with_sdk() else {
        eprintln!("skipped: sentry_sdk not installed (set BOXOFFICE_TEST_PYTHON to a Python that has it)");
        return;
    };
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let project = project(&app, "Python shop").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/python_client.py");
    let mut command = Command::new(&python);
    command.arg(&script).env("BOXOFFICE_TEST_DSN", &project.dsn);
    let (status, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_with_timeout(command, Duration::from_secs(60)))
            .await
            .unwrap();
    assert!(status.success(), "the SDK script failed ({status}): {stderr}\n{stdout}");
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
    let sent: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {stdout}"));
    eprintln!("sentry-sdk {}", sent["sdk_version"]);
    let exception_ids: BTreeSet<String> = sent["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            id.as_str()
                .unwrap_or_else(|| panic!("the SDK sent every exception: {sent}"))
                .to_owned()
        })
        .collect();
    assert_eq!(exception_ids.len(), 3, "{sent}");
    let message_id = sent["message"].as_str().unwrap().to_owned();

    let groups = groups_of(&app, &project).await;
    assert_eq!(
        groups.len(),
        2,
        "one group for the exception, one for the message: {groups:#?}"
    );
    for group in &groups {
        assert_eq!(group["scope"], project.scope());
    }
    let exception = group_titled(&groups, "ValueError:");
    assert_eq!(
        exception["count"], 3,
        "the same exception, other order ids: {exception}"
    );
    assert_eq!(exception["severity"], "error");
    let detail = group_detail(&app, exception).await;
    assert_eq!(event_ids(&detail), exception_ids, "the stored ids are the SDK's");
    for event in detail["events"].as_array().unwrap() {
        assert_eq!(event["release"], "boxoffice-sdk-test@1.0.0");
        assert_eq!(event["environment"], "test");
        let user = &event["payload"]["user"];
        assert!(user.get("ip_address").is_none(), "no client address is stored: {user}");
        let frames = event["payload"]["exception"]["values"][0]["stacktrace"]["frames"]
            .as_array()
            .unwrap();
        let charge = frames.iter().find(|f| f["function"] == "charge").unwrap();
        assert!(
            charge["vars"].is_object(),
            "the frame variables are kept, scrubbed: {charge}"
        );
        assert!(
            charge["pre_context"].is_array(),
            "the source context is kept, scrubbed: {charge}"
        );
    }

    let message = group_titled(&groups, "box office shut down unexpectedly");
    assert_eq!(message["severity"], "critical", "level fatal is critical: {message}");
    assert_eq!(message["count"], 1);
    let detail = group_detail(&app, message).await;
    assert_eq!(event_ids(&detail), BTreeSet::from([message_id]));
    assert_eq!(detail["events"][0]["severity"], "critical");

    assert_absent(&admin_text(&app).await, PYTHON_PLANTED, "the admin API");
});

// ---------------------------------------------------------------------------------------
// 2. The official Rust `sentry` crate
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct PaymentDeclined(u64);

impl std::fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "payment declined for order {}", self.0)
    }
}

impl std::error::Error for PaymentDeclined {}

both_engines!(official_rust_sdk_reports_through_the_dsn, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let project = project(&app, "Rust shop").await;
    let dsn = project.dsn.clone();
    // The SDK blocks (its transport has a thread of its own): keep it off the runtime's
    // workers, which serve the server.
    let (first, second, fatal) = tokio::task::spawn_blocking(move || {
        let options = sentry::apply_defaults(sentry::ClientOptions {
            dsn: Some(dsn.parse().unwrap()),
            release: Some("boxoffice-rust-sdk-test@1.0.0".into()),
            environment: Some("test".into()),
            ..sentry::ClientOptions::default()
        });
        let client = Arc::new(sentry::Client::with_options(options));
        assert!(client.is_enabled(), "a transport: apply_defaults picks reqwest");
        let hub = sentry::Hub::new(Some(client.clone()), Arc::new(sentry::Scope::default()));
        let first = client.capture_event(sentry::event_from_error(&PaymentDeclined(1234)), None);
        let second = hub.capture_event(sentry::event_from_error(&PaymentDeclined(98_765)));
        let fatal = hub.capture_message("ticket sweeper crashed", sentry::Level::Fatal);
        assert!(client.flush(Some(Duration::from_secs(10))), "the SDK sent everything");
        client.close(Some(Duration::from_secs(5)));
        (first, second, fatal)
    })
    .await
    .unwrap();
    let simple = |id: sentry::types::Uuid| id.simple().to_string();

    let groups = groups_of(&app, &project).await;
    assert_eq!(groups.len(), 2, "{groups:#?}");
    let declined = group_titled(&groups, "PaymentDeclined:");
    assert_eq!(declined["count"], 2, "{declined}");
    assert_eq!(declined["severity"], "error");
    let detail = group_detail(&app, declined).await;
    assert_eq!(event_ids(&detail), BTreeSet::from([simple(first), simple(second)]));
    assert_eq!(detail["events"][0]["release"], "boxoffice-rust-sdk-test@1.0.0");

    let crashed = group_titled(&groups, "ticket sweeper crashed");
    assert_eq!(
        (&crashed["severity"], &crashed["count"]),
        (&json!("critical"), &json!(1))
    );
    let detail = group_detail(&app, crashed).await;
    assert_eq!(event_ids(&detail), BTreeSet::from([simple(fatal)]));
});

// ---------------------------------------------------------------------------------------
// 3. The captured sample envelopes, and every form the SDKs send
// ---------------------------------------------------------------------------------------

both_engines!(sample_envelopes_are_accepted_in_every_form, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let project = project(&app, "Sample shop").await;
    let other = second_project(&app).await;

    // Browser: a session item only (query-string auth, text/plain, no length): accepted,
    // nothing stored.
    let session = post_browser_envelope(&app, &project, fixture("browser-session-init.envelope")).await;
    accepted(&session);
    assert!(all_groups(&app).await.is_empty(), "a session is dropped");

    // Python: gzip, X-Sentry-Auth, item with length.
    let python = fixture_for("python-event.envelope", &project.key);
    let answer = post_envelope(&app, &project, gzip(&python), Some("gzip")).await;
    assert_eq!(accepted(&answer), "1f8fe342500647838aae632658958965");
    // An SDK retry of the same envelope is accepted and not counted twice.
    let retry = post_envelope(&app, &project, gzip(&python), Some("gzip")).await;
    assert_eq!(accepted(&retry), "1f8fe342500647838aae632658958965");

    // Browser: the event, then the session update.
    let browser = post_browser_envelope(&app, &project, fixture_for("browser-event.envelope", &project.key)).await;
    assert_eq!(accepted(&browser), "89ada979d2af4f4380bd79e458285158");
    accepted(&post_browser_envelope(&app, &project, fixture("browser-session-update.envelope")).await);

    // Rust: no content type, no user agent, the deprecated sentry_timestamp, an envelope
    // event id with dashes.
    let rust = app
        .send(
            app.client
                .post(app.url(&project.path()))
                .header(
                    "x-sentry-auth",
                    format!(
                        "Sentry sentry_key={}, sentry_version=7, sentry_timestamp=1795777229.01977, \
                         sentry_client=sentry.rust/0.49.5",
                        project.key
                    ),
                )
                .body(fixture("rust-event.envelope")),
        )
        .await;
    assert_eq!(accepted(&rust), "031e88201ca24ca08464a5440c030ead");

    let groups = groups_of(&app, &project).await;
    assert_eq!(groups.len(), 3, "{groups:#?}");
    for (title, id, component) in [
        ("ValueError:", "1f8fe342500647838aae632658958965", "payments"),
        ("TypeError:", "89ada979d2af4f4380bd79e458285158", "checkout"),
        ("PaymentDeclined:", "031e88201ca24ca08464a5440c030ead", "payments"),
    ] {
        let group = group_titled(&groups, title);
        assert_eq!(group["count"], 1, "{group}");
        assert_eq!(group["severity"], "error");
        assert_eq!(group["component"], component);
        let detail = group_detail(&app, group).await;
        assert_eq!(event_ids(&detail), BTreeSet::from([id.to_owned()]));
        assert_eq!(detail["events"][0]["payload"]["event_id"], id);
    }
    let samples_text = admin_text(&app).await;
    assert_absent(
        &samples_text,
        &["alice@example.com", "bob@example.com", "4111111111111111", "hunter2"],
        "the admin API",
    );

    // Every encoding, items with and without `length`, event ids in every form.
    let probe = |n: u32| {
        json!({
            "level": "warning",
            "platform": "python",
            "exception": {"values": [{"type": "EncodingProbe", "value": format!("probe number {n}")}]},
        })
    };
    let mut expected_ids = BTreeSet::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    for (encoding, encode) in [
        (None, (|d: &[u8]| d.to_vec()) as fn(&[u8]) -> Vec<u8>),
        (Some("identity"), |d: &[u8]| d.to_vec()),
        (Some("gzip"), gzip),
        (Some("x-gzip"), gzip),
        (Some("deflate"), zlib),
        (Some("deflate"), raw_deflate),
        (Some("br"), brotli),
        (Some("GZIP"), gzip),
    ] {
        let id = new_event_id();
        let body = event_envelope(&id, &probe(next()));
        let answer = post_envelope(&app, &project, encode(&body), encoding).await;
        assert_eq!(accepted(&answer), id, "{encoding:?}");
        expected_ids.insert(id);
    }
    // Without `length` (newline-delimited), with a session item with `length` before it
    // and a client report after it, in one envelope.
    let id = new_event_id();
    let session_payload = br#"{"sid":"6291fd743b8045dfa6f1df0b168a3978","init":true,"status":"ok","attrs":{"release":"x","ip_address":"{{auto}}"}}"#;
    let mut body = format!("{}\n", json!({ "event_id": id })).into_bytes();
    body.extend_from_slice(format!("{}\n", json!({"type": "session", "length": session_payload.len()})).as_bytes());
    body.extend_from_slice(session_payload);
    body.extend_from_slice(b"\n{\"type\":\"event\"}\n");
    body.extend_from_slice(probe(next()).to_string().as_bytes());
    body.extend_from_slice(b"\n{\"type\":\"client_report\"}\n{\"discarded_events\":[]}\n");
    assert_eq!(accepted(&post_envelope(&app, &project, body, None).await), id);
    expected_ids.insert(id);
    // Envelope id in upper case with dashes → 32 lowercase hex.
    let id = new_event_id();
    let body = event_envelope(&dashed(&id).to_ascii_uppercase(), &probe(next()));
    assert_eq!(accepted(&post_envelope(&app, &project, body, None).await), id);
    expected_ids.insert(id);
    // No envelope id; the payload's, with dashes → 32 hex.
    let id = new_event_id();
    let mut event = probe(next());
    event["event_id"] = json!(dashed(&id));
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{event}").into_bytes();
    assert_eq!(accepted(&post_envelope(&app, &project, body, None).await), id);
    expected_ids.insert(id);
    // No id anywhere: the server gives one, and answers with it.
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{}\n", probe(next())).into_bytes();
    let given = accepted(&post_envelope(&app, &project, body, None).await);
    expected_ids.insert(given);
    // The envelope header's `dsn` as the only authentication.
    let id = new_event_id();
    let mut body = format!("{}\n", json!({ "event_id": id, "dsn": project.dsn })).into_bytes();
    body.extend_from_slice(format!("{{\"type\":\"event\"}}\n{}\n", probe(next())).as_bytes());
    let dsn_only = app.send(app.client.post(app.url(&project.path())).body(body)).await;
    assert_eq!(accepted(&dsn_only), id);
    expected_ids.insert(id);

    let probes = n;

    // A large event within the limits (900 kB of breadcrumbs) and a deeply nested one are
    // stored, bounded.
    let id = new_event_id();
    let crumbs: Vec<Value> = (0..900)
        .map(|i| json!({"message": format!("step {i} {}", "y".repeat(1000))}))
        .collect();
    let big = json!({
        "message": "large event",
        "breadcrumbs": {"values": crumbs},
        "exception": {"values": [{"type": "LargeEvent", "value": "large"}]},
    });
    assert_eq!(
        accepted(&post_envelope(&app, &project, event_envelope(&id, &big), None).await),
        id
    );
    let mut nested = json!("bottom");
    for _ in 0..100 {
        nested = json!({ "level": nested });
    }
    let deep_id = new_event_id();
    let deep = json!({"exception": {"values": [{"type": "DeepEvent", "value": "deep"}]}, "extra": {"nested": nested}});
    let body = event_envelope(&deep_id, &deep);
    assert_eq!(accepted(&post_envelope(&app, &project, body, None).await), deep_id);
    let groups = groups_of(&app, &project).await;
    let large = group_detail(&app, group_titled(&groups, "LargeEvent:")).await;
    let stored = large["events"][0]["payload"].to_string();
    assert!(
        stored.len() <= 256 * 1024,
        "the stored payload is bounded: {} bytes",
        stored.len()
    );
    assert_eq!(large["events"][0]["payload"]["_boxoffice_truncated"], true);
    let deep = group_detail(&app, group_titled(&groups, "DeepEvent:")).await;
    assert!(deep["events"][0]["payload"].to_string().contains("[too deep]"));
    let groups = groups_of(&app, &project).await;
    let probe_group = group_titled(&groups, "EncodingProbe:");
    assert_eq!(probe_group["count"], probes, "{probe_group}");
    assert_eq!(probe_group["severity"], "warning");
    let detail = group_detail(&app, probe_group).await;
    assert_eq!(event_ids(&detail), expected_ids, "every id stored as 32 lowercase hex");

    // Authentication that does not hold: another project's DSN, a wrong key, none at all.
    let body_with_dsn = |dsn: &str| {
        format!(
            "{}\n{{\"type\":\"event\"}}\n{}\n",
            json!({ "event_id": new_event_id(), "dsn": dsn }),
            probe(0)
        )
        .into_bytes()
    };
    let foreign = app
        .send(
            app.client
                .post(app.url(&project.path()))
                .body(body_with_dsn(&other.dsn)),
        )
        .await;
    refused(&foreign, 401, "unauthorized", "another project's DSN");
    let wrong_dsn = project
        .dsn
        .replacen(&project.key, "0123456789abcdef0123456789abcdef", 1);
    let wrong = app
        .send(
            app.client
                .post(app.url(&project.path()))
                .body(body_with_dsn(&wrong_dsn)),
        )
        .await;
    refused(&wrong, 401, "unauthorized", "a DSN with a wrong key");
    let none = app
        .send(
            app.client
                .post(app.url(&project.path()))
                .body(format!("{{}}\n{{\"type\":\"event\"}}\n{}\n", probe(0))),
        )
        .await;
    refused(&none, 401, "unauthorized", "no key at all");
    let groups = groups_of(&app, &project).await;
    assert_eq!(groups.len(), 6);
    assert_eq!(group_titled(&groups, "EncodingProbe:")["count"], probes);
    assert!(groups_of(&app, &other).await.is_empty());
});

/// A second organization, for the checks that one project's key does not open another.
async fn second_project(app: &TestApp) -> Project {
    project(app, "Neighbour shop").await
}

// ---------------------------------------------------------------------------------------
// 4. Bad envelopes
// ---------------------------------------------------------------------------------------

both_engines!(
    bad_envelopes_are_refused_and_leave_the_server_healthy,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(&db, AppOptions::default()).await;
        let project = project(&app, "Target shop").await;
        let good = |n: u32| {
            event_envelope(
                &new_event_id(),
                &json!({"exception": {"values": [{"type": "GoodEvent", "value": format!("fine {n}")}]}}),
            )
        };

        let garbage = post_envelope(
            &app,
            &project,
            b"\x00\xff\xfe garbage \x01\x02 not an envelope".to_vec(),
            None,
        )
        .await;
        refused(&garbage, 400, "invalid_request", "garbage bytes");
        let fake_gzip = post_envelope(&app, &project, good(1), Some("gzip")).await;
        refused(&fake_gzip, 400, "invalid_request", "a body that is not gzip");
        let fake_br = post_envelope(&app, &project, good(1), Some("br")).await;
        refused(&fake_br, 400, "invalid_request", "a body that is not brotli");
        let unsupported = post_envelope(&app, &project, good(1), Some("zstd")).await;
        refused(&unsupported, 415, "invalid_request", "an unsupported encoding");
        let stacked = post_envelope(&app, &project, gzip(&gzip(&good(1))), Some("gzip, gzip")).await;
        refused(&stacked, 415, "invalid_request", "stacked encodings");

        let not_json =
            b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"event\",\"length\":9}\nnot json!\n"
                .to_vec();
        refused(
            &post_envelope(&app, &project, not_json, None).await,
            400,
            "invalid_request",
            "an event that is not JSON",
        );
        let not_object = b"{}\n{\"type\":\"event\"}\n[1,2,3]\n".to_vec();
        refused(
            &post_envelope(&app, &project, not_object, None).await,
            400,
            "invalid_request",
            "an event that is not a JSON object",
        );
        let overlong = b"{}\n{\"type\":\"event\",\"length\":999999}\n{}\n".to_vec();
        refused(
            &post_envelope(&app, &project, overlong, None).await,
            400,
            "invalid_request",
            "a length past the end",
        );
        let bad_id = b"{\"event_id\":\"not-a-uuid\"}\n{\"type\":\"event\"}\n{}\n".to_vec();
        refused(
            &post_envelope(&app, &project, bad_id, None).await,
            400,
            "invalid_request",
            "an envelope event id that is not a UUID",
        );
        let empty = post_envelope(&app, &project, Vec::new(), None).await;
        refused(&empty, 400, "invalid_request", "an empty body");
        let mut many = b"{}\n".to_vec();
        for _ in 0..101 {
            many.extend_from_slice(b"{\"type\":\"client_report\"}\n{}\n");
        }
        refused(
            &post_envelope(&app, &project, many, None).await,
            413,
            "payload_too_large",
            "more than 100 items",
        );

        // Nesting past serde_json's recursion limit is refused, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!("{{}}\n{{\"type\":\"event\"}}\n{{\"extra\":{{\"deep\":{deep}}}}}\n").into_bytes();
        refused(
            &post_envelope(&app, &project, body, None).await,
            400,
            "invalid_request",
            "nesting 100 000 deep",
        );

        // Authentication and addressing.
        let mut wrong_key = project.clone();
        wrong_key.key = "0123456789abcdef0123456789abcdef".into();
        refused(
            &post_envelope(&app, &wrong_key, good(1), None).await,
            401,
            "unauthorized",
            "a wrong key",
        );
        let other = second_project(&app).await;
        let mut crossed = other.clone();
        crossed.key = project.key.clone();
        refused(
            &post_envelope(&app, &crossed, good(1), None).await,
            401,
            "unauthorized",
            "a key of another project",
        );
        for path in ["999999", "abc", "0", "-1", "1.5", "99999999999999999999999"] {
            let answer = app
                .send(
                    app.client
                        .post(app.url(&format!("/api/{path}/envelope/")))
                        .header("x-sentry-auth", sentry_auth(&project.key))
                        .body(good(1)),
                )
                .await;
            refused(&answer, 404, "not_found", &format!("project {path}"));
        }

        // A decompression bomb (first, so that the peak RSS is not already raised by the
        // large bodies below).
        let built = Instant::now();
        let bomb = tokio::task::spawn_blocking(|| gzip_bomb(200 * 1024 * 1024))
            .await
            .unwrap();
        eprintln!(
            "gzip bomb: 200 MiB of zeros in {} KiB, built in {:?}",
            bomb.len() / 1024,
            built.elapsed()
        );
        assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
        let before = peak_rss_kb();
        let answer = post_envelope(&app, &project, bomb, Some("gzip")).await;
        refused(&answer, 413, "payload_too_large", "a gzip bomb");
        if let (Some(before), Some(after)) = (before, peak_rss_kb()) {
            let growth_mb = after.saturating_sub(before) / 1024;
            eprintln!("peak RSS {before} kB before the bomb, {after} kB after (+{growth_mb} MB)");
            assert!(
                growth_mb < 100,
                "the bomb was decoded far past the limit: +{growth_mb} MB"
            );
        }

        // Too large: over the 20 MiB body limit, an event over 1 MB.
        let oversized = vec![b'a'; 21 * 1024 * 1024];
        let answer = post_envelope(&app, &project, oversized, None).await;
        refused(&answer, 413, "payload_too_large", "a body over 20 MiB");
        let big_event = {
            let padding = "x".repeat(2 * 1024 * 1024);
            event_envelope(
                &new_event_id(),
                &json!({"message": "big", "extra": {"padding": padding}}),
            )
        };
        refused(
            &post_envelope(&app, &project, big_event, None).await,
            413,
            "payload_too_large",
            "an event item over 1 MB",
        );

        assert!(
            all_groups(&app).await.is_empty(),
            "nothing was stored (not even a server error)"
        );
        let health = app.get("/healthz").await;
        assert_eq!(health.status, 200);
        accepted(&post_envelope(&app, &project, good(2), None).await);
        let groups = all_groups(&app).await;
        assert_eq!(groups.len(), 1, "{groups:#?}");
        assert_eq!(groups[0]["scope"], project.scope());
    }
);

// ---------------------------------------------------------------------------------------
// 5. CORS
// ---------------------------------------------------------------------------------------

const BROWSER_ORIGIN: &str = "https://tickets.organizer.example";

fn header_list(answer: &Answer, name: &str) -> Vec<String> {
    answer
        .headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.to_str().unwrap().split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .collect()
}

both_engines!(browsers_may_post_envelopes_from_any_origin, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let project = project(&app, "Browser shop").await;
    let answer = app
        .send(
            app.client
                .post(app.url(&format!(
                    "{}?sentry_version=7&sentry_key={}",
                    project.path(),
                    project.key
                )))
                .header("origin", BROWSER_ORIGIN)
                .header("content-type", "text/plain;charset=UTF-8")
                .body(fixture_for("browser-event.envelope", &project.key)),
        )
        .await;
    accepted(&answer);
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    let exposed = header_list(&answer, "access-control-expose-headers");
    for wanted in ["x-sentry-rate-limits", "retry-after"] {
        assert!(exposed.contains(&wanted.to_owned()), "{wanted} exposed: {exposed:?}");
    }
    // A refusal is readable by the browser too.
    let refusal = app
        .send(
            app.client
                .post(app.url(&format!("{}?sentry_key=nope", project.path())))
                .header("origin", BROWSER_ORIGIN)
                .body("{}"),
        )
        .await;
    assert_eq!(refusal.status, 401);
    assert_eq!(refusal.headers["access-control-allow-origin"], "*");
});

// Regression test: the preflight was answered 405 by the router's
// `method_not_allowed_fallback`, which replaced the envelope route's default fallback under
// the CORS layer; browsers that preflight (an SDK sending `X-Sentry-Auth` or
// `Content-Type: application/x-sentry-envelope` cross-origin) could not report.
both_engines!(cors_preflight_of_the_envelope_route_is_allowed, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let project = project(&app, "Preflight shop").await;
    for path in ["/api/1/envelope/".to_owned(), project.path()] {
        let preflight = app
            .send(
                app.client
                    .request(reqwest::Method::OPTIONS, app.url(&path))
                    .header("origin", BROWSER_ORIGIN)
                    .header("access-control-request-method", "POST")
                    .header("access-control-request-headers", "content-type,x-sentry-auth"),
            )
            .await;
        assert!(
            (200..300).contains(&preflight.status),
            "{path}: {} {}",
            preflight.status,
            preflight.body
        );
        assert_eq!(preflight.headers["access-control-allow-origin"], "*");
        let methods = header_list(&preflight, "access-control-allow-methods");
        assert!(methods.contains(&"post".to_owned()), "{methods:?}");
        let headers = header_list(&preflight, "access-control-allow-headers");
        for wanted in ["content-type", "x-sentry-auth"] {
            assert!(
                headers.contains(&wanted.to_owned()) || headers.contains(&"*".to_owned()),
                "{wanted} in {headers:?}"
            );
        }
    }
});

// ---------------------------------------------------------------------------------------
// 6. Rate limits per project
// ---------------------------------------------------------------------------------------

both_engines!(each_project_has_its_own_rate_limit, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(
        &db,
        AppOptions {
            error_rate_limit_per_minute: 5,
            ..AppOptions::default()
        },
    )
    .await;
    let busy = project(&app, "Busy shop").await;
    let quiet = second_project(&app).await;
    let event = |n: usize| json!({"exception": {"values": [{"type": "Flood", "value": format!("flood {n}")}]}});

    let mut statuses = Vec::new();
    let mut limited = Vec::new();
    for n in 0..8 {
        let request = app
            .client
            .post(app.url(&busy.path()))
            .header("x-sentry-auth", sentry_auth(&busy.key))
            .header("origin", "https://busy.example")
            .body(event_envelope(&new_event_id(), &event(n)));
        let answer = app.send(request).await;
        statuses.push(answer.status);
        if answer.status == 429 {
            limited.push(answer);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    for answer in &limited {
        refused(answer, 429, "rate_limited", "over the project's limit");
        let retry_after: u64 = answer.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        let limits = answer.headers["x-sentry-rate-limits"].to_str().unwrap();
        let seconds: u64 = limits.split(':').next().unwrap().parse().unwrap();
        assert!(seconds >= 1, "{limits}");
        assert_eq!(
            answer.headers["access-control-allow-origin"], "*",
            "the browser SDK reads it"
        );
    }
    // Another organization's project is not affected.
    for n in 0..3 {
        accepted(&post_envelope(&app, &quiet, event_envelope(&new_event_id(), &event(n)), None).await);
    }
    let busy_groups = groups_of(&app, &busy).await;
    assert_eq!(busy_groups.len(), 1);
    assert_eq!(busy_groups[0]["count"], 5, "refused envelopes are not stored");
    assert_eq!(groups_of(&app, &quiet).await[0]["count"], 3);
});

// Regression test: a request without a key (or with a malformed one) used to take a token
// from the project's bucket before it was refused 401. Project ids are small sequential
// numbers, so anyone could exhaust every project's limit without knowing a single key, and
// the organizations' real SDKs then got 429.
both_engines!(
    refused_unauthenticated_envelopes_do_not_use_up_the_limit,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(
            &db,
            AppOptions {
                error_rate_limit_per_minute: 5,
                ..AppOptions::default()
            },
        )
        .await;
        let victim = project(&app, "Victim shop").await;
        let body = |n: usize| {
            event_envelope(
                &new_event_id(),
                &json!({"exception": {"values": [{"type": "Real", "value": format!("real {n}")}]}}),
            )
        };
        let mut statuses = Vec::new();
        for n in 0..6 {
            // No key at all, and a key that is not even well-formed: refused either way.
            let anonymous = app.send(app.client.post(app.url(&victim.path())).body(body(n))).await;
            let malformed = app
                .send(
                    app.client
                        .post(app.url(&format!("{}?sentry_key=not%20a%20key", victim.path())))
                        .body(body(n)),
                )
                .await;
            statuses.extend([anonymous.status, malformed.status]);
        }
        assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
        let mut wrong_key = victim.clone();
        wrong_key.key = "0123456789abcdef0123456789abcdef".into();
        refused(
            &post_envelope(&app, &wrong_key, body(0), None).await,
            401,
            "unauthorized",
            "a wrong key",
        );
        let real = post_envelope(&app, &victim, body(99), None).await;
        assert_eq!(
            real.status, 200,
            "the project's own SDK is limited by requests without a key ({statuses:?}): {}",
            real.body
        );
    }
);

// ---------------------------------------------------------------------------------------
// 7. Grouping
// ---------------------------------------------------------------------------------------

both_engines!(
    same_errors_with_other_variable_parts_group_together,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(&db, AppOptions::default()).await;
        let project = project(&app, "Grouping shop").await;

        type Message = fn(usize) -> String;
        let kinds: [(&str, Message); 10] = [
            ("OrderNotFound", |i| format!("order {} not found", 1000 + i * 7919)),
            ("PaymentDeclined", |i| {
                format!("card declined for customer{i}.buyer@example.com")
            }),
            ("HoldExpired", |i| {
                format!(
                    "hold {} expired at 2026-11-2{i}T10:5{i}:0{i}Z",
                    dashed(&format!("{i}{}", &"a1b2c3d4e5f60718293a4b5c6d7e8f90"[1..]))
                )
            }),
            ("HoldMissing", |i| {
                format!("no such hold hold_{:0>32}", format!("{i}abc{i}"))
            }),
            ("DatabaseUnreachable", |i| {
                format!("connection to 10.0.{i}.{} port 5432 refused", 10 + i)
            }),
            ("ClientBlocked", |i| {
                format!("client 2001:db8::{i}:{} exceeded {} requests", 7 + i, 100 * (i + 1))
            }),
            ("AmountTooLow", |i| {
                format!("amount {}.{i}0 EUR is below the minimum", 3 + i)
            }),
            ("DuplicateWebhook", |i| {
                format!("webhook \"evt_{i}PqRsTuV{i}\" delivered {} times", i + 2)
            }),
            ("SeatTaken", |i| {
                format!("row {} seat {} is already sold", i + 1, 10 * i + 4)
            }),
            ("LockTimeout", |i| {
                format!("lock 0x7f3a{i}c9d0 not acquired after {}ms", 5000 + i * 37)
            }),
        ];
        // All thirty at once, as a burst from many browsers would come: the ten groups are
        // created under concurrency.
        let mut sends = Vec::new();
        for i in 0..3 {
            for (kind, message) in &kinds {
                let event = json!({
                    "level": "error",
                    "platform": "python",
                    "exception": {"values": [{
                        "type": kind,
                        "value": message(i),
                        "stacktrace": {"frames": [
                            {"module": "app.jobs", "function": "run", "filename": "app/jobs.py", "lineno": 10 + i, "in_app": true},
                            {"module": "app.tickets", "function": format!("handle_{}", kind.to_ascii_lowercase()), "filename": "app/tickets.py", "lineno": 200 + i * 3, "in_app": true},
                        ]},
                    }]},
                });
                let body = gzip(&event_envelope(&new_event_id(), &event));
                sends.push(post_envelope(&app, &project, body, Some("gzip")));
            }
        }
        for answer in futures::future::join_all(sends).await {
            accepted(&answer);
        }
        let groups = groups_of(&app, &project).await;
        let summary: Vec<String> = groups
            .iter()
            .map(|g| format!("{} × {}", g["count"], g["title"]))
            .collect();
        assert_eq!(groups.len(), 10, "{summary:#?}");
        for (kind, _) in &kinds {
            let group = group_titled(&groups, &format!("{kind}:"));
            assert_eq!(group["count"], 3, "{summary:#?}");
        }
        assert_absent(
            &Value::Array(groups).to_string(),
            &["buyer@example.com", "10.0.1.11", "2001:db8::"],
            "the group titles",
        );
    }
);

// ---------------------------------------------------------------------------------------
// 8. Scrubbing: personal data planted in every field an SDK sends
// ---------------------------------------------------------------------------------------

const EMAIL: &str = "zoe.planted@example.com";
const IPV4: &str = "198.51.100.23";
const IPV6: &str = "2001:db8:85a3::8a2e:370:7334";
const CARD_SPACED: &str = "4111 1111 1111 1111";
const CARD_BARE: &str = "4242424242424242";
const CARD_COMPACT: &str = "4111111111111111";
const BEARER: &str = "eyJhbGciOiJIUzI1NiJ9.cGxhbnRlZA.plantedTokenSignature";
const PASSWORD: &str = "CorrectHorse-Battery9";
const API_KEY: &str = "ak_live_PLANTEDapikey1234";
const SESSION_COOKIE: &str = "sess-PLANTED-cookie-7777";
const BASIC_CREDENTIALS: &str = "em9lOkNvcnJlY3RIb3JzZQ";
/// Parts of the planted values: a partial leak counts too.
const PLANTED_FRAGMENTS: &[&str] = &[
    "zoe.planted",
    "51.100.23",
    "8a2e:370:7334",
    "4242 4242",
    "plantedTokenSignature",
    "cGxhbnRlZA",
    "CorrectHorse",
    "PLANTED",
];
/// Not Luhn-valid (and a timestamp-like `1…`): must survive.
const NOT_A_CARD: &str = "1234567812345678";
/// Starts like a Visa but fails Luhn: must survive.
const NOT_A_CARD_VISA: &str = "4111111111111112";

const PLANTED: &[&str] = &[
    EMAIL,
    IPV4,
    IPV6,
    CARD_SPACED,
    CARD_COMPACT,
    CARD_BARE,
    BEARER,
    PASSWORD,
    API_KEY,
    SESSION_COOKIE,
    BASIC_CREDENTIALS,
    "zoe.planted%40example.com",
    "Zoe.Planted@Example.COM",
    "::ffff:198.51.100.23",
];

fn planted_event() -> Value {
    json!({
        "level": "error",
        "platform": "python",
        "logger": "checkout",
        "message": format!("checkout failed for {EMAIL} from {IPV4} with card {CARD_SPACED}, password={PASSWORD}"),
        "logentry": {
            "message": "login by %s from %s with card %s",
            "params": [EMAIL, IPV6, CARD_BARE],
            "formatted": format!("login by {EMAIL} from {IPV6} with card {CARD_BARE}, api_key={API_KEY}"),
        },
        "exception": {"values": [{
            "type": "CardDeclined",
            "value": format!("card {CARD_BARE} declined for {EMAIL} at {IPV4} / {IPV6} (Bearer {BEARER}); retried with {CARD_COMPACT}"),
            "stacktrace": {"frames": [
                {
                    "module": "app.checkout", "function": "pay", "filename": "app/checkout.py", "lineno": 42,
                    "in_app": true,
                    "vars": {
                        "email": EMAIL,
                        "customer": format!("'{EMAIL}'"),
                        "password": PASSWORD,
                        "card": format!("'{CARD_SPACED}'"),
                        "card_bare": CARD_BARE,
                        "card_int": 4_242_424_242_424_242_u64,
                        "api_key": API_KEY,
                        "headers": {"Authorization": format!("Bearer {BEARER}"), "Cookie": format!("session={SESSION_COOKIE}")},
                        "client": IPV4,
                        "peer": format!("[{IPV6}]:443"),
                        "reference": NOT_A_CARD,
                        "almost_visa": NOT_A_CARD_VISA,
                    },
                    "pre_context": [
                        format!("    email = \"{EMAIL}\""),
                        format!("    password = \"{PASSWORD}\""),
                        format!("    card = \"{CARD_SPACED}\""),
                    ],
                    "context_line": format!("    charge(card, headers={{\"Authorization\": \"Bearer {BEARER}\"}})"),
                    "post_context": [
                        format!("    log(\"from {IPV4} / {IPV6} card {CARD_BARE}\")"),
                        format!("    # api_key={API_KEY}"),
                        format!("    # cookie: session={SESSION_COOKIE}"),
                    ],
                },
            ]},
        }]},
        "contexts": {
            "customer": {"email": EMAIL, "card": CARD_SPACED, "last_ip": IPV4},
            "payment": {"note": format!("paid with {CARD_BARE} by {EMAIL}"), "api_key": API_KEY, "reference": NOT_A_CARD},
            "network": {"ipv6": IPV6, "client_ip": IPV4},
        },
        "tags": {
            "component": "checkout",
            "customer_email": EMAIL,
            "client": IPV4,
            "client6": IPV6,
            "api_key": API_KEY,
            "card": CARD_BARE,
            "card2": CARD_COMPACT,
            "contact": "Zoe.Planted@Example.COM",
        },
        "extra": {
            "password": PASSWORD,
            "api_key": API_KEY,
            "note": format!("{EMAIL} paid with {CARD_SPACED} from {IPV6}"),
            "auth_header": format!("Bearer {BEARER}"),
            "order_reference": NOT_A_CARD,
            "almost_visa": NOT_A_CARD_VISA,
            "raw_body": format!("{{\"password\": \"{PASSWORD}\", \"card\": \"{CARD_COMPACT}\", \"email\": \"{EMAIL}\"}}"),
            "upstream": format!("GET /v1/charges Authorization: Basic {BASIC_CREDENTIALS}"),
        },
        "user": {
            "id": "u-77",
            "email": EMAIL,
            "ip_address": IPV4,
            "username": EMAIL,
            "data": {"phone_ip": IPV6},
        },
        "request": {
            "url": format!("https://shop.example/checkout?token={API_KEY}&email={EMAIL}&api_key={API_KEY}"),
            "method": "POST",
            "query_string": format!("token={API_KEY}&email={EMAIL}"),
            "headers": {
                "Authorization": format!("Bearer {BEARER}"),
                "Cookie": format!("session={SESSION_COOKIE}; theme=dark"),
                "X-Forwarded-For": format!("{IPV4}, {IPV6}"),
                "User-Agent": "Mozilla/5.0",
                "Referer": format!("https://shop.example/account?email={EMAIL}"),
            },
            "cookies": {"session": SESSION_COOKIE, "theme": "dark"},
            "data": {"email": EMAIL, "password": PASSWORD, "card_number": CARD_SPACED, "card": CARD_BARE, "api_key": API_KEY, "note": format!("from {IPV4}")},
            "env": {"REMOTE_ADDR": IPV4, "SERVER_NAME": "shop.example", "HTTP_X_REAL_IP": IPV6},
        },
        "breadcrumbs": {"values": [
            {
                "type": "http", "category": "http",
                "message": format!("POST /login email={EMAIL} password={PASSWORD} from {IPV4}"),
                "data": {"url": format!("https://api.example/pay?api_key={API_KEY}&user=zoe.planted%40example.com"), "peer": "::ffff:198.51.100.23", "Authorization": format!("Bearer {BEARER}"), "ip": IPV6, "card": CARD_SPACED},
            },
            {
                "category": "console",
                "message": format!("charging {CARD_BARE} for {EMAIL}; Cookie: session={SESSION_COOKIE}"),
                "data": {"arguments": [EMAIL, CARD_SPACED, format!("Bearer {BEARER}")]},
            },
        ]},
        "release": "shop@1.2.3",
        "environment": "production",
    })
}

both_engines!(personal_data_is_scrubbed_everywhere_it_is_stored, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let project = project(&app, "Scrubbed shop").await;
    let event = planted_event();
    let sanity = event.to_string();
    for planted in PLANTED.iter().chain([&NOT_A_CARD, &NOT_A_CARD_VISA]) {
        assert!(sanity.contains(planted), "the corpus plants {planted}");
    }
    let id = new_event_id();
    let answer = post_envelope(&app, &project, gzip(&event_envelope(&id, &event)), Some("gzip")).await;
    assert_eq!(accepted(&answer), id);

    // (a) The admin API.
    let groups = groups_of(&app, &project).await;
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let detail = group_detail(&app, &groups[0]).await;
    assert_eq!(event_ids(&detail), BTreeSet::from([id.clone()]));
    let shown = admin_text(&app).await;
    assert_absent(&shown, PLANTED, "the admin API");
    assert_absent(&shown, PLANTED_FRAGMENTS, "the admin API");
    for survivor in [NOT_A_CARD, NOT_A_CARD_VISA] {
        assert!(
            shown.contains(survivor),
            "{survivor} (not a card) was over-scrubbed: {shown}"
        );
    }
    let payload = &detail["events"][0]["payload"];
    assert!(payload["user"].get("ip_address").is_none(), "{}", payload["user"]);
    assert!(
        payload["request"]["env"].get("REMOTE_ADDR").is_none(),
        "{}",
        payload["request"]["env"]
    );
    assert_eq!(payload["extra"]["order_reference"], NOT_A_CARD);
    assert_eq!(payload["release"], "shop@1.2.3");

    // (b) The database itself.
    for table in ["error_events", "error_groups"] {
        let text = table_text(&db, engine, table).await;
        assert!(!text.is_empty(), "{table} has rows");
        assert_absent(&text, PLANTED, &format!("the {table} table"));
        assert_absent(&text, PLANTED_FRAGMENTS, &format!("the {table} table"));
        if table == "error_events" {
            assert!(text.contains(&id), "the event row is read");
            assert!(text.contains(NOT_A_CARD), "the payload is read");
        }
    }
    if engine == Engine::Sqlite {
        let file = sqlite_file(&db);
        let mut seen = Vec::new();
        for path in [file.clone(), PathBuf::from(format!("{}-wal", file.display()))] {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            for planted in PLANTED.iter().chain(PLANTED_FRAGMENTS) {
                assert!(
                    !bytes_contain(&bytes, planted.as_bytes()),
                    "{planted:?} is in the bytes of {}",
                    path.display()
                );
            }
            seen.push(bytes);
        }
        assert!(
            seen.iter().any(|bytes| bytes_contain(bytes, id.as_bytes())),
            "the event is in the database files read"
        );
    }
    // Nothing was spooled either (the database was up), and if it was, it is scrubbed.
    if let Ok(entries) = std::fs::read_dir(&app.spool_dir) {
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                for planted in PLANTED {
                    assert!(!bytes_contain(&bytes, planted.as_bytes()), "{planted:?} spooled");
                }
            }
        }
    }
});
