//! The server's configuration, already parsed. The CLI (in the `boxoffice` crate) reads
//! flags and environment variables into this.

use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// How concurrent hold requests are gathered into one transaction.
    pub hold_batching: boxoffice_core::service::HoldBatching,
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
    /// Where alerts are POSTed (Slack-compatible JSON); `None`: no alerts.
    pub alert_webhook_url: Option<String>,
    /// Let alerts go to loopback, private, link-local and other non-global addresses.
    /// Off: such destinations are refused (server-side request forgery: the alert
    /// sender must not become a way into this machine's network or cloud metadata).
    pub alert_webhook_allow_private: bool,
    /// How often queued alerts are delivered.
    pub alert_interval: Duration,
    /// How failed alert deliveries are retried.
    pub alert_retry: boxoffice_core::error_store::alerts::AlertRetry,
    /// When set, the server's own errors are also sent to this Sentry DSN.
    pub sentry_dsn: Option<String>,
    /// Where error reports wait while the database is down; `None`: beside the SQLite
    /// file, or `./boxoffice-error-spool` for PostgreSQL.
    pub error_spool_dir: Option<PathBuf>,
    /// The most bytes the spool may hold.
    pub error_spool_max_bytes: u64,
    /// Sentry envelopes per project per minute; 0 turns the limit off.
    pub error_rate_limit_per_minute: u32,
    /// How long error occurrences are kept.
    pub error_retention: Duration,
    /// The newest occurrences kept per error group.
    pub error_events_per_group: u32,
    /// How often the error retention job runs.
    pub error_retention_interval: Duration,
    /// Where buyer e-mail goes: `smtp://user:pass@host:587` (STARTTLS, required),
    /// `smtps://…` (implicit TLS) or `smtp://host:port?tls=none` (plain); `None`: each
    /// message is written as an `.eml` file into [`ServerConfig::mail_dir`]. A secret: it
    /// may hold a password.
    pub smtp_url: Option<SecretToken>,
    /// The sender of buyer e-mail (`boxoffice@example.org` or `Box Office <…>`).
    pub mail_from: String,
    /// Where messages are written without an SMTP server; `None`: beside the SQLite file,
    /// or `./boxoffice-mail` for PostgreSQL.
    pub mail_dir: Option<PathBuf>,
    /// How failed sends are retried, and when a message is given up.
    pub mail_retry: boxoffice_core::mail::MailRetry,
    /// How often queued e-mail is sent.
    pub mail_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://boxoffice.db".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            hold_duration: Duration::from_secs(15 * 60),
            sweep_interval: Duration::from_secs(30),
            hold_batching: boxoffice_core::service::HoldBatching::default(),
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
            alert_webhook_url: None,
            alert_webhook_allow_private: false,
            alert_interval: Duration::from_secs(2),
            alert_retry: boxoffice_core::error_store::alerts::AlertRetry::default(),
            sentry_dsn: None,
            error_spool_dir: None,
            error_spool_max_bytes: 256 * 1024 * 1024,
            error_rate_limit_per_minute: 6_000,
            error_retention: Duration::from_secs(30 * 24 * 60 * 60),
            error_events_per_group: 1_000,
            error_retention_interval: Duration::from_secs(60 * 60),
            smtp_url: None,
            mail_from: "boxoffice@localhost".into(),
            mail_dir: None,
            mail_retry: boxoffice_core::mail::MailRetry::default(),
            mail_interval: Duration::from_secs(5),
        }
    }
}

impl ServerConfig {
    /// The spool directory: as configured, else beside the SQLite file (so it lives and
    /// goes with the database), else `boxoffice-error-spool` in the working directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.beside_database(self.error_spool_dir.as_ref(), "error-spool")
    }

    /// The mail folder (used without `--smtp-url`): as configured, else beside the SQLite
    /// file (`<db>-mail`), else `boxoffice-mail` in the working directory.
    pub fn mail_dir(&self) -> PathBuf {
        self.beside_database(self.mail_dir.as_ref(), "mail")
    }

    /// `configured`, else `<sqlite file>-<suffix>`, else `boxoffice-<suffix>`.
    fn beside_database(&self, configured: Option<&PathBuf>, suffix: &str) -> PathBuf {
        if let Some(dir) = configured {
            return dir.clone();
        }
        match self.database_url.strip_prefix("sqlite://") {
            Some(path) => {
                let path = path.split('?').next().unwrap_or(path);
                PathBuf::from(format!("{path}-{suffix}"))
            }
            None => PathBuf::from(format!("boxoffice-{suffix}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mail_folder_lives_beside_the_sqlite_file_unless_configured() {
        let sqlite = ServerConfig {
            database_url: "sqlite:///var/lib/boxoffice/shop.db?mode=rwc".into(),
            ..ServerConfig::default()
        };
        assert_eq!(sqlite.mail_dir(), PathBuf::from("/var/lib/boxoffice/shop.db-mail"));
        assert_eq!(
            sqlite.spool_dir(),
            PathBuf::from("/var/lib/boxoffice/shop.db-error-spool")
        );
        let postgres = ServerConfig {
            database_url: "postgres://boxoffice@db/boxoffice".into(),
            ..ServerConfig::default()
        };
        assert_eq!(postgres.mail_dir(), PathBuf::from("boxoffice-mail"));
        let configured = ServerConfig {
            mail_dir: Some("/srv/mail".into()),
            ..postgres
        };
        assert_eq!(configured.mail_dir(), PathBuf::from("/srv/mail"));
    }
}
