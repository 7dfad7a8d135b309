//! Wires a store, the use cases, the router and the jobs into a running server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use boxoffice_core::auth::{self, SecretToken};
use boxoffice_core::catalog::EventWithTicketTypes;
use boxoffice_core::{BoxOffice, Clock, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::error_store::alerts::SlackWebhook;
use crate::error_store::forward::SentryForwarder;
use crate::error_store::{ErrorPipeline, PipelineWriter, Spool};
use crate::http::envelopes::Ingestion;
use crate::http::middleware::RateLimiter;
use crate::mail::Mailer;
use crate::metrics::Metrics;
use crate::pages::admin::session::SessionKeys;
use crate::payments::StripeProvider;
use crate::state::AppState;
use crate::{demo, jobs, store, telemetry};

/// A server bound to its address, ready to run.
pub struct Server {
    listener: TcpListener,
    router: Router,
    state: AppState,
    config: ServerConfig,
    generated_operator_token: Option<SecretToken>,
    demo_event: Option<EventWithTicketTypes>,
    fake_stripe_key: Option<String>,
    error_writer: PipelineWriter,
    mail_folder: Option<std::path::PathBuf>,
}

impl Server {
    /// Opens the store (running migrations), makes sure an operator token exists, seeds
    /// the demo when asked, and binds the listener. Nothing is served until [`Server::run`].
    pub async fn build(config: ServerConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store = store::connect(&config.database_url)
            .await
            .with_context(|| format!("opening the database {}", store::redact(&config.database_url)))?;
        let settings = Settings {
            default_hold: config.hold_duration,
            payment_grace: config.payment_grace,
            idempotency_lock: config.idempotency_lock_timeout,
            error_retention: config.error_retention,
            error_events_per_group: config.error_events_per_group,
            alert_retry: config.alert_retry,
            mail_retry: config.mail_retry,
            hold_batching: config.hold_batching,
            ..Settings::default()
        };
        telemetry::install_panic_hook();
        let metrics = Arc::new(Metrics::new());
        let spool_dir = config.spool_dir();
        let spool = Spool::open(&spool_dir, config.error_spool_max_bytes)
            .with_context(|| format!("opening the error spool {}", spool_dir.display()))?;
        let forwarder = config.sentry_dsn.as_deref().map(SentryForwarder::new).transpose()?;
        let (errors, error_writer) = ErrorPipeline::new(Arc::new(spool), metrics.clone(), clock.clone(), forwarder);
        // Bound first: the built-in Stripe double lives at this server's own address.
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let stripe = stripe_setup(&config, local_addr)?;
        let batch_metrics = metrics.clone();
        let mut boxoffice = BoxOffice::new(store, clock, settings)
            .with_hold_batch_observer(Arc::new(move |size| batch_metrics.hold_batch(size)))
            .with_failure_sink(Arc::new(errors.clone()))
            .with_payment_provider(Arc::new(StripeProvider::new(stripe.client.clone())));
        let mailer = Mailer::new(
            config.smtp_url.as_ref().map(SecretToken::expose),
            &config.mail_from,
            &config.mail_dir(),
            metrics.clone(),
        )
        .context("setting up buyer e-mail")?;
        tracing::info!(to = %mailer.describe(), from = %config.mail_from, "buyer e-mail");
        let mail_folder = mailer.folder().map(std::path::Path::to_path_buf);
        boxoffice = boxoffice.with_mail_sender(Arc::new(mailer));
        if let Some(url) = &config.alert_webhook_url {
            let sender = SlackWebhook::new(url.clone(), config.alert_webhook_allow_private, metrics.clone())?;
            boxoffice = boxoffice.with_alert_sender(Arc::new(sender));
        }
        let (operator_token_hash, generated_operator_token) = boxoffice
            .ensure_operator_token(config.admin_token.as_ref())
            .await
            .context("setting up the operator token")?;
        let session_keys = SessionKeys::derive(
            &boxoffice
                .session_key()
                .await
                .context("setting up the dashboard's session key")?,
            &operator_token_hash,
        );
        let demo_event = if config.demo {
            demo::seed(&boxoffice).await.context("seeding the demo data")?
        } else {
            None
        };
        let state = AppState {
            boxoffice,
            operator_token_hash,
            metrics,
            rate_limiter: Arc::new(RateLimiter::new(config.rate_limit_per_minute)),
            webhook_secrets: Arc::new(stripe.webhook_secrets),
            errors,
            ingestion: Ingestion::new(config.error_rate_limit_per_minute),
            public_host: Arc::from(reachable(local_addr).to_string()),
            pages: crate::pages::Pages::new().context("loading the page templates")?,
            stripe_test_mode: stripe.fake.is_some() || stripe.secret_key.starts_with("sk_test_"),
            stripe: stripe.client,
            session_keys,
        };
        let fake_stripe_key = stripe.fake.is_some().then(|| stripe.secret_key.clone());
        let mut router = crate::app::router(state.clone());
        if let Some(fake) = stripe.fake {
            router = router.nest(FAKE_STRIPE_PATH, fake.router());
        }
        Ok(Self {
            listener,
            router,
            state,
            config,
            generated_operator_token,
            demo_event,
            fake_stripe_key,
            error_writer,
            mail_folder,
        })
    }

    /// The address actually bound (port 0 becomes a real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The operator token if it was generated by this start (print it once); `None` when
    /// configured or generated by an earlier start.
    pub fn generated_operator_token(&self) -> Option<&SecretToken> {
        self.generated_operator_token.as_ref()
    }

    /// The API key of the built-in Stripe test double, when it is mounted (for people
    /// trying a purchase by hand; never a real Stripe key).
    pub fn fake_stripe_key(&self) -> Option<&str> {
        self.fake_stripe_key.as_deref()
    }

    /// The folder buyer e-mail is written to, when no SMTP server is configured.
    pub fn mail_folder(&self) -> Option<&std::path::Path> {
        self.mail_folder.as_deref()
    }

    /// The demo event, when this start seeded it.
    pub fn demo_event(&self) -> Option<&EventWithTicketTypes> {
        self.demo_event.as_ref()
    }

    /// The use cases, for tests that drive them directly.
    pub fn boxoffice(&self) -> &BoxOffice {
        &self.state.boxoffice
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight
    /// finish, and stops the background jobs.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop_jobs = CancellationToken::new();
        let schedule = [
            (boxoffice_core::jobs::EXPIRE_HOLDS, self.config.sweep_interval),
            (
                boxoffice_core::jobs::PAYMENT_COMPLETER,
                self.config.payment_completer_interval,
            ),
            (boxoffice_core::jobs::IDEMPOTENCY_REAPER, jobs::REAPER_INTERVAL),
            (
                boxoffice_core::jobs::WEBHOOK_WORKER,
                self.config.webhook_worker_interval,
            ),
            (
                boxoffice_core::jobs::WEBHOOK_RECONCILER,
                self.config.webhook_reconcile_interval,
            ),
            (boxoffice_core::jobs::ALERT_SENDER, self.config.alert_interval),
            (
                boxoffice_core::jobs::ERROR_RETENTION,
                self.config.error_retention_interval,
            ),
            (boxoffice_core::jobs::EMAIL_SENDER, self.config.mail_interval),
        ];
        // The error writer stops after the jobs (their last failures still get stored).
        let stop_errors = CancellationToken::new();
        let error_tasks = self
            .error_writer
            .spawn(self.state.boxoffice.clone(), stop_errors.clone());
        let tasks: Vec<_> = schedule
            .into_iter()
            .filter(|(_, interval)| !interval.is_zero())
            .map(|(job, interval)| {
                jobs::spawn(
                    job,
                    self.state.boxoffice.clone(),
                    self.state.metrics.clone(),
                    interval,
                    stop_jobs.clone(),
                )
            })
            .collect();
        let app = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await;
        stop_jobs.cancel();
        for task in tasks {
            let _ = task.await;
        }
        stop_errors.cancel();
        for task in error_tasks {
            let _ = task.await;
        }
        let errors = self.state.errors.clone();
        // The SDK's flush blocks its thread; keep it off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || errors.flush_forwarding(std::time::Duration::from_secs(2))).await;
        served.context("serving HTTP")
    }
}

/// Where the built-in Stripe test double is mounted in the default configuration.
pub const FAKE_STRIPE_PATH: &str = "/_fake-stripe";

/// How this server talks to Stripe.
struct StripeSetup {
    client: boxoffice_stripe::StripeClient,
    /// The test double to mount, when no Stripe base URL is configured.
    fake: Option<boxoffice_stripe::FakeStripe>,
    /// The secrets webhooks may be signed with.
    webhook_secrets: Vec<String>,
    /// The API key the client uses.
    secret_key: String,
}

/// The Stripe client, the webhook secrets, and the test double to mount when no Stripe base
/// URL is configured. The double is never mounted when a real base is given.
fn stripe_setup(config: &ServerConfig, local_addr: SocketAddr) -> anyhow::Result<StripeSetup> {
    let mut webhook_secrets: Vec<String> = config
        .stripe_webhook_secrets
        .iter()
        .map(|secret| secret.expose().to_owned())
        .collect();
    let (api_base, secret_key, fake) = match &config.stripe_api_base {
        Some(base) => {
            let key = config
                .stripe_secret_key
                .clone()
                .context("--stripe-secret-key (STRIPE_SECRET_KEY) is required with --stripe-api-base")?;
            (base.trim_end_matches('/').to_owned(), key, None)
        }
        None => {
            let key = config
                .stripe_secret_key
                .clone()
                .unwrap_or_else(|| auth::generate_secret("sk_test_"));
            let webhook_secret = match webhook_secrets.first() {
                Some(secret) => secret.clone(),
                None => {
                    let secret = auth::generate_secret("whsec_").expose().to_owned();
                    webhook_secrets.push(secret.clone());
                    secret
                }
            };
            // The double signs with the first secret and delivers to this very server.
            let fake = boxoffice_stripe::FakeStripe::new(boxoffice_stripe::FakeStripeConfig::new(
                key.expose(),
                webhook_secret,
                Some(format!("http://{}/webhooks/stripe", reachable(local_addr))),
            ));
            (
                format!("http://{}{FAKE_STRIPE_PATH}", reachable(local_addr)),
                key,
                Some(fake),
            )
        }
    };
    let client = boxoffice_stripe::StripeClient::new(boxoffice_stripe::StripeConfig::new(
        api_base,
        boxoffice_stripe::SecretString::from(secret_key.expose().to_owned()),
    ))
    .context("building the Stripe client")?;
    if webhook_secrets.is_empty() {
        tracing::warn!("no --stripe-webhook-secret is configured: every webhook will be refused as invalid_signature");
    }
    Ok(StripeSetup {
        client,
        fake,
        webhook_secrets,
        secret_key: secret_key.expose().to_owned(),
    })
}

/// The address this process can reach itself at: a wildcard bind becomes loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], v4.port())),
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port())),
        other => other,
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested: finishing requests in flight");
}
