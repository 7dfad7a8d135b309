//! `boxoffice`: the command line. Every flag is also read from its environment variable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
// The CLI runs on the server with the database's own credentials: it acts as the operator.
use boxoffice_core::auth::{Caller, SecretToken};
use boxoffice_core::service::HoldBatching;
use boxoffice_core::{BoxOffice, Settings, SystemClock};
use boxoffice_server::{ServerConfig, startup, store, telemetry};
use clap::{Args, Parser, Subcommand};

/// Ticket sales that never oversell: holds that expire exactly, idempotent payments,
/// exactly-once webhooks, and an error store that never drops an error.
#[derive(Parser)]
#[command(name = "boxoffice", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

// `serve`'s many flags make its variant large; the enum is built once per process.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Run the hold expiry sweeper once and print what it did.
    Sweep(DatabaseArgs),
    /// Print hold statistics and the latest sweeper runs.
    Stats(DatabaseArgs),
    /// List error groups, show one with its latest events, or resolve one.
    Errors(ErrorsArgs),
    /// Run the built-in Stripe test double on its own (for tests whose Stripe must outlive
    /// a boxoffice process, or to point another system at it).
    FakeStripe(FakeStripeArgs),
}

#[derive(Args)]
struct ErrorsArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(subcommand)]
    action: Option<ErrorsAction>,
}

#[derive(Subcommand)]
enum ErrorsAction {
    /// List groups, most recently seen first (the default).
    List {
        /// Only this severity: debug, info, warning, error, critical.
        #[arg(long)]
        severity: Option<String>,
        /// Only resolved (`true`) or open (`false`) groups.
        #[arg(long)]
        resolved: Option<bool>,
        /// At most this many (1–500).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show a group and its latest events.
    Show {
        /// The group id (`grp_…`).
        group_id: String,
    },
    /// Mark a group resolved; a new event reopens it.
    Resolve {
        /// The group id (`grp_…`).
        group_id: String,
    },
}

#[derive(Args)]
struct FakeStripeArgs {
    /// Address to serve on (`127.0.0.1:0` picks a free port; the address is printed).
    #[arg(long, env = "BOXOFFICE_FAKE_STRIPE_LISTEN", default_value = "127.0.0.1:12111")]
    listen: SocketAddr,

    /// The one secret key the double accepts; generated and printed when unset.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    api_key: Option<String>,

    /// The secret that signs its webhooks; generated and printed when unset.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,

    /// Where it delivers webhooks (e.g. `http://127.0.0.1:8080/webhooks/stripe`); when
    /// unset, events are only listed by `GET /v1/events`.
    #[arg(long, env = "BOXOFFICE_FAKE_STRIPE_WEBHOOK_URL")]
    webhook_url: Option<String>,
}

#[derive(Args, Clone)]
struct DatabaseArgs {
    /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB`. Migrations run at start.
    #[arg(long, env = "BOXOFFICE_DATABASE_URL", default_value = "sqlite://boxoffice.db")]
    database_url: String,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,

    /// Address to serve on.
    #[arg(long, env = "BOXOFFICE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// The operator's bearer token. When unset, one is generated at first start, stored
    /// hashed, and printed once.
    #[arg(long, env = "BOXOFFICE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// Default hold length (`90s`, `15m`, …); an event may override it with `hold_seconds`.
    #[arg(long, env = "BOXOFFICE_HOLD_DURATION", default_value = "15m", value_parser = parse_duration)]
    hold_duration: Duration,

    /// How often the expiry sweeper runs (`0s` turns it off, e.g. for a dedicated API node).
    #[arg(long, env = "BOXOFFICE_SWEEP_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    sweep_interval: Duration,

    /// The most hold requests placed in one database transaction. Concurrent requests for
    /// the same event are gathered while the previous batch commits (group commit), so a
    /// crowd costs one commit per batch, not per request; `1` turns batching off.
    #[arg(long, env = "BOXOFFICE_HOLD_BATCH_MAX", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..=1024))]
    hold_batch_max: u16,

    /// How long an idle event's first hold request waits for others to join its batch.
    /// `0s` (the default) adds no latency; batches still form under load.
    #[arg(long, env = "BOXOFFICE_HOLD_BATCH_WINDOW", default_value = "0s", value_parser = parse_batch_window)]
    hold_batch_window: Duration,

    /// Public requests per client address per minute; `0` turns the limit off.
    #[arg(long, env = "BOXOFFICE_RATE_LIMIT_PER_MINUTE", default_value_t = 600)]
    rate_limit_per_minute: u32,

    /// Seed a demo organization, event and ticket types if the database is empty.
    #[arg(long)]
    demo: bool,

    /// How long a hold is kept at least once payment starts (extended once, if needed).
    #[arg(long, env = "BOXOFFICE_PAYMENT_GRACE", default_value = "5m", value_parser = parse_duration)]
    payment_grace: Duration,

    /// Where the Stripe client sends requests, e.g. `https://api.stripe.com`. When unset,
    /// the built-in Stripe test double is mounted at `/_fake-stripe` and used.
    #[arg(long, env = "STRIPE_API_BASE")]
    stripe_api_base: Option<String>,

    /// The Stripe secret key. Required with `--stripe-api-base`; generated for the test double.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    stripe_secret_key: Option<String>,

    /// Webhook signing secrets, comma-separated; any one may sign (secret rotation).
    /// Generated and shared with the test double when unset.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true, value_delimiter = ',')]
    stripe_webhook_secret: Vec<String>,

    /// How long a payment request holds its Idempotency-Key before another request may
    /// take over (a process that died mid-request blocks its key at most this long).
    /// Keep it above the Stripe client's worst case of about 95 s.
    #[arg(long, env = "BOXOFFICE_IDEMPOTENCY_LOCK_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    idempotency_lock_timeout: Duration,

    /// How often the payment completer finishes payment requests that stopped midway.
    #[arg(long, env = "BOXOFFICE_PAYMENT_COMPLETER_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    payment_completer_interval: Duration,

    /// How often the webhook worker applies stored events that are not applied yet
    /// (after an error, or a crash between storing and applying).
    #[arg(long, env = "BOXOFFICE_WEBHOOK_WORKER_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    webhook_worker_interval: Duration,

    /// How often the reconciler lists Stripe's recent events and applies any that never
    /// arrived as a webhook.
    #[arg(long, env = "BOXOFFICE_WEBHOOK_RECONCILE_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    webhook_reconcile_interval: Duration,

    /// Where alerts are POSTed as Slack-compatible JSON (new error groups of severity
    /// error or worse, regressions, critical events; at most one per group per 10 minutes).
    #[arg(long, env = "BOXOFFICE_ALERT_WEBHOOK_URL", hide_env_values = true)]
    alert_webhook_url: Option<String>,

    /// Let alerts go to loopback, private (RFC 1918, fc00::/7), link-local (169.254/16,
    /// cloud metadata) and other non-global addresses. Without it such destinations are
    /// refused (checked on the address actually connected to) and recorded as failed
    /// deliveries.
    #[arg(long, env = "BOXOFFICE_ALERT_WEBHOOK_ALLOW_PRIVATE")]
    alert_webhook_allow_private: bool,

    /// When set, the server's own errors are also sent to this Sentry DSN (scrubbed).
    #[arg(long, env = "SENTRY_DSN", hide_env_values = true)]
    sentry_dsn: Option<String>,

    /// Where error reports wait while the database is down [default: beside the SQLite
    /// file, or ./boxoffice-error-spool with PostgreSQL].
    #[arg(long, env = "BOXOFFICE_ERROR_SPOOL_DIR")]
    error_spool_dir: Option<std::path::PathBuf>,

    /// Sentry envelopes accepted per project per minute; 0 turns the limit off.
    #[arg(long, env = "BOXOFFICE_ERROR_RATE_LIMIT_PER_MINUTE", default_value_t = 6000)]
    error_rate_limit_per_minute: u32,

    /// How long error events are kept.
    #[arg(long, env = "BOXOFFICE_ERROR_RETENTION", default_value = "30d", value_parser = parse_duration)]
    error_retention: Duration,

    /// The newest events kept per error group (older ones are pruned hourly).
    #[arg(long, env = "BOXOFFICE_ERROR_EVENTS_PER_GROUP", default_value_t = 1000)]
    error_events_per_group: u32,

    /// Where buyer e-mail (tickets, refund notices) is sent: `smtp://user:pass@host:587`
    /// (STARTTLS, required), `smtps://user:pass@host:465` (implicit TLS), or
    /// `smtp://host:25?tls=none` (no encryption: a local relay). Percent-encode special
    /// characters of the user and password. When unset, each message is written as an
    /// `.eml` file into --mail-dir.
    #[arg(long, env = "BOXOFFICE_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,

    /// The sender of buyer e-mail (`tickets@example.org` or `Box Office <tickets@example.org>`).
    #[arg(long, env = "BOXOFFICE_MAIL_FROM", default_value = "boxoffice@localhost")]
    mail_from: String,

    /// Where buyer e-mail is written when --smtp-url is unset [default: beside the SQLite
    /// file (<db>-mail), or ./boxoffice-mail with PostgreSQL].
    #[arg(long, env = "BOXOFFICE_MAIL_DIR")]
    mail_dir: Option<std::path::PathBuf>,

    /// How long a message is retried (with backoff from 30 s up to 30 min between
    /// attempts) before it is given up, recorded as an error (component `email`) and alerted.
    #[arg(long, env = "BOXOFFICE_MAIL_GIVE_UP", default_value = "24h", value_parser = parse_duration)]
    mail_give_up: Duration,

    /// How often queued buyer e-mail is sent (`0s` turns sending off on this instance).
    #[arg(long, env = "BOXOFFICE_MAIL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    mail_interval: Duration,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|err| format!("{err} (examples: 90s, 15m, 1h)"))
}

/// A batch window: a short wait, at most one second (it delays every idle event's first hold).
fn parse_batch_window(raw: &str) -> Result<Duration, String> {
    let window = parse_duration(raw)?;
    if window > Duration::from_secs(1) {
        return Err("at most 1s (examples: 0s, 2ms, 20ms)".to_owned());
    }
    Ok(window)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Migrate(args)) => {
            store::connect(&args.database_url)
                .await
                .context("migrating the database")?;
            println!("migrations applied to {}", store::redact(&args.database_url));
            Ok(())
        }
        Some(Command::Sweep(args)) => {
            let boxoffice = open(&args).await?;
            let run = boxoffice
                .sweep_expired_holds()
                .await
                .context("sweeping expired holds")?;
            println!(
                "{}",
                serde_json::json!({
                    "id": run.id, "job": run.job, "started_at": run.started_at, "finished_at": run.finished_at,
                    "outcome": run.outcome.as_str(), "affected": run.affected,
                })
            );
            Ok(())
        }
        Some(Command::FakeStripe(args)) => fake_stripe(args).await,
        Some(Command::Errors(args)) => errors(args).await,
        Some(Command::Stats(args)) => {
            let boxoffice = open(&args).await?;
            let stats = boxoffice
                .reservation_stats(&Caller::Operator)
                .await
                .context("reading hold statistics")?;
            let runs = boxoffice
                .list_job_runs(&Caller::Operator, boxoffice_core::jobs::EXPIRE_HOLDS, 5)
                .await?;
            let runs: Vec<_> = runs
                .iter()
                .map(|run| {
                    serde_json::json!({
                        "started_at": run.started_at, "outcome": run.outcome.as_str(), "affected": run.affected,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "reservations": {
                        "active": stats.active, "expired": stats.expired, "completed": stats.completed,
                        "cancelled": stats.cancelled, "oldest_active_created_at": stats.oldest_active_created_at,
                    },
                    "latest_sweeps": runs,
                }))?
            );
            Ok(())
        }
    }
}

async fn errors(args: ErrorsArgs) -> anyhow::Result<()> {
    use boxoffice_core::error_store::reports::GroupFilter;
    use boxoffice_core::failures::Severity;
    use boxoffice_core::ids::ErrorGroupId;

    let boxoffice = open(&args.database).await?;
    let operator = Caller::Operator;
    let parse_group = |raw: &str| ErrorGroupId::parse(raw).map_err(|_| anyhow::anyhow!("no error group {raw:?}"));
    let group_json = |group: &boxoffice_core::error_store::reports::ErrorGroup| {
        serde_json::json!({
            "id": group.id, "title": group.title, "severity": group.severity.as_str(),
            "component": group.component, "scope": group.scope, "count": group.count,
            "first_seen": group.first_seen, "last_seen": group.last_seen, "resolved": group.resolved,
        })
    };
    match args.action.unwrap_or(ErrorsAction::List {
        severity: None,
        resolved: None,
        limit: 20,
    }) {
        ErrorsAction::List {
            severity,
            resolved,
            limit,
        } => {
            let severity = match severity {
                Some(raw) => Some(Severity::parse(&raw).ok_or_else(|| anyhow::anyhow!("unknown severity {raw:?}"))?),
                None => None,
            };
            let groups = boxoffice
                .list_error_groups(&operator, &GroupFilter { severity, resolved }, limit.clamp(1, 500))
                .await?;
            if groups.is_empty() {
                println!("no error groups");
            }
            for group in &groups {
                println!(
                    "{}  {:<8}  {:>6}x  last {}  {}{}",
                    group.id,
                    group.severity.as_str(),
                    group.count,
                    group.last_seen,
                    group.title,
                    if group.resolved { "  [resolved]" } else { "" }
                );
            }
        }
        ErrorsAction::Show { group_id } => {
            let (group, events) = boxoffice.get_error_group(&operator, &parse_group(&group_id)?).await?;
            let events: Vec<_> = events
                .iter()
                .map(|event| {
                    serde_json::json!({
                        "id": event.event_id, "severity": event.severity.as_str(), "message": event.message,
                        "request_id": event.request_id, "release": event.release, "environment": event.environment,
                        "received_at": event.received_at,
                        "payload": serde_json::from_str::<serde_json::Value>(&event.payload).unwrap_or_default(),
                    })
                })
                .collect();
            let mut shown = group_json(&group);
            shown["events"] = serde_json::Value::Array(events);
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        ErrorsAction::Resolve { group_id } => {
            let group = boxoffice
                .resolve_error_group(&operator, &parse_group(&group_id)?)
                .await?;
            println!("resolved {}: {}", group.id, group.title);
        }
    }
    Ok(())
}

async fn open(args: &DatabaseArgs) -> anyhow::Result<BoxOffice> {
    let store = store::connect(&args.database_url)
        .await
        .with_context(|| format!("opening the database {}", store::redact(&args.database_url)))?;
    Ok(BoxOffice::new(store, Arc::new(SystemClock), Settings::default()))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig {
        database_url: args.database.database_url,
        listen: args.listen,
        admin_token: args.admin_token.map(SecretToken::new),
        hold_duration: args.hold_duration,
        sweep_interval: args.sweep_interval,
        hold_batching: HoldBatching {
            max_batch: usize::from(args.hold_batch_max),
            window: args.hold_batch_window,
        },
        rate_limit_per_minute: args.rate_limit_per_minute,
        demo: args.demo,
        stripe_api_base: args.stripe_api_base,
        stripe_secret_key: args.stripe_secret_key.map(SecretToken::new),
        stripe_webhook_secrets: args.stripe_webhook_secret.into_iter().map(SecretToken::new).collect(),
        payment_grace: args.payment_grace,
        idempotency_lock_timeout: args.idempotency_lock_timeout,
        payment_completer_interval: args.payment_completer_interval,
        webhook_worker_interval: args.webhook_worker_interval,
        webhook_reconcile_interval: args.webhook_reconcile_interval,
        alert_webhook_url: args.alert_webhook_url,
        alert_webhook_allow_private: args.alert_webhook_allow_private,
        sentry_dsn: args.sentry_dsn,
        error_spool_dir: args.error_spool_dir,
        error_rate_limit_per_minute: args.error_rate_limit_per_minute,
        error_retention: args.error_retention,
        error_events_per_group: args.error_events_per_group,
        smtp_url: args.smtp_url.map(SecretToken::new),
        mail_from: args.mail_from,
        mail_dir: args.mail_dir,
        mail_retry: boxoffice_core::mail::MailRetry {
            give_up_after: args.mail_give_up,
            ..boxoffice_core::mail::MailRetry::default()
        },
        mail_interval: args.mail_interval,
        ..ServerConfig::default()
    };
    let server = startup::Server::build(config.clone(), Arc::new(SystemClock)).await?;
    let base = format!("http://{}", server.local_addr());
    // Printed, not logged: shown once to the person starting the server, never in log files.
    if let Some(token) = server.generated_operator_token() {
        println!("Operator token (shown once; store it now): {}", token.expose());
    }
    if let Some(key) = server.fake_stripe_key() {
        // A configured key is the operator's secret, and standard output is often a log
        // file: only a key generated by this start is shown.
        if config.stripe_secret_key.is_some() {
            println!("Stripe test double: {base}/_fake-stripe  (API key: the configured --stripe-secret-key)");
        } else {
            println!("Stripe test double: {base}/_fake-stripe  (API key: {key})");
        }
    }
    if let Some(folder) = server.mail_folder() {
        println!("Buyer e-mail: written to {} (no --smtp-url)", folder.display());
    }
    if let Some(event) = server.demo_event() {
        println!("Demo event seeded: {} ({})", event.event.name.as_str(), event.event.id);
        println!("  {base}/api/v1/events/{}", event.event.id);
    }
    println!("boxoffice is serving {base}");
    println!("  box office:  {base}/   (test cards: 4242 4242 4242 4242 pays, 4000 0000 0000 0002 is declined)");
    println!("  dashboard:   {base}/admin   (log in with the operator token)");
    println!("  API:         {base}/api/v1/events   (OpenAPI: {base}/api/openapi.json)");

    tracing::info!(listen = %server.local_addr(), database = %store::redact(&config.database_url), "serving");
    server.run(startup::shutdown_signal()).await
}

async fn fake_stripe(args: FakeStripeArgs) -> anyhow::Result<()> {
    let random = |prefix: &str| boxoffice_core::auth::generate_secret(prefix).expose().to_owned();
    let (api_key, generated_key) = match args.api_key {
        Some(key) => (key, false),
        None => (random("sk_test_"), true),
    };
    let (webhook_secret, generated_secret) = match args.webhook_secret {
        Some(secret) => (secret, false),
        None => (random("whsec_"), true),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    if generated_key {
        println!("Stripe secret key (generated): {api_key}");
    }
    if generated_secret {
        println!("Webhook signing secret (generated): {webhook_secret}");
    }
    let fake = boxoffice_stripe::FakeStripe::new(boxoffice_stripe::FakeStripeConfig::new(
        api_key,
        webhook_secret,
        args.webhook_url,
    ));
    println!("fake Stripe serving http://{address}  (faults: POST http://{address}/_control/faults)");
    boxoffice_stripe::fake::serve(listener, fake, startup::shutdown_signal())
        .await
        .context("serving the fake Stripe")
}
