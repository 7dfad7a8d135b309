//! Fault tests with several instances (issue 8): three `boxoffice serve` processes share one
//! PostgreSQL while buyers and error reporters load them concurrently, and meanwhile
//! instances are killed with SIGKILL and restarted, PostgreSQL itself is restarted, and the
//! Stripe test double answers 500s, cuts connections, drops, duplicates and reorders webhooks.
//! Afterwards the database, the admin API and the double must agree: nothing oversold, one
//! PaymentIntent per idempotency key, every payment turned into exactly one paid (or
//! refunded) order with the right tickets, every webhook applied once, every error answered
//! 2xx stored. The figures of the run are printed (run with `--no-capture` to see them).
//!
//! ```sh
//! cargo nextest run -p boxoffice --test faults --no-capture                            # short, ~60–90 s
//! BOXOFFICE_FAULTS_LONG=1 cargo nextest run --profile long -p boxoffice --test faults --no-capture  # ~5 min
//! ```
//!
//! - `BOXOFFICE_FAULTS_LONG=1`: the long variant (4 minutes of load instead of 40 s, more
//!   buyers and capacity, a kill every 5 s, PostgreSQL restarted every ~minute).
//! - `BOXOFFICE_FAULTS_SEED=N`: replay the buyers' random choices of an earlier run (the seed
//!   is printed). Kill and restart timing still depends on the machine.
//!
//! PostgreSQL: the test starts its OWN throw-away cluster (initdb + pg_ctl on a free port in
//! a directory under /tmp, trust auth, 127.0.0.1 only), because it restarts PostgreSQL
//! mid-load; it never touches the server `scripts/test.sh` uses. The server binaries are
//! found as `scripts/lib/postgres.sh` finds them (PATH, then the newest
//! `/usr/lib/postgresql/*/bin`); as root they run as the unprivileged user `boxoffice-test`
//! (created when missing; `nobody` otherwise) through `runuser`, since initdb refuses root.
//! Without the binaries the test FAILS and says so (never skips): install Debian's
//! `postgresql`. The cluster is stopped and its directory removed at the end, also when an
//! assertion fails (a Drop guard).
//!
//! Webhooks: the double delivers to one URL, so it points at a tiny round-robin proxy in this
//! test that forwards each delivery to the next instance (a 502 when that one is down, which
//! the double retries, as Stripe does with an unreachable endpoint).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::Connection;

const INSTANCES: usize = 3;
const TOKEN: &str = "bo_admin_faults_test_token";
const STRIPE_KEY: &str = "sk_test_faults";
const WEBHOOK_SECRET: &str = "whsec_faults";

/// How big and how long.
struct Profile {
    name: &'static str,
    load: Duration,
    buyer_workers: usize,
    error_workers: usize,
    capacities: [i64; 3],
    /// Time between two chaos actions (a kill, or a PostgreSQL restart).
    chaos_every: Duration,
    /// A PostgreSQL restart replaces every n-th chaos action (the first after three kills).
    pg_restart_every: usize,
}

impl Profile {
    fn from_env() -> Self {
        if std::env::var("BOXOFFICE_FAULTS_LONG").is_ok_and(|v| v == "1") {
            Self {
                name: "long",
                load: Duration::from_secs(240),
                buyer_workers: 12,
                error_workers: 2,
                capacities: [2_000, 1_200, 400],
                chaos_every: Duration::from_secs(5),
                pg_restart_every: 12,
            }
        } else {
            Self {
                name: "short",
                load: Duration::from_secs(45),
                buyer_workers: 8,
                error_workers: 2,
                capacities: [250, 150, 60],
                chaos_every: Duration::from_secs(4),
                pg_restart_every: 100,
            }
        }
    }
}

// ---- the throw-away PostgreSQL cluster ---------------------------------------------------

/// A PostgreSQL cluster of our own; stopped and deleted on drop.
struct PgCluster {
    dir: Option<tempfile::TempDir>,
    bindir: PathBuf,
    run_as: Option<String>,
    port: u16,
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The directory holding initdb and pg_ctl, as `bo_pg_find_bindir` finds it.
fn find_pg_bindir() -> Option<PathBuf> {
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| is_executable(p))
        })
    };
    if let (Some(_), Some(pg_ctl)) = (on_path("initdb"), on_path("pg_ctl"))
        && let Some(dir) = std::fs::canonicalize(pg_ctl)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        && is_executable(&dir.join("initdb"))
        && is_executable(&dir.join("pg_ctl"))
    {
        return Some(dir);
    }
    // Debian keeps the server binaries off PATH, one directory per major version: newest first.
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.split('.').map(|part| part.parse().unwrap_or(0)).collect();
            (key, entry.path().join("bin"))
        })
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|(_, dir)| dir)
        .find(|dir| is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl")))
}

fn command_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// As root, the unprivileged owner of the cluster (created when missing), as
/// `_bo_pg_pick_user` picks it; `None` when not root.
fn pick_pg_user() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let user = std::env::var("BO_PG_TEST_USER").unwrap_or_else(|_| "boxoffice-test".to_owned());
    if !command_ok("id", &["-u", &user]) {
        command_ok(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                &user,
            ],
        );
    }
    Some(if command_ok("id", &["-u", &user]) {
        user
    } else {
        "nobody".to_owned()
    })
}

impl PgCluster {
    fn start() -> Self {
        let bindir = find_pg_bindir().unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server binaries (initdb and pg_ctl) on PATH or in /usr/lib/postgresql/*/bin: \
                 this test starts and restarts its own cluster and never skips. Install Debian's \
                 `postgresql` package (apt-get install postgresql)."
            )
        });
        let run_as = pick_pg_user();
        // /tmp explicitly: the cluster owner must reach it; short for the unix socket path.
        let dir = tempfile::Builder::new()
            .prefix("boxoffice-pg.")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        if let Some(user) = &run_as {
            assert!(
                command_ok("chown", &["-R", user, &dir.path().display().to_string()]),
                "chown of the cluster directory to {user} failed"
            );
        }
        let mut cluster = Self {
            dir: Some(dir),
            bindir,
            run_as,
            port: 0,
        };
        let data = cluster.path("data");
        let initdb = cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            initdb.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        for attempt in 1..=5 {
            cluster.port = free_port();
            if cluster.pg_ctl_start() {
                return cluster;
            }
            eprintln!("pg_ctl start on port {} failed (attempt {attempt} of 5)", cluster.port);
            cluster.pg_ctl(&["-m", "immediate", "-w", "-t", "10", "stop"]);
        }
        panic!(
            "could not start the throw-away PostgreSQL: {}",
            std::fs::read_to_string(cluster.path("server.log")).unwrap_or_default()
        );
    }

    fn path(&self, name: &str) -> String {
        self.dir.as_ref().unwrap().path().join(name).display().to_string()
    }

    /// Runs one of the server binaries as the cluster's owner, in its directory.
    fn run(&self, binary: &str, args: &[&str]) -> std::process::Output {
        let program = self.bindir.join(binary);
        let mut command = match &self.run_as {
            None => Command::new(&program),
            Some(user) if Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists() => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            Some(user) => {
                let quoted: Vec<String> = std::iter::once(program.display().to_string())
                    .chain(args.iter().map(|a| (*a).to_owned()))
                    .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
                    .collect();
                let mut c = Command::new("su");
                c.args(["-s", "/bin/sh", user, "-c", &quoted.join(" ")]);
                c.current_dir(self.dir.as_ref().unwrap().path());
                return c.stdin(Stdio::null()).output().unwrap();
            }
        };
        command
            .args(args)
            .current_dir(self.dir.as_ref().unwrap().path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let data = self.path("data");
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all).status.success()
    }

    fn pg_ctl_start(&self) -> bool {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.path("sock")
        );
        let log = self.path("server.log");
        self.pg_ctl(&["-l", &log, "-w", "-t", "60", "-o", &options, "start"])
    }

    fn stop_fast(&self) -> bool {
        self.pg_ctl(&["-m", "fast", "-w", "-t", "30", "stop"])
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let Some(dir) = &self.dir else { return };
        let pid_file = dir.path().join("data/postmaster.pid");
        if pid_file.exists() {
            if !self.stop_fast() {
                self.pg_ctl(&["-m", "immediate", "-w", "-t", "10", "stop"]);
            }
            // Last resort: the postmaster's pid is the first line of postmaster.pid.
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.lines().next().map(str::to_owned))
                .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty())
                && command_ok("kill", &["-0", &pid])
            {
                command_ok("kill", &["-KILL", &pid]);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Dropping the TempDir removes the directory (root may remove the owner's files).
        self.dir.take();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- processes -----------------------------------------------------------------------------

/// A `boxoffice` child process, killed on drop.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `boxoffice ARGS`, waits for its "serving" line and returns the process with the
/// address it printed. Its output (and its JSON log lines) go to `log`.
fn spawn_boxoffice(args: &[String], log: &Path, ready_marker: &str) -> Result<(Proc, String), String> {
    let log_file = OpenOptions::new().create(true).append(true).open(log).unwrap();
    // Owned by a `Proc` at once: whatever happens below, the process is killed and reaped.
    let mut process = Proc {
        child: Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .args(args)
            .env_remove("BOXOFFICE_DATABASE_URL")
            .env_remove("BOXOFFICE_ADMIN_TOKEN")
            .env_remove("STRIPE_API_BASE")
            .env_remove("STRIPE_SECRET_KEY")
            .env_remove("STRIPE_WEBHOOK_SECRET")
            .env_remove("SENTRY_DSN")
            .env_remove("BOXOFFICE_SMTP_URL")
            .env_remove("BOXOFFICE_TEST_CRASH_POINT")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file.try_clone().unwrap())
            .spawn()
            .unwrap(),
    };
    let mut reader = BufReader::new(process.child.stdout.take().unwrap());
    let mut log_file = log_file;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            let status = process.child.wait().unwrap();
            return Err(format!("exited before serving ({status}); see {}", log.display()));
        }
        let _ = log_file.write_all(line.as_bytes());
        if line.contains(ready_marker)
            && let Some(rest) = line.split("serving ").nth(1)
        {
            let base = rest.split_whitespace().next().unwrap().to_owned();
            // Keep draining stdout (the JSON logs) into the log so the child never blocks.
            std::thread::spawn(move || {
                for line in reader.lines().map_while(Result::ok) {
                    let _ = writeln!(log_file, "{line}");
                }
            });
            return Ok((process, base));
        }
    }
}

/// One of the three instances: its port stays the same across restarts.
struct Instance {
    slot: usize,
    port: u16,
    args: Vec<String>,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Instance {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it, retrying (the port may linger, the database may be down) for up to 60 s.
    async fn start(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tries = 0;
        loop {
            tries += 1;
            let (args, log) = (self.args.clone(), self.log.clone());
            match tokio::task::spawn_blocking(move || spawn_boxoffice(&args, &log, "boxoffice is serving"))
                .await
                .unwrap()
            {
                Ok((proc, _)) => {
                    self.proc = Some(proc);
                    return tries;
                }
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "instance {} on port {} did not start within 60 s: {error}",
                        self.slot,
                        self.port
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// SIGKILL (no graceful shutdown), reaped.
    fn kill(&mut self) {
        let mut proc = self.proc.take().expect("instance running");
        proc.child.kill().unwrap();
        proc.child.wait().unwrap();
    }
}

// ---- shared state of the load --------------------------------------------------------------

#[derive(Default)]
struct Tally {
    counts: Mutex<BTreeMap<String, u64>>,
    violations: Mutex<Vec<String>>,
    /// Client idempotency key → the PaymentIntent ids seen in its 201 answers.
    keys: Mutex<HashMap<String, HashSet<String>>>,
    /// Error event ids answered 2xx.
    accepted_errors: Mutex<Vec<String>>,
    /// Holds placed (201), for the hold-level checks.
    holds: Mutex<Vec<String>>,
}

impl Tally {
    fn bump(&self, name: &str) {
        *self.counts.lock().unwrap().entry(name.to_owned()).or_default() += 1;
    }

    fn get(&self, name: &str) -> u64 {
        self.counts.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    fn violation(&self, message: String) {
        eprintln!("VIOLATION: {message}");
        self.violations.lock().unwrap().push(message);
    }
}

struct Ctx {
    http: reqwest::Client,
    ports: Vec<u16>,
    stripe: String,
    event_id: String,
    ticket_types: Vec<(String, i64)>,
    project: (String, String),
    tally: Tally,
    seed: u64,
    /// No new buyer or error report starts after this.
    load_deadline: Instant,
    /// Nothing retries past this.
    hard_deadline: Instant,
}

struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await?;
    Ok(Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    })
}

impl Ctx {
    fn base(&self, instance: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[instance % self.ports.len()])
    }

    /// Sends the request to instance `first`, then to the next ones in turn, while the answer
    /// is a transient failure (no connection, 5xx, 429, 409 `idempotency_key_in_use`),
    /// waiting between tries (Retry-After, at most 2 s). `None` once the budget is spent.
    async fn with_retries(
        &self,
        first: usize,
        budget: Duration,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Option<Answer> {
        let deadline = (Instant::now() + budget).min(self.hard_deadline);
        let mut attempt = 0;
        loop {
            let mut wait = Duration::from_millis(300);
            match send(build(&self.base(first + attempt))).await {
                Ok(answer)
                    if answer.status < 500
                        && answer.status != 429
                        && !(answer.status == 409 && answer.code() == "idempotency_key_in_use") =>
                {
                    return Some(answer);
                }
                Ok(answer) => {
                    self.tally.bump(&format!("retried after {}", answer.status));
                    if let Some(secs) = answer
                        .headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        wait = Duration::from_secs(secs).clamp(Duration::from_millis(200), Duration::from_secs(2));
                    }
                }
                Err(_) => self.tally.bump("retried after a connection error"),
            }
            attempt += 1;
            if Instant::now() + wait >= deadline {
                self.tally.bump("gave up retrying");
                return None;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Confirms a PaymentIntent at the double, retrying under the same idempotency key.
    /// Returns true when it succeeded, false when declined.
    async fn confirm(&self, pi: &str, method: &str, key: &str) -> Option<bool> {
        let deadline = (Instant::now() + Duration::from_secs(30)).min(self.hard_deadline);
        loop {
            let request = self
                .http
                .post(format!("{}/v1/payment_intents/{pi}/confirm", self.stripe))
                .bearer_auth(STRIPE_KEY)
                .header("idempotency-key", key)
                .form(&[("payment_method", method)]);
            match send(request).await {
                Ok(a) if a.status == 200 => return Some(true),
                Ok(a) if a.status == 402 => return Some(false),
                Ok(a)
                    if a.status == 400
                        && a.body["error"]["code"] == "payment_intent_unexpected_state"
                        && a.body["error"]["payment_intent"]["status"] == "succeeded" =>
                {
                    return Some(true);
                }
                Ok(a) if a.status >= 500 || a.status == 409 => self.tally.bump("confirm retried after a fault"),
                Ok(a) => {
                    self.tally
                        .violation(format!("confirm {pi} answered {}: {}", a.status, a.body));
                    return None;
                }
                Err(_) => self.tally.bump("confirm retried after a fault"),
            }
            if Instant::now() >= deadline {
                self.tally.bump("gave up retrying");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---- the buyers ----------------------------------------------------------------------------

/// One buyer: a hold, then (mostly) a payment, with the behaviours of real clients: retries
/// under the same key on another instance, a second key for the same hold, a declined card,
/// abandoning or cancelling, cancelling and paying anyway (a late payment).
async fn buyer(ctx: &Ctx, n: u64) {
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let home = rng.random_range(0..INSTANCES);
    let first = rng.random_range(0..ctx.ticket_types.len());
    let mut items = vec![json!({ "ticket_type_id": ctx.ticket_types[first].0, "quantity": rng.random_range(1..=2) })];
    if rng.random_bool(0.3) {
        let second = (first + 1) % ctx.ticket_types.len();
        items.push(json!({ "ticket_type_id": ctx.ticket_types[second].0, "quantity": 1 }));
    }
    let mut body = json!({ "event_id": ctx.event_id, "items": items });
    if rng.random_bool(0.5) {
        body["customer_email"] = json!(format!("buyer{n}@example.org"));
    }
    ctx.tally.bump("buyers");
    let Some(hold) = ctx
        .with_retries(home, Duration::from_secs(45), |base| {
            ctx.http.post(format!("{base}/api/v1/reservations")).json(&body)
        })
        .await
    else {
        return;
    };
    match (hold.status, hold.code()) {
        (201, _) => ctx.tally.bump("holds placed"),
        (409, "sold_out") => return ctx.tally.bump("sold out answers"),
        _ => {
            return ctx
                .tally
                .violation(format!("hold answered {}: {}", hold.status, hold.body));
        }
    }
    let hold_id = hold.body["id"].as_str().unwrap().to_owned();
    ctx.tally.holds.lock().unwrap().push(hold_id.clone());
    let fate = rng.random_range(0..100);
    if fate < 8 {
        return ctx.tally.bump("holds abandoned");
    }
    let cancel = |at: usize| {
        ctx.with_retries(at, Duration::from_secs(45), |base| {
            ctx.http.delete(format!("{base}/api/v1/reservations/{hold_id}"))
        })
    };
    if fate < 16 {
        if let Some(answer) = cancel(home + 1).await {
            if answer.status == 200 {
                ctx.tally.bump("holds cancelled");
            } else {
                ctx.tally
                    .violation(format!("cancel answered {}: {}", answer.status, answer.body));
            }
        }
        return;
    }

    let key = format!("faults-{n}");
    let pay = |key: String, at: usize| {
        let path = format!("/api/v1/reservations/{hold_id}/payment-intent");
        async move {
            ctx.with_retries(at, Duration::from_secs(45), |base| {
                ctx.http.post(format!("{base}{path}")).header("idempotency-key", &key)
            })
            .await
        }
    };
    let Some(intent) = pay(key.clone(), home).await else {
        return;
    };
    match (intent.status, intent.code()) {
        (201, _) => ctx.tally.bump("payment intents answered 201"),
        (409, "hold_expired" | "hold_completed") => return ctx.tally.bump("payment refused: hold ended"),
        _ => {
            return ctx
                .tally
                .violation(format!("payment-intent answered {}: {}", intent.status, intent.body));
        }
    }
    let pi = intent.body["payment_intent_id"].as_str().unwrap().to_owned();
    ctx.tally
        .keys
        .lock()
        .unwrap()
        .entry(key.clone())
        .or_default()
        .insert(pi.clone());
    if rng.random_bool(0.25) {
        // The client did not see the answer: the same key again, on another instance.
        if let Some(again) = pay(key.clone(), home + 1).await {
            ctx.tally.bump("same key retried on another instance");
            let replayed = again.headers.get("idempotent-replayed").is_some_and(|v| v == "true");
            if again.status != 201 || !replayed || again.body["payment_intent_id"] != pi.as_str() {
                ctx.tally.violation(format!(
                    "replay of {key} answered {} (replayed: {replayed}): {} (first: {pi})",
                    again.status, again.body
                ));
            }
        }
    }
    if rng.random_bool(0.1) {
        // A second tab: another key for the same hold gets the same PaymentIntent.
        let second = format!("{key}-tab2");
        if let Some(other) = pay(second.clone(), home + 2).await {
            ctx.tally.bump("second key for the same hold");
            if other.status != 201 || other.body["payment_intent_id"] != pi.as_str() {
                ctx.tally.violation(format!(
                    "second key for {hold_id} answered {}: {} (first: {pi})",
                    other.status, other.body
                ));
            } else {
                ctx.tally
                    .keys
                    .lock()
                    .unwrap()
                    .entry(second)
                    .or_default()
                    .insert(pi.clone());
            }
        }
    }
    if fate < 22 {
        // Cancel while the payment is under way, then pay anyway: a late payment, which takes
        // the tickets if still there or is refunded.
        if let Some(answer) = cancel(home).await {
            ctx.tally
                .bump(&format!("cancelled after payment started ({})", answer.status));
        }
    }
    if rng.random_bool(0.1) {
        match ctx
            .confirm(&pi, "pm_card_chargeDeclined", &format!("{key}-declined"))
            .await
        {
            Some(false) => ctx.tally.bump("cards declined"),
            Some(true) => ctx.tally.violation(format!("declined card paid {pi}")),
            None => return,
        }
    }
    match ctx.confirm(&pi, "pm_card_visa", &format!("{key}-visa")).await {
        Some(true) => ctx.tally.bump("payments succeeded at the double"),
        Some(false) => ctx.tally.violation(format!("visa declined for {pi}")),
        None => {}
    }
}

/// Error reports through both ingestion paths, remembering every id answered 2xx.
async fn error_reporter(ctx: &Ctx, worker: usize) {
    let mut n = 0u64;
    while Instant::now() < ctx.load_deadline {
        n += 1;
        let base = ctx.base(worker + n as usize);
        let envelope = n.is_multiple_of(2);
        ctx.tally.bump(if envelope {
            "error envelopes sent"
        } else {
            "error reports sent"
        });
        let answer = if envelope {
            let mut bytes = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            let id = hex::encode(bytes);
            let event = json!({
                "event_id": id, "level": "error", "platform": "rust",
                "message": format!("fault test envelope {worker}-{n}"),
            })
            .to_string();
            let body = format!(
                "{}\n{}\n{event}\n",
                json!({ "event_id": id }),
                json!({ "type": "event", "length": event.len() })
            );
            let (project, key) = &ctx.project;
            send(
                ctx.http
                    .post(format!("{base}/api/{project}/envelope/?sentry_key={key}"))
                    .header("content-type", "application/x-sentry-envelope")
                    .body(body),
            )
            .await
        } else {
            send(
                ctx.http
                    .post(format!("{base}/api/v1/errors"))
                    .bearer_auth(TOKEN)
                    .json(&json!({
                        "severity": "error", "component": "faults",
                        "message": format!("fault test report {worker}-{n}"),
                    })),
            )
            .await
        };
        match answer {
            Ok(a) if (200..300).contains(&a.status) => {
                let id = a.body["id"].as_str().unwrap().to_owned();
                ctx.tally.accepted_errors.lock().unwrap().push(id);
            }
            Ok(a) => ctx.tally.bump(&format!("error reports refused ({})", a.status)),
            Err(_) => ctx.tally.bump("error reports without an answer (connection)"),
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

// ---- the webhook proxy -----------------------------------------------------------------------

struct Proxy {
    http: reqwest::Client,
    ports: Vec<u16>,
    next: AtomicUsize,
    forwarded: AtomicU64,
    failed: AtomicU64,
}

async fn forward(
    axum::extract::State(proxy): axum::extract::State<Arc<Proxy>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    let port = proxy.ports[proxy.next.fetch_add(1, Ordering::Relaxed) % proxy.ports.len()];
    let mut request = proxy
        .http
        .post(format!("http://127.0.0.1:{port}/webhooks/stripe"))
        .body(body);
    for name in ["content-type", "stripe-signature", "user-agent"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    match request.send().await {
        Ok(response) => {
            proxy.forwarded.fetch_add(1, Ordering::Relaxed);
            let status = axum::http::StatusCode::from_u16(response.status().as_u16()).unwrap();
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => {
            proxy.failed.fetch_add(1, Ordering::Relaxed);
            (axum::http::StatusCode::BAD_GATEWAY, error.to_string())
        }
    }
}

async fn start_proxy(ports: Vec<u16>) -> (Arc<Proxy>, u16) {
    let proxy = Arc::new(Proxy {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(8))
            .build()
            .unwrap(),
        ports,
        next: AtomicUsize::new(0),
        forwarded: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/webhooks/stripe", axum::routing::post(forward))
        .with_state(Arc::clone(&proxy));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (proxy, port)
}

// ---- the double's faults -------------------------------------------------------------------

const FAULTS: [(&str, u32); 7] = [
    ("http_500", 3),
    ("drop_webhooks", 2),
    ("drop_connection", 3),
    ("duplicate_webhooks", 4),
    ("drop_response_after_commit", 2),
    ("reorder_webhooks", 3),
    ("delay", 3),
];

/// Arms one fault after another until the load ends; returns per fault (armed, fired).
async fn arm_faults(ctx: &Ctx) -> BTreeMap<&'static str, (u64, u64)> {
    let mut figures: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let mut last_armed: HashMap<&str, u64> = HashMap::new();
    let mut remaining = Value::Null;
    let mut round = 0;
    tokio::time::sleep(Duration::from_secs(1)).await;
    while Instant::now() < ctx.load_deadline {
        let (fault, count) = FAULTS[round % FAULTS.len()];
        round += 1;
        // What was armed last time and is left now has not fired (yet): count the rest as fired.
        if let Some(before) = last_armed.get(fault) {
            let left = remaining[fault].as_u64().unwrap_or(0).min(*before);
            figures.entry(fault).or_default().1 += before - left;
        }
        let mut body = json!({ "fault": fault, "count": count });
        if fault == "delay" {
            body["delay_ms"] = json!(400);
        }
        if let Ok(answer) = send(ctx.http.post(format!("{}/_control/faults", ctx.stripe)).json(&body)).await {
            assert_eq!(answer.status, 200, "{}", answer.body);
            remaining = answer.body["faults"].clone();
            figures.entry(fault).or_default().0 += u64::from(count);
            last_armed.insert(fault, u64::from(count));
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    // Read what is left of each, then clear them all (held webhooks are released).
    let probe = send(
        ctx.http
            .post(format!("{}/_control/faults", ctx.stripe))
            .json(&json!({ "fault": "delay", "count": 0, "delay_ms": 0 })),
    )
    .await
    .unwrap();
    for (fault, before) in last_armed {
        let left = if fault == "delay" {
            remaining[fault].as_u64().unwrap_or(0)
        } else {
            probe.body["faults"][fault].as_u64().unwrap_or(0)
        };
        figures.entry(fault).or_default().1 += before - left.min(before);
    }
    let reset = send(ctx.http.post(format!("{}/_control/reset", ctx.stripe)))
        .await
        .unwrap();
    assert_eq!(reset.status, 200);
    figures
}

// ---- chaos: kills and PostgreSQL restarts --------------------------------------------------

#[derive(Default)]
struct Chaos {
    kills: u64,
    restarts_needing_retries: u64,
    pg_restarts: u64,
    /// Per PostgreSQL restart: the /readyz statuses seen while it was down, and how long the
    /// instances took to be ready again by themselves.
    outages: Vec<(Vec<u16>, Duration, Duration)>,
}

async fn readyz(http: &reqwest::Client, base: &str) -> Option<u16> {
    http.get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn pg_outage(http: &reqwest::Client, pg: &Arc<PgCluster>, instances: &[Instance], chaos: &mut Chaos) {
    let started = Instant::now();
    let stopper = Arc::clone(pg);
    assert!(
        tokio::task::spawn_blocking(move || stopper.stop_fast()).await.unwrap(),
        "pg_ctl stop -m fast failed"
    );
    let down_at = Instant::now();
    // Every live instance must say it is not ready while the database is down.
    let checks: Vec<_> = instances
        .iter()
        .map(|instance| {
            let (http, base) = (http.clone(), instance.base());
            tokio::spawn(async move { readyz(&http, &base).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for check in checks {
        statuses.push(check.await.unwrap().unwrap_or(0));
    }
    for (instance, status) in instances.iter().zip(&statuses) {
        assert_ne!(
            *status, 200,
            "instance {} answered /readyz 200 while PostgreSQL was down",
            instance.slot
        );
    }
    let starter = Arc::clone(pg);
    assert!(
        tokio::task::spawn_blocking(move || starter.pg_ctl_start())
            .await
            .unwrap(),
        "pg_ctl start after the stop failed"
    );
    let downtime = down_at.elapsed();
    chaos.pg_restarts += 1;
    // The instances are NOT restarted: each must become ready again by itself.
    let up_at = Instant::now();
    let deadline = up_at + Duration::from_secs(60);
    for instance in instances {
        loop {
            if readyz(http, &instance.base()).await == Some(200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance {} did not become ready within 60 s of PostgreSQL's restart",
                instance.slot
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    chaos.outages.push((statuses, downtime, up_at.elapsed()));
    println!(
        "faults: PostgreSQL restart #{} done in {:.1} s (down {:.1} s, ready again after {:.1} s)",
        chaos.pg_restarts,
        started.elapsed().as_secs_f64(),
        downtime.as_secs_f64(),
        up_at.elapsed().as_secs_f64()
    );
}

async fn run_chaos(ctx: &Ctx, profile: &Profile, pg: &Arc<PgCluster>, instances: &mut [Instance]) -> Chaos {
    let mut chaos = Chaos::default();
    let mut action = 0usize;
    let mut victim = 0usize;
    tokio::time::sleep(Duration::from_secs(3)).await;
    while Instant::now() + Duration::from_secs(3) < ctx.load_deadline {
        action += 1;
        if action >= 4 && (action - 4).is_multiple_of(profile.pg_restart_every) {
            pg_outage(&ctx.http, pg, instances, &mut chaos).await;
        } else {
            let instance = &mut instances[victim % INSTANCES];
            victim += 1;
            instance.kill();
            chaos.kills += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
            if instance.start().await > 1 {
                chaos.restarts_needing_retries += 1;
            }
        }
        tokio::time::sleep(profile.chaos_every).await;
    }
    chaos
}

// ---- the double's view ---------------------------------------------------------------------

async fn list_all(ctx: &Ctx, path: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}{path}?limit=100", ctx.stripe);
        if let Some(after) = &after {
            url.push_str(&format!("&starting_after={after}"));
        }
        let page = send(ctx.http.get(url).bearer_auth(STRIPE_KEY)).await.unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        let data = page.body["data"].as_array().unwrap().clone();
        after = data.last().and_then(|item| item["id"].as_str()).map(str::to_owned);
        all.extend(data);
        if page.body["has_more"] != true {
            return all;
        }
    }
}

// ---- the test ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_instances_survive_kills_a_database_restart_and_stripe_faults() {
    let profile = Profile::from_env();
    let seed = std::env::var("BOXOFFICE_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let test_started = Instant::now();
    println!("faults: {} variant, seed {seed}", profile.name);

    // PostgreSQL of our own, and one database on it.
    let pg = Arc::new(tokio::task::spawn_blocking(PgCluster::start).await.unwrap());
    let mut admin = connect_retrying(&pg.admin_url()).await;
    sqlx::query("CREATE DATABASE boxoffice_faults")
        .execute(&mut admin)
        .await
        .unwrap();
    drop(admin);
    let db_url = format!("postgres://postgres@127.0.0.1:{}/boxoffice_faults", pg.port);
    let work = tempfile::tempdir().unwrap();

    // The instances' ports first: the proxy forwards to them.
    let ports: Vec<u16> = (0..INSTANCES).map(|_| free_port()).collect();
    let (proxy, proxy_port) = start_proxy(ports.clone()).await;
    let fake_args: Vec<String> = [
        "fake-stripe",
        "--listen",
        "127.0.0.1:0",
        "--api-key",
        STRIPE_KEY,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--webhook-url",
        &format!("http://127.0.0.1:{proxy_port}/webhooks/stripe"),
    ]
    .map(str::to_owned)
    .to_vec();
    let fake_log = work.path().join("fake-stripe.log");
    let (_fake, stripe) = spawn_boxoffice(&fake_args, &fake_log, "fake Stripe serving").unwrap();

    let mut instances: Vec<Instance> = ports
        .iter()
        .enumerate()
        .map(|(slot, port)| {
            let dir = |name: &str| work.path().join(format!("{name}-{slot}")).display().to_string();
            let args = [
                "serve",
                "--database-url",
                &db_url,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-token",
                TOKEN,
                "--stripe-api-base",
                &stripe,
                "--stripe-secret-key",
                STRIPE_KEY,
                "--stripe-webhook-secret",
                WEBHOOK_SECRET,
                "--hold-duration",
                "20s",
                "--payment-grace",
                "30s",
                "--sweep-interval",
                "1s",
                "--rate-limit-per-minute",
                "0",
                "--error-rate-limit-per-minute",
                "0",
                "--error-events-per-group",
                "1000000",
                "--idempotency-lock-timeout",
                "10s",
                "--payment-completer-interval",
                "1s",
                "--webhook-worker-interval",
                "1s",
                "--webhook-reconcile-interval",
                "3s",
                "--mail-interval",
                "2s",
                "--mail-dir",
                &dir("mail"),
                "--error-spool-dir",
                &dir("spool"),
            ]
            .map(str::to_owned)
            .to_vec();
            Instance {
                slot,
                port: *port,
                args,
                log: work.path().join(format!("instance-{slot}.log")),
                proc: None,
            }
        })
        .collect();
    for instance in &mut instances {
        instance.start().await;
    }

    // An organization, an event and three ticket types of limited capacity.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = instances[0].base();
    let post = |path: &str, body: Value| {
        let request = http.post(format!("{base}{path}")).bearer_auth(TOKEN).json(&body);
        async move {
            let answer = send(request).await.unwrap();
            assert_eq!(answer.status, 201, "{}", answer.body);
            answer.body
        }
    };
    let org = post("/api/v1/organizations", json!({ "name": "Fault Line Concerts" })).await;
    let dsn = org["error_dsn"].as_str().unwrap();
    let key = dsn.split("://").nth(1).unwrap().split('@').next().unwrap().to_owned();
    let project = dsn.rsplit('/').next().unwrap().to_owned();
    let event = post(
        "/api/v1/events",
        json!({ "organization_id": org["id"], "name": "Chaos Night", "starts_at": "2030-06-01T20:00:00Z", "currency": "EUR" }),
    )
    .await;
    let event_id = event["id"].as_str().unwrap().to_owned();
    let mut ticket_types = Vec::new();
    for ((name, price), capacity) in [("Floor", 4_200), ("Balcony", 2_500), ("Box", 9_900)]
        .into_iter()
        .zip(profile.capacities)
    {
        let tt = post(
            &format!("/api/v1/events/{event_id}/ticket-types"),
            json!({ "name": name, "price_cents": price, "capacity": capacity }),
        )
        .await;
        ticket_types.push((tt["id"].as_str().unwrap().to_owned(), capacity));
    }

    let load_started = Instant::now();
    let ctx = Arc::new(Ctx {
        http: http.clone(),
        ports: ports.clone(),
        stripe: stripe.clone(),
        event_id: event_id.clone(),
        ticket_types: ticket_types.clone(),
        project: (project, key),
        tally: Tally::default(),
        seed,
        load_deadline: load_started + profile.load,
        hard_deadline: load_started + profile.load + Duration::from_secs(60),
    });

    // The load: buyers, error reporters, the fault armer.
    let next_buyer = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for worker in 0..profile.buyer_workers {
        let (ctx, next_buyer) = (Arc::clone(&ctx), Arc::clone(&next_buyer));
        load.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(worker as u64));
            while Instant::now() < ctx.load_deadline {
                let n = next_buyer.fetch_add(1, Ordering::Relaxed);
                buyer(&ctx, n).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
            }
        }));
    }
    for worker in 0..profile.error_workers {
        let ctx = Arc::clone(&ctx);
        load.push(tokio::spawn(async move { error_reporter(&ctx, worker).await }));
    }
    let faults = {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move { arm_faults(&ctx).await })
    };

    // Meanwhile: kill instances and restart PostgreSQL.
    let chaos = run_chaos(&ctx, &profile, &pg, &mut instances).await;
    for task in load {
        task.await.unwrap();
    }
    let faults = faults.await.unwrap();
    let load_time = load_started.elapsed();
    println!("faults: load finished after {:.1} s", load_time.as_secs_f64());

    // Let the jobs finish what the faults left behind: the completer records PaymentIntents,
    // the reconciler applies dropped webhooks, the spools drain.
    let mut db = connect_retrying(&db_url).await;
    let settle_started = Instant::now();
    let mut stripe_pis;
    let mut stripe_events;
    loop {
        stripe_pis = list_all(&ctx, "/v1/payment_intents").await;
        stripe_events = list_all(&ctx, "/v1/events").await;
        let pending = unsettled(&mut db, &ctx, &stripe_pis, &stripe_events).await;
        if pending.is_empty() {
            break;
        }
        assert!(
            settle_started.elapsed() < Duration::from_secs(90),
            "not settled 90 s after the load: {pending:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settle_time = settle_started.elapsed();
    // Expire what ran out, so the API's `held` and the rows agree exactly.
    let swept = send(
        http.post(format!("{base}/api/v1/admin/jobs/expire-holds/run"))
            .bearer_auth(TOKEN),
    )
    .await
    .unwrap();
    assert!(swept.status < 300, "{}", swept.body);

    let tally = &ctx.tally;
    let mut failures: Vec<String> = tally.violations.lock().unwrap().clone();
    let figures = check_invariants(&mut db, &ctx, &stripe_pis, &stripe_events, &mut failures).await;

    // The admin API agrees with the rows: the same `sold`, and a `held` between the unexpired
    // holds just before and just after it answered (holds only run out now; none are placed).
    let unexpired_before = unexpired_held(&mut db).await;
    let api_event = send(http.get(format!("{base}/api/v1/events/{event_id}")))
        .await
        .unwrap();
    let unexpired_after = unexpired_held(&mut db).await;
    for tt in api_event.body["ticket_types"].as_array().unwrap() {
        let id = tt["id"].as_str().unwrap();
        let (sold, _) = figures.per_type[id];
        let (api_sold, api_held) = (tt["sold"].as_i64().unwrap(), tt["held"].as_i64().unwrap());
        let (before, after) = (
            unexpired_before.get(id).copied().unwrap_or(0),
            unexpired_after.get(id).copied().unwrap_or(0),
        );
        if api_sold != sold || api_held > before || api_held < after {
            failures.push(format!(
                "the API shows {id} sold {api_sold} held {api_held}; the rows: sold {sold}, unexpired held {before}..{after}"
            ));
        }
    }
    let webhooks = send(
        http.get(format!("{base}/api/v1/admin/webhooks/events?limit=500"))
            .bearer_auth(TOKEN),
    )
    .await
    .unwrap();
    let listed = webhooks.body["data"].as_array().unwrap();
    if let Some(bad) = listed
        .iter()
        .find(|e| e["status"] != "applied" && e["status"] != "ignored")
    {
        failures.push(format!("the admin API lists a webhook event not applied: {bad}"));
    }
    let stats = send(
        http.get(format!("{base}/api/v1/admin/stats/reservations"))
            .bearer_auth(TOKEN),
    )
    .await
    .unwrap()
    .body;

    // The figures, to quote.
    let attempts = send(http.get(format!("{stripe}/_control/webhooks")))
        .await
        .unwrap()
        .body;
    let attempts = attempts["attempts"].as_array().unwrap();
    let counts = tally.counts.lock().unwrap().clone();
    println!("faults: ===== figures ({} variant, seed {seed}) =====", profile.name);
    println!(
        "faults: load {:.0} s, settled {:.1} s later, whole test {:.0} s",
        load_time.as_secs_f64(),
        settle_time.as_secs_f64(),
        test_started.elapsed().as_secs_f64()
    );
    for (name, count) in &counts {
        println!("faults: client: {name}: {count}");
    }
    println!(
        "faults: error ids answered 2xx: {} (all stored)",
        tally.accepted_errors.lock().unwrap().len()
    );
    println!(
        "faults: chaos: {} SIGKILLs + restarts on the same port ({} restarts needed retries), {} PostgreSQL restarts",
        chaos.kills, chaos.restarts_needing_retries, chaos.pg_restarts
    );
    for (statuses, down, ready) in &chaos.outages {
        println!(
            "faults: chaos: PostgreSQL down {:.1} s; /readyz while down: {statuses:?}; all ready {:.1} s after the restart",
            down.as_secs_f64(),
            ready.as_secs_f64()
        );
    }
    for (fault, (armed, fired)) in &faults {
        println!("faults: double: fault {fault}: armed {armed}, fired ~{fired}");
    }
    println!(
        "faults: double: {} PaymentIntents, {} events, {} delivery attempts ({} dropped by faults, {} failed); proxy forwarded {} and answered 502 {} times",
        stripe_pis.len(),
        stripe_events.len(),
        attempts.len(),
        attempts.iter().filter(|a| a["dropped"] == true).count(),
        attempts
            .iter()
            .filter(|a| a["delivered"] == false && a["dropped"] == false)
            .count(),
        proxy.forwarded.load(Ordering::Relaxed),
        proxy.failed.load(Ordering::Relaxed)
    );
    println!("faults: database: {}", figures.summary);
    println!("faults: API reservation stats: {stats}");
    println!("faults: ================================");

    drop(instances);
    assert!(
        failures.is_empty(),
        "{} invariant(s) broken:\n{}\n(instance logs in {})",
        failures.len(),
        failures.join("\n"),
        work.keep().display()
    );
    assert!(chaos.kills >= 3, "at least three kills: {}", chaos.kills);
    assert!(chaos.pg_restarts >= 1, "PostgreSQL was restarted");
    assert!(
        tally.get("payments succeeded at the double") > 0,
        "some payments went through"
    );
}

async fn connect_retrying(url: &str) -> sqlx::PgConnection {
    for _ in 0..60 {
        if let Ok(conn) = sqlx::PgConnection::connect(url).await {
            return conn;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("cannot connect to {url}");
}

/// What the jobs still have to do: PaymentIntents not recorded, payments not applied,
/// webhook events not stored or not applied, accepted errors not stored.
async fn unsettled(db: &mut sqlx::PgConnection, ctx: &Ctx, pis: &[Value], events: &[Value]) -> Vec<String> {
    let mut pending = Vec::new();
    let orders: HashMap<String, (String, Option<String>)> =
        sqlx::query_as::<_, (String, String, Option<String>)>("SELECT id, status, payment_intent_id FROM orders")
            .fetch_all(&mut *db)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, status, pi)| (id, (status, pi)))
            .collect();
    for pi in pis {
        let id = pi["id"].as_str().unwrap();
        let order_id = pi["metadata"]["order_id"].as_str().unwrap_or("");
        match orders.get(order_id) {
            Some((_, Some(recorded))) if recorded == id => {}
            _ => pending.push(format!("PaymentIntent {id} not recorded on order {order_id}")),
        }
        if pi["status"] == "succeeded"
            && !matches!(orders.get(order_id), Some((s, _)) if s == "paid" || s == "refunded")
        {
            pending.push(format!("order {order_id} of succeeded {id} not paid or refunded"));
        }
    }
    let stored: HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT id, status FROM webhook_events")
            .fetch_all(&mut *db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for event in events {
        let id = event["id"].as_str().unwrap();
        match stored.get(id).map(String::as_str) {
            Some("applied" | "ignored") => {}
            other => pending.push(format!("event {id} ({}) is {other:?}", event["type"])),
        }
    }
    let accepted = ctx.tally.accepted_errors.lock().unwrap().clone();
    let (found,): (i64,) = sqlx::query_as("SELECT count(*) FROM error_events WHERE event_id = ANY($1)")
        .bind(&accepted)
        .fetch_one(&mut *db)
        .await
        .unwrap();
    if found != accepted.len() as i64 {
        pending.push(format!("{} of {} accepted errors stored", found, accepted.len()));
    }
    pending.truncate(10);
    pending
}

/// Tickets in active holds that have not run out yet, per ticket type, at this instant.
async fn unexpired_held(db: &mut sqlx::PgConnection) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT i.ticket_type_id, sum(i.quantity)::BIGINT FROM hold_items i JOIN holds h ON h.id = i.hold_id
         WHERE h.status = 'active' AND h.expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
         GROUP BY 1",
    )
    .fetch_all(&mut *db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

struct Figures {
    /// Ticket type → (sold, held) in the rows.
    per_type: HashMap<String, (i64, i64)>,
    summary: String,
}

/// The guarantees, checked on one consistent snapshot of the database and the double's
/// records. Broken ones are pushed to `failures`.
async fn check_invariants(
    db: &mut sqlx::PgConnection,
    ctx: &Ctx,
    pis: &[Value],
    events: &[Value],
    failures: &mut Vec<String>,
) -> Figures {
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *db)
        .await
        .unwrap();
    let mut per_type = HashMap::new();
    let mut type_lines = Vec::new();
    // 1. Nothing oversold; sold is the tickets issued; held is the active holds.
    for (id, _) in &ctx.ticket_types {
        let (capacity, sold, held): (i64, i64, i64) =
            sqlx::query_as("SELECT capacity, sold, held FROM ticket_types WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *db)
                .await
                .unwrap();
        let (issued,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM tickets WHERE ticket_type_id = $1 AND status = 'valid'")
                .bind(id)
                .fetch_one(&mut *db)
                .await
                .unwrap();
        let (in_holds,): (i64,) = sqlx::query_as(
            "SELECT coalesce(sum(i.quantity), 0)::BIGINT FROM hold_items i JOIN holds h ON h.id = i.hold_id
             WHERE h.status = 'active' AND i.ticket_type_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *db)
        .await
        .unwrap();
        if sold + held > capacity {
            failures.push(format!(
                "{id} oversold: sold {sold} + held {held} > capacity {capacity}"
            ));
        }
        if sold != issued {
            failures.push(format!("{id}: sold {sold} but {issued} valid tickets issued"));
        }
        if held != in_holds {
            failures.push(format!("{id}: held {held} but active holds hold {in_holds}"));
        }
        per_type.insert(id.clone(), (sold, held));
        type_lines.push(format!("{id} capacity {capacity} sold {sold} held {held}"));
    }

    // 2. Orders: a paid one has exactly the tickets of its hold; any other none valid.
    let orders: Vec<(String, String, Option<String>, i64, String)> =
        sqlx::query_as("SELECT id, status, payment_intent_id, amount_cents, hold_id FROM orders")
            .fetch_all(&mut *db)
            .await
            .unwrap();
    let wanted: HashMap<(String, String), i64> = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT o.id, i.ticket_type_id, i.quantity FROM orders o JOIN hold_items i ON i.hold_id = o.hold_id",
    )
    .fetch_all(&mut *db)
    .await
    .unwrap()
    .into_iter()
    .map(|(o, t, q)| ((o, t), q))
    .collect();
    let issued: HashMap<(String, String), i64> = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT order_id, ticket_type_id, count(*) FROM tickets WHERE status = 'valid' GROUP BY 1, 2",
    )
    .fetch_all(&mut *db)
    .await
    .unwrap()
    .into_iter()
    .map(|(o, t, n)| ((o, t), n))
    .collect();
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let orders_by_id: HashMap<&str, (&str, Option<&str>, i64)> = orders
        .iter()
        .map(|(id, status, pi, amount, _)| (id.as_str(), (status.as_str(), pi.as_deref(), *amount)))
        .collect();
    for (id, status, _, _, _) in &orders {
        *by_status.entry(status.clone()).or_default() += 1;
        for tt in ctx.ticket_types.iter().map(|(tt, _)| tt) {
            let key = (id.clone(), tt.clone());
            let have = issued.get(&key).copied().unwrap_or(0);
            let want = if status == "paid" {
                wanted.get(&key).copied().unwrap_or(0)
            } else {
                0
            };
            if have != want {
                failures.push(format!(
                    "order {id} ({status}) has {have} valid {tt} tickets, expected {want}"
                ));
            }
        }
    }
    let tickets_total: i64 = issued.values().sum();

    // 3. One PaymentIntent per order at the double (so per idempotency key), each recorded,
    //    with the order's amount; a succeeded one made its order paid or refunded (and then
    //    the double has the refund); a paid order's PaymentIntent succeeded.
    let refunded_pis: HashSet<&str> = events
        .iter()
        .filter(|e| e["type"] == "charge.refunded")
        .filter_map(|e| e["data"]["object"]["payment_intent"].as_str())
        .collect();
    let mut per_order: HashMap<&str, u32> = HashMap::new();
    let mut succeeded = 0;
    let pi_status: HashMap<&str, &str> = pis
        .iter()
        .map(|pi| (pi["id"].as_str().unwrap(), pi["status"].as_str().unwrap_or("")))
        .collect();
    for pi in pis {
        let id = pi["id"].as_str().unwrap();
        let order_id = pi["metadata"]["order_id"].as_str().unwrap_or("");
        *per_order.entry(order_id).or_default() += 1;
        let Some((status, recorded, amount)) = orders_by_id.get(order_id) else {
            failures.push(format!("PaymentIntent {id} names unknown order {order_id:?}"));
            continue;
        };
        if *recorded != Some(id) {
            failures.push(format!("order {order_id} records {recorded:?}, the double has {id}"));
        }
        if pi["amount"] != *amount {
            failures.push(format!("{id} amount {} but order {order_id} {amount}", pi["amount"]));
        }
        if pi["status"] == "succeeded" {
            succeeded += 1;
            match *status {
                "paid" => {}
                "refunded" if refunded_pis.contains(id) => {}
                other => failures.push(format!(
                    "{id} succeeded but order {order_id} is {other} (refund seen: {})",
                    refunded_pis.contains(id)
                )),
            }
        }
    }
    for (order_id, count) in &per_order {
        if *count != 1 {
            failures.push(format!("order {order_id} has {count} PaymentIntents at the double"));
        }
    }
    for (id, status, pi, _, _) in &orders {
        if status == "paid" && pi.as_deref().and_then(|pi| pi_status.get(pi)) != Some(&"succeeded") {
            failures.push(format!(
                "order {id} is paid but its PaymentIntent {pi:?} did not succeed"
            ));
        }
    }

    // 4. Every client key: one PaymentIntent in all its answers, the one its order records.
    let key_orders: HashMap<String, Option<String>> =
        sqlx::query_as::<_, (String, Option<String>)>("SELECT client_key, order_id FROM idempotency_keys")
            .fetch_all(&mut *db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let keys = ctx.tally.keys.lock().unwrap().clone();
    for (key, seen) in &keys {
        let recorded = key_orders
            .get(key)
            .cloned()
            .flatten()
            .and_then(|order| orders_by_id.get(order.as_str()).and_then(|o| o.1.map(str::to_owned)));
        if seen.len() != 1 || recorded.as_ref().is_none_or(|pi| !seen.contains(pi)) {
            failures.push(format!(
                "key {key}: answers named {seen:?}, its order records {recorded:?}"
            ));
        }
    }

    // 5. Every webhook event the double sent was stored once and applied (the effects were
    //    checked above: tickets per order, sold per ticket type).
    let stored: HashMap<String, (String, i64)> =
        sqlx::query_as::<_, (String, String, i64)>("SELECT id, status, delivery_count FROM webhook_events")
            .fetch_all(&mut *db)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, status, deliveries)| (id, (status, deliveries)))
            .collect();
    let mut redelivered = 0;
    let mut never_delivered = 0;
    for event in events {
        let id = event["id"].as_str().unwrap();
        match stored.get(id) {
            Some((status, deliveries)) if status == "applied" || status == "ignored" => {
                if *deliveries > 1 {
                    redelivered += 1;
                }
                if *deliveries == 0 {
                    never_delivered += 1;
                }
            }
            other => failures.push(format!("webhook event {id} ({}) stored as {other:?}", event["type"])),
        }
    }

    // 6. Every error answered 2xx is stored.
    let accepted = ctx.tally.accepted_errors.lock().unwrap().clone();
    let stored_errors: HashSet<String> =
        sqlx::query_as::<_, (String,)>("SELECT event_id FROM error_events WHERE event_id = ANY($1)")
            .bind(&accepted)
            .fetch_all(&mut *db)
            .await
            .unwrap()
            .into_iter()
            .map(|(id,)| id)
            .collect();
    let lost: Vec<&String> = accepted.iter().filter(|id| !stored_errors.contains(*id)).collect();
    if !lost.is_empty() {
        failures.push(format!(
            "{} accepted error events not stored, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }

    // 7. Buyer e-mail: exactly one confirmation per paid order with an address.
    let (paid_with_email, confirmations, sent): (i64, i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM orders o JOIN holds h ON h.id = o.hold_id
             WHERE o.status = 'paid' AND h.customer_email IS NOT NULL),
           (SELECT count(*) FROM emails e JOIN orders o ON o.id = e.order_id
             WHERE e.kind = 'confirmation' AND o.status = 'paid'),
           (SELECT count(*) FROM emails WHERE status = 'sent')",
    )
    .fetch_one(&mut *db)
    .await
    .unwrap();
    if paid_with_email != confirmations {
        failures.push(format!(
            "{paid_with_email} paid orders with an e-mail address, {confirmations} confirmations queued"
        ));
    }
    let (holds_total, spooled_server_errors): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM holds), (SELECT count(*) FROM error_events e JOIN error_groups g ON g.id = e.group_id WHERE g.scope = 'server')",
    )
    .fetch_one(&mut *db)
    .await
    .unwrap();
    sqlx::query("COMMIT").execute(&mut *db).await.unwrap();

    Figures {
        per_type,
        summary: format!(
            "{holds_total} holds, orders {by_status:?}, {tickets_total} valid tickets, {succeeded} PaymentIntents \
             succeeded, {} refunded; {} webhook events stored ({redelivered} received more than once, \
             {never_delivered} only via the reconciler); {} error events accepted and stored; {} server-side \
             errors recorded; {confirmations} confirmation e-mails for {paid_with_email} paid orders with an \
             address ({sent} sent); {}",
            refunded_pis.len(),
            stored.len(),
            accepted.len(),
            spooled_server_errors,
            type_lines.join("; ")
        ),
    }
}
