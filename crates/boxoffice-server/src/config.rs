//! The server's configuration, already parsed. The CLI (in the `boxoffice` crate) reads
//! flags and environment variables into this.

use std::net::SocketAddr;
use std::time::Duration;

use boxoffice_core::auth::SecretToken;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The operator token, if configured; otherwise one is generated at first start.
    pub admin_token: Option<SecretToken>,
    /// Default hold length.
    pub hold_duration: Duration,
    /// How often the expiry sweeper runs.
    pub sweep_interval: Duration,
    /// Public requests per client address per minute; 0 turns the limit off.
    pub rate_limit_per_minute: u32,
    /// Seed demo data into an empty database.
    pub demo: bool,
    /// Where the Stripe client sends requests; `None` means the built-in test double,
    /// mounted at `/_fake-stripe` on this server.
    pub stripe_api_base: Option<String>,
    /// The Stripe API key; generated for the test double when unset.
    pub stripe_secret_key: Option<SecretToken>,
    /// Webhook signing secrets, any of which may sign (rotation); generated for the test
    /// double when empty.
    pub stripe_webhook_secrets: Vec<SecretToken>,
    /// How long a hold is kept at least once payment starts.
    pub payment_grace: Duration,
    /// How long a payment request holds its idempotency key before another may take over.
    pub idempotency_lock_timeout: Duration,
    /// How often the payment completer looks for stalled payment requests.
    pub payment_completer_interval: Duration,
    /// How often the webhook worker applies stored events not applied yet.
    pub webhook_worker_interval: Duration,
    /// How often the reconciler fetches the provider's recent events.
    pub webhook_reconcile_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://boxoffice.db".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            hold_duration: Duration::from_secs(15 * 60),
            sweep_interval: Duration::from_secs(30),
            rate_limit_per_minute: 600,
            demo: false,
            stripe_api_base: None,
            stripe_secret_key: None,
            stripe_webhook_secrets: Vec::new(),
            payment_grace: Duration::from_secs(5 * 60),
            idempotency_lock_timeout: Duration::from_secs(120),
            payment_completer_interval: Duration::from_secs(15),
            webhook_worker_interval: Duration::from_secs(5),
            webhook_reconcile_interval: Duration::from_secs(5 * 60),
        }
    }
}
