//! Buyer e-mail's transports (SPEC §9). Queueing, claiming, retries and giving up are the
//! use case's (`BoxOffice::deliver_emails`); this builds one message and hands it over:
//!
//! - `--smtp-url smtp://user:pass@host:587`: SMTP with STARTTLS, which is required (a
//!   server that does not offer it gets nothing, never the message in clear text);
//! - `--smtp-url smtps://user:pass@host:465`: SMTP over implicit TLS;
//! - `--smtp-url smtp://host:2525?tls=none`: plain SMTP, for a relay or test sink on the
//!   same machine or network; a password is refused with it unless the host is loopback;
//! - no `--smtp-url`: each message is written as an `.eml` file (the whole RFC 5322
//!   message, as it would be sent) into `--mail-dir`, for trying boxoffice out.
//!
//! TLS is rustls with the `ring` provider and the webpki root certificates, as for Stripe.

pub mod message;
pub mod qr;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use boxoffice_core::mail::{EmailToSend, MailSender};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::metrics::Metrics;
pub use message::Composer;

/// One SMTP command (connect, TLS handshake, each command's reply) may take this long.
const SMTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One whole attempt may take this long, whatever the transport: well within the margin the
/// sender job keeps on its claim's lease (90 s), so no other instance can claim a message
/// while it is being sent.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: plain connect, then STARTTLS, required.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `smtp://…?tls=none`: no encryption at all.
    None,
}

/// A parsed `--smtp-url`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// User name and password, percent-decoded from the URL's user info.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SmtpSettings {
    /// Parses `smtp://[user:pass@]host[:port][?tls=required|none]` or
    /// `smtps://[user:pass@]host[:port]`. Default ports: 587 (STARTTLS), 465 (implicit
    /// TLS), 25 (`tls=none`).
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        // Errors never repeat the URL: it may hold a password.
        let url = url::Url::parse(raw).map_err(|err| anyhow::anyhow!("--smtp-url is not a URL: {err}"))?;
        let mut tls = None;
        for (key, value) in url.query_pairs() {
            match &*key {
                "tls" if tls.is_none() => tls = Some(value.into_owned()),
                _ => bail!("--smtp-url: unknown or repeated query parameter {key:?} (only tls=required|none)"),
            }
        }
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtp", None | Some("required")) => Security::StartTls,
            ("smtp", Some("none")) => Security::None,
            ("smtp", Some(other)) => bail!(
                "--smtp-url: tls={other:?} is not supported; use tls=required (the default: STARTTLS), \
                 tls=none (no encryption), or smtps:// (implicit TLS). Opportunistic STARTTLS is not offered: \
                 an attacker on the path could strip it"
            ),
            ("smtps", None) => Security::ImplicitTls,
            ("smtps", Some(_)) => bail!("--smtp-url: smtps:// is always TLS; the tls parameter is for smtp://"),
            (scheme, _) => bail!("--smtp-url must start with smtp:// or smtps://, not {scheme}://"),
        };
        let host = match url.host() {
            Some(url::Host::Domain(domain)) if !domain.is_empty() => domain.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => bail!("--smtp-url names no host"),
        };
        if !matches!(url.path(), "" | "/") {
            bail!("--smtp-url takes no path");
        }
        let port = url.port().unwrap_or(match security {
            Security::StartTls => 587,
            Security::ImplicitTls => 465,
            Security::None => 25,
        });
        let decode = |raw: &str| {
            percent_decode(raw).context("--smtp-url: the user name or password is not valid percent-encoded UTF-8")
        };
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some((decode(url.username())?, decode(url.password().unwrap_or(""))?))
        };
        let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if security == Security::None && credentials.is_some() && !loopback {
            bail!("--smtp-url: refusing to send a password in clear text (tls=none) to a host other than loopback");
        }
        Ok(Self {
            host,
            port,
            security,
            credentials,
        })
    }

    /// For logs: where, and how protected; never the credentials.
    pub fn describe(&self) -> String {
        let security = match self.security {
            Security::StartTls => "STARTTLS",
            Security::ImplicitTls => "TLS",
            Security::None => "no TLS",
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("smtp {host}:{} ({security})", self.port)
    }

    fn transport(&self) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.clone())
            .port(self.port)
            .timeout(Some(SMTP_COMMAND_TIMEOUT));
        let tls = || TlsParameters::new(self.host.clone()).context("setting up TLS for --smtp-url");
        builder = match self.security {
            Security::StartTls => builder.tls(Tls::Required(tls()?)),
            Security::ImplicitTls => builder.tls(Tls::Wrapper(tls()?)),
            Security::None => builder.tls(Tls::None),
        };
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(builder.build())
    }
}

fn percent_decode(raw: &str) -> anyhow::Result<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).context("a truncated percent escape")?;
            let hex = std::str::from_utf8(hex)?;
            out.push(u8::from_str_radix(hex, 16)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8(out)?)
}

/// Where messages go.
enum Transport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        description: String,
    },
    Folder(PathBuf),
}

/// The [`MailSender`] of the server: builds each message and sends it through the
/// configured transport, counting attempts by outcome.
pub struct Mailer {
    composer: Composer,
    transport: Transport,
    metrics: Arc<Metrics>,
}

impl Mailer {
    /// Sends over SMTP as `smtp_url` says, or, without one, writes into `mail_dir` (created
    /// now if missing).
    pub fn new(
        smtp_url: Option<&str>,
        mail_from: &str,
        mail_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let composer = Composer::new(mail_from)?;
        let transport = match smtp_url {
            Some(url) => {
                let settings = SmtpSettings::parse(url)?;
                Transport::Smtp {
                    transport: settings.transport()?,
                    description: settings.describe(),
                }
            }
            None => {
                std::fs::create_dir_all(mail_dir)
                    .with_context(|| format!("creating the mail folder {}", mail_dir.display()))?;
                Transport::Folder(mail_dir.to_owned())
            }
        };
        Ok(Self {
            composer,
            transport,
            metrics,
        })
    }

    /// Where mail goes, for the start-up log: `smtp host:587 (STARTTLS)` or the folder.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Smtp { description, .. } => description.clone(),
            Transport::Folder(dir) => format!("the folder {}", dir.display()),
        }
    }

    /// The folder messages are written to, when there is no SMTP server.
    pub fn folder(&self) -> Option<&Path> {
        match &self.transport {
            Transport::Folder(dir) => Some(dir),
            Transport::Smtp { .. } => None,
        }
    }

    async fn deliver(&self, mail: &EmailToSend) -> Result<String, String> {
        let message = self.composer.compose(mail)?;
        match &self.transport {
            Transport::Smtp { transport, .. } => match transport.send(message).await {
                Ok(response) => {
                    let text: Vec<&str> = response.message().collect();
                    Ok(format!("{} {}", response.code(), text.join(" ")).trim_end().to_owned())
                }
                // lettre's errors already name their cause.
                Err(err) => Err(format!("SMTP: {err}")),
            },
            Transport::Folder(dir) => {
                let path = dir.join(format!("{}.eml", mail.email.id));
                let bytes = message.formatted();
                let target = path.clone();
                tokio::task::spawn_blocking(move || write_atomically(&target, &bytes))
                    .await
                    .map_err(|err| format!("writing {}: {err}", path.display()))?
                    .map_err(|err| format!("writing {}: {err}", path.display()))?;
                Ok(format!("written to {}", path.display()))
            }
        }
    }
}

#[async_trait]
impl MailSender for Mailer {
    async fn send(&self, mail: &EmailToSend) -> Result<String, String> {
        let outcome = match tokio::time::timeout(SEND_TIMEOUT, self.deliver(mail)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {} s", SEND_TIMEOUT.as_secs())),
        };
        self.metrics.email_attempt(
            mail.email.kind.as_str(),
            if outcome.is_ok() { "sent" } else { "failed" },
        );
        outcome
    }
}

/// Writes `bytes` to `path` so that a reader sees the whole file or none: a temporary file
/// beside it (a dot file, which mail tools skip), synced, then renamed over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;

    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", boxoffice_core::ids::random_hex()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn smtp_urls_say_how_the_connection_is_protected() {
        let starttls = SmtpSettings::parse("smtp://ana:p%40ss%3Aword@mail.example.org").unwrap();
        assert_eq!(
            starttls,
            SmtpSettings {
                host: "mail.example.org".into(),
                port: 587,
                security: Security::StartTls,
                credentials: Some(("ana".into(), "p@ss:word".into())),
            }
        );
        assert_eq!(
            SmtpSettings::parse("smtp://mail.example.org:2587?tls=required")
                .unwrap()
                .port,
            2587
        );
        let implicit = SmtpSettings::parse("smtps://u:p@mail.example.org").unwrap();
        assert_eq!((implicit.security, implicit.port), (Security::ImplicitTls, 465));
        let plain = SmtpSettings::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
        assert_eq!(
            (plain.security, plain.port, &plain.credentials),
            (Security::None, 2525, &None)
        );
        assert!(SmtpSettings::parse("smtp://u:p@localhost:25?tls=none").is_ok());
        assert_eq!(plain.describe(), "smtp 127.0.0.1:2525 (no TLS)");
    }

    #[test]
    fn unsafe_or_unknown_smtp_urls_are_refused_without_repeating_the_password() {
        for bad in [
            "smtp://mail.example.org?tls=opportunistic",
            "smtp://u:secretpw@mail.example.org?tls=none",
            "smtps://mail.example.org?tls=none",
            "http://mail.example.org",
            "smtp://mail.example.org/path",
            "smtp://mail.example.org?tsl=none",
            "smtp://",
            "not a url secretpw",
        ] {
            let err = SmtpSettings::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("secretpw"), "{bad}: {err}");
        }
    }

    #[test]
    fn settings_debug_hides_the_password() {
        let settings = SmtpSettings::parse("smtps://ana:secretpw@mail.example.org").unwrap();
        let shown = format!("{settings:?}");
        assert!(shown.contains("ana") && !shown.contains("secretpw"), "{shown}");
    }

    #[test]
    fn files_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eml_1.eml");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["eml_1.eml"], "no temporary file is left behind");
    }
}
