//! The alert webhook client: Slack-compatible `{"text", "blocks"}` messages (SPEC §7),
//! POSTed to `--alert-webhook-url`. Queueing, retries and giving up are the use case's
//! (`BoxOffice::deliver_alerts`); this only formats and sends one alert.
//!
//! The URL is the operator's, but whoever controls its DNS (or a typo) could point it at
//! this machine's own services or a cloud metadata endpoint (server-side request forgery).
//! So unless `--alert-webhook-allow-private` is given, only `http`/`https` to globally
//! routable addresses is sent to, and the check is made on the addresses the connection
//! actually uses: our own resolver resolves the host, refuses the answer if any address is
//! not global, and hands the checked addresses to the HTTP client, which connects to them
//! (no second lookup a rebinding DNS server could answer differently). Redirects are not
//! followed and proxies from the environment are not used (a proxy would do its own
//! lookup). A refused delivery is a failed delivery: retried, then recorded (component
//! `alerts`) like any other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boxoffice_core::error_store::alerts::AlertSender;
use boxoffice_core::error_store::reports::{AlertKind, PendingAlert};
use serde_json::{Value, json};

use crate::metrics::Metrics;

/// One delivery attempt may take this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a receiver's answer kept in the record of a failed attempt.
const MAX_REPLY_CHARS: usize = 300;

/// The flag that lets alerts go to non-global addresses (named in refusals).
const ALLOW_FLAG: &str = "--alert-webhook-allow-private";

/// Sends alerts to a Slack-compatible incoming webhook.
pub struct SlackWebhook {
    client: reqwest::Client,
    url: String,
    allow_private: bool,
    metrics: Arc<Metrics>,
}

impl SlackWebhook {
    /// A sender to `url`. Redirects are not followed: the operator names the receiver,
    /// and a receiver must not be able to point alerts elsewhere. Unless `allow_private`,
    /// destinations that are not globally routable are refused (see the module header);
    /// a URL refused already by its form or its current DNS answer is warned about now.
    pub fn new(url: String, allow_private: bool, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .build()?;
        let sender = Self {
            client,
            url,
            allow_private,
            metrics,
        };
        sender.warn_if_refused();
        Ok(sender)
    }

    /// The startup warning: the URL's form, or the host's addresses as they resolve now.
    fn warn_if_refused(&self) {
        match check_url(&self.url, self.allow_private) {
            Err(refusal) => warn_refused(&refusal),
            Ok(Destination::Name(host)) => {
                let allow_private = self.allow_private;
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Err(refusal) = resolve_checked(&host, allow_private).await {
                            warn_refused(&refusal);
                        }
                    });
                }
            }
            Ok(Destination::Address(_)) => {}
        }
    }
}

fn warn_refused(refusal: &Refused) {
    // The URL itself is not logged: a Slack webhook URL carries its token in the path.
    tracing::warn!(
        "the alert webhook URL is not allowed, alerts will not be delivered: {refusal} (set {ALLOW_FLAG} to allow it)"
    );
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a URL, or not one with a host.
    #[error("the alert webhook URL is not a valid http(s) URL")]
    Malformed,
    /// A scheme other than `http` or `https`.
    #[error("the alert webhook URL's scheme {0:?} is not http or https")]
    Scheme(String),
    /// The host is, or resolves to, an address that is not global.
    #[error("the alert webhook destination {address} is {class}, not a public address")]
    Address {
        /// The address refused.
        address: IpAddr,
        /// What it is (`loopback`, `private`, `link-local`, …).
        class: &'static str,
    },
    /// The host did not resolve to any address.
    #[error("the alert webhook host did not resolve to any address")]
    NoAddress,
}

/// Where a URL that passed the form check points.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// An address literal (already checked): the HTTP client does no lookup for it.
    Address(IpAddr),
    /// A name, checked by [`GuardedResolver`] when the client connects.
    Name(String),
}

/// The checks that need no DNS: scheme, host present, and an address literal's class.
fn check_url(raw: &str, allow_private: bool) -> Result<Destination, Refused> {
    let url = url::Url::parse(raw).map_err(|_| Refused::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::Scheme(url.scheme().to_owned()));
    }
    match url.host().ok_or(Refused::Malformed)? {
        url::Host::Ipv4(v4) => check_address(IpAddr::V4(v4), allow_private).map(Destination::Address),
        url::Host::Ipv6(v6) => check_address(IpAddr::V6(v6), allow_private).map(Destination::Address),
        url::Host::Domain(name) => Ok(Destination::Name(name.to_owned())),
    }
}

fn check_address(address: IpAddr, allow_private: bool) -> Result<IpAddr, Refused> {
    match non_global_class(address) {
        Some(class) if !allow_private => Err(Refused::Address { address, class }),
        _ => Ok(address),
    }
}

/// Resolves `host` and checks every address; any refused address refuses the host (a
/// name that mixes public and private answers is not one we send to).
async fn resolve_checked(host: &str, allow_private: bool) -> Result<Vec<SocketAddr>, Refused> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| Refused::NoAddress)?
        .collect();
    if addresses.is_empty() {
        return Err(Refused::NoAddress);
    }
    for address in &addresses {
        check_address(address.ip(), allow_private)?;
    }
    Ok(addresses)
}

/// The HTTP client's resolver: resolves, checks, and returns exactly the checked
/// addresses, which the client then connects to.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private;
        Box::pin(async move {
            match resolve_checked(&host, allow_private).await {
                Ok(addresses) => Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs),
                Err(refused) => Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

/// Why `address` is not a global unicast address (`None`: it is one). IPv4-mapped,
/// IPv4-compatible, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they carry.
pub fn non_global_class(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => non_global_v4(v4),
        IpAddr::V6(v6) => non_global_v6(v6),
    }
}

fn non_global_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = address.octets();
    let class = match (a, b, c) {
        _ if address.is_unspecified() => "unspecified",
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, 16..=31, _) => "private",
        (169, 254, _) => "link-local (cloud metadata lives here)",
        (100, 64..=127, _) => "shared address space (carrier-grade NAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (192, 88, 99) => "deprecated 6to4 relay anycast",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    };
    Some(class)
}

fn non_global_v6(address: Ipv6Addr) -> Option<&'static str> {
    if address.is_unspecified() {
        return Some("unspecified");
    }
    if address.is_loopback() {
        return Some("loopback");
    }
    let segments = address.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated): the IPv4 address
    // is what a dual-stack socket reaches.
    if segments[..5] == [0; 5] && (segments[5] == 0xffff || segments[5] == 0) {
        return non_global_v4(embedded_v4(segments[6], segments[7]));
    }
    // NAT64 (64:ff9b::/96) reaches the IPv4 address it carries.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return non_global_v4(embedded_v4(segments[6], segments[7]));
    }
    // 6to4 (2002::/16) carries an IPv4 address in bits 16–47.
    if segments[0] == 0x2002 {
        return non_global_v4(embedded_v4(segments[1], segments[2])).map(|_| "6to4 of a non-global IPv4 address");
    }
    let class = match segments[0] {
        0xff00..=0xffff => "multicast",
        0xfc00..=0xfdff => "unique local (private)",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local (deprecated)",
        0x0064 if segments[1] == 0xff9b => "local-use NAT64",
        0x0100 if segments[1..4] == [0, 0, 0] => "discard-only",
        0x2001 if segments[1] == 0x0db8 => "documentation",
        // Teredo (2001::/32), benchmarking (2001:2::/48) and ORCHID (2001:10::/28,
        // 2001:20::/28): special purpose, or a tunnel to an address we cannot check.
        0x2001 if segments[1] == 0 || segments[1] == 2 || (0x10..=0x2f).contains(&segments[1]) => "special-purpose",
        0x3fff if segments[1] <= 0x0fff => "documentation",
        // Global unicast is 2000::/3; everything else is reserved.
        0x2000..=0x3fff => return None,
        _ => "reserved",
    };
    Some(class)
}

/// The message for an alert: `text` for notifications, `blocks` for the channel.
pub fn message(alert: &PendingAlert) -> Value {
    let group = &alert.group;
    let headline = match alert.kind {
        AlertKind::NewGroup => "New error",
        AlertKind::Regression => "Regression: a resolved error is back",
        AlertKind::Critical => "Critical error",
    };
    // The title and the component come from outside (anyone holding a public DSN key sets
    // both): escaped wherever Slack reads mrkdwn, the notification `text` included, so
    // `<!channel>` or a disguised link `<https://…|Stripe>` arrives as plain text.
    let component = escape(group.component.as_deref().unwrap_or("-"));
    let title = escape(&group.title);
    let text = format!(
        "[boxoffice] {headline} ({}): {title} — {} event(s), component {component}, {}",
        group.severity.as_str(),
        group.count,
        escape(&group.scope)
    );
    let details = format!(
        "*Severity:* {}\n*Component:* {component}\n*Scope:* {}\n*Events:* {}\n*First seen:* {}\n*Last seen:* {}\n*Group:* `{}`",
        group.severity.as_str(),
        escape(&group.scope),
        group.count,
        group.first_seen.to_rfc3339(),
        group.last_seen.to_rfc3339(),
        group.id
    );
    json!({
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{title}*")}},
            {"type": "section", "text": {"type": "mrkdwn", "text": details}},
        ],
    })
}

/// Slack's three control characters in mrkdwn (its documented escaping: `&`, `<`, `>`).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The refusal somewhere in `err`'s causes, if the guard refused the connection.
fn refusal_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = err.source();
    }
    None
}

#[async_trait]
impl AlertSender for SlackWebhook {
    async fn send(&self, alert: &PendingAlert) -> Result<(), String> {
        let outcome = match check_url(&self.url, self.allow_private) {
            Err(refusal) => Err(format!("refused: {refusal} (set {ALLOW_FLAG} to allow it)")),
            Ok(_) => {
                let result = self.client.post(&self.url).json(&message(alert)).send().await;
                match result {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => {
                        let status = response.status();
                        let body = response.text().await.unwrap_or_default();
                        let reply: String = body.chars().take(MAX_REPLY_CHARS).collect();
                        Err(format!("the alert webhook answered {status}: {reply}"))
                    }
                    Err(err) => match refusal_in(&err) {
                        Some(refusal) => Err(format!("refused: {refusal} (set {ALLOW_FLAG} to allow it)")),
                        // Without the URL: a Slack webhook URL carries its secret in the path.
                        None => Err(format!(
                            "the alert webhook could not be reached: {}",
                            boxoffice_core::service::error_chain(&err.without_url())
                        )),
                    },
                }
            }
        };
        self.metrics
            .alert(if outcome.is_ok() { "sent" } else { "attempt_failed" }, 1);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(raw: &str) -> Option<&'static str> {
        non_global_class(raw.parse().unwrap_or_else(|_| panic!("{raw} is an address")))
    }

    #[test]
    fn non_global_ipv4_addresses_are_refused() {
        for (raw, expected) in [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "\"this network\" (0.0.0.0/8)"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata lives here)"),
            ("100.64.0.1", "shared address space (carrier-grade NAT)"),
            ("192.0.0.1", "IETF protocol assignment"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved or broadcast"),
            ("255.255.255.255", "reserved or broadcast"),
        ] {
            assert_eq!(class(raw), Some(expected), "{raw}");
        }
    }

    #[test]
    fn global_ipv4_addresses_are_allowed() {
        for raw in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "52.95.110.1",
        ] {
            assert_eq!(class(raw), None, "{raw}");
        }
    }

    #[test]
    fn non_global_ipv6_addresses_are_refused() {
        for (raw, expected) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique local (private)"),
            ("fd12:3456::1", "unique local (private)"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local (deprecated)"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2001::1", "special-purpose"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("100::1", "discard-only"),
            ("fd00:ec2::254", "unique local (private)"),
            ("4000::1", "reserved"),
        ] {
            assert_eq!(class(raw), Some(expected), "{raw}");
        }
    }

    #[test]
    fn ipv6_addresses_carrying_ipv4_are_judged_by_the_ipv4_address() {
        // IPv4-mapped: what a dual-stack socket reaches.
        assert_eq!(class("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(
            class("::ffff:169.254.169.254"),
            Some("link-local (cloud metadata lives here)")
        );
        assert_eq!(class("::ffff:10.1.2.3"), Some("private"));
        assert_eq!(class("::ffff:0.0.0.0"), Some("unspecified"));
        assert_eq!(class("::ffff:8.8.8.8"), None);
        // IPv4-compatible (deprecated), NAT64 and 6to4.
        assert_eq!(class("::127.0.0.1"), Some("loopback"));
        assert_eq!(
            class("64:ff9b::a9fe:a9fe"),
            Some("link-local (cloud metadata lives here)")
        );
        assert_eq!(class("64:ff9b::808:808"), None);
        assert_eq!(class("2002:c0a8:0101::1"), Some("6to4 of a non-global IPv4 address"));
        assert_eq!(class("2002:0808:0808::1"), None);
    }

    #[test]
    fn global_ipv6_addresses_are_allowed() {
        for raw in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:81d::200e",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(class(raw), None, "{raw}");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_host_and_address_literals() {
        assert_eq!(
            check_url("ftp://hooks.example.org/x", false),
            Err(Refused::Scheme("ftp".into()))
        );
        assert_eq!(
            check_url("file:///etc/passwd", false),
            Err(Refused::Scheme("file".into()))
        );
        assert_eq!(check_url("not a url", false), Err(Refused::Malformed));
        assert!(matches!(
            check_url("http://127.0.0.1:9/hook", false),
            Err(Refused::Address { class: "loopback", .. })
        ));
        assert!(matches!(
            check_url("http://[::ffff:169.254.169.254]/latest/meta-data", false),
            Err(Refused::Address { .. })
        ));
        // Decimal and hex forms of an address are parsed as the address they are.
        assert!(matches!(
            check_url("http://2130706433/hook", false),
            Err(Refused::Address { class: "loopback", .. })
        ));
        assert!(matches!(
            check_url("http://0x7f.1/hook", false),
            Err(Refused::Address { class: "loopback", .. })
        ));
        assert_eq!(
            check_url("http://127.0.0.1:9/hook", true),
            Ok(Destination::Address(
                "127.0.0.1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
            ))
        );
        assert_eq!(
            check_url("https://hooks.slack.com/services/T/B/x", false),
            Ok(Destination::Name("hooks.slack.com".into()))
        );
    }

    #[tokio::test]
    async fn names_are_refused_when_they_resolve_to_non_global_addresses() {
        let refused = resolve_checked("localhost", false).await;
        assert!(matches!(refused, Err(Refused::Address { .. })), "{refused:?}");
        let allowed = resolve_checked("localhost", true).await;
        assert!(allowed.is_ok_and(|addresses| !addresses.is_empty()));
    }

    #[test]
    fn text_from_outside_cannot_ping_a_channel_or_disguise_a_link() {
        use boxoffice_core::Timestamp;
        use boxoffice_core::error_store::reports::{AlertKind, ErrorGroup, PendingAlert};
        use boxoffice_core::failures::Severity;
        use boxoffice_core::ids::ErrorGroupId;

        let hostile = "<!channel> <https://evil.example|Stripe> & <@U123>";
        let alert = PendingAlert {
            id: "alr_1".into(),
            kind: AlertKind::NewGroup,
            group: ErrorGroup {
                id: ErrorGroupId::from_trusted("grp_1".into()),
                scope: "org_1".into(),
                fingerprint: "f".repeat(64),
                grouping_version: 1,
                title: hostile.into(),
                severity: Severity::Error,
                component: Some(hostile.into()),
                count: 1,
                first_seen: Timestamp::from_millis(0),
                last_seen: Timestamp::from_millis(0),
                resolved: false,
            },
            attempts: 0,
            created_at: Timestamp::from_millis(0),
        };
        let message = super::message(&alert);
        let texts = [
            message["text"].as_str().unwrap_or_default().to_owned(),
            message["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            message["blocks"][2]["text"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ];
        for text in &texts {
            assert!(!text.contains('<') && !text.contains('>'), "{text}");
            assert!(!text.contains("& "), "a bare ampersand: {text}");
        }
        assert!(texts[0].contains("&lt;!channel&gt; &lt;https://evil.example|Stripe&gt; &amp; &lt;@U123&gt;"));
        assert!(texts[2].contains("*Component:* &lt;!channel&gt;"), "{}", texts[2]);
    }
}
