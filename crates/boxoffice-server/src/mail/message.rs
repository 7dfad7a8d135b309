//! The messages themselves: a paid order's confirmation (plain text and HTML, one inline
//! PNG QR code per ticket referenced from the HTML by `cid:`) and a refund notice (plain
//! text and HTML), as RFC 5322 / MIME messages built by `lettre`.
//!
//! Structure of a confirmation:
//!
//! ```text
//! multipart/alternative
//! ├── text/plain
//! └── multipart/related
//!     ├── text/html            (<img src="cid:tkt_…@boxoffice">)
//!     └── image/png × tickets  (inline, Content-ID, file name tkt_….png)
//! ```

use boxoffice_core::mail::{EmailKind, EmailToSend};
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use minijinja::Environment;
use serde::Serialize;

use crate::pages::Template;
use crate::pages::buyer::{display_time, money};

/// The mail templates: `.txt` ones are not escaped, `.html` ones are HTML-escaped.
const TEMPLATES: &[Template] = &[
    (
        "mail_confirmation.txt",
        include_str!("../../templates/mail_confirmation.txt"),
    ),
    (
        "mail_confirmation.html",
        include_str!("../../templates/mail_confirmation.html"),
    ),
    ("mail_refund.txt", include_str!("../../templates/mail_refund.txt")),
    ("mail_refund.html", include_str!("../../templates/mail_refund.html")),
];

/// Builds the messages: the templates and the sender's address.
pub struct Composer {
    env: Environment<'static>,
    from: Mailbox,
    /// The right-hand side of `Message-ID`s: the sender address's domain.
    domain: String,
}

#[derive(Serialize)]
struct TicketView {
    code: String,
    type_name: String,
    /// What the HTML's `cid:` names (without the angle brackets).
    content_id: String,
}

impl Composer {
    /// A composer sending as `from` (`boxoffice@example.org` or `Box Office <…>`).
    pub fn new(from: &str) -> anyhow::Result<Self> {
        let from: Mailbox = from
            .parse()
            .map_err(|err| anyhow::anyhow!("--mail-from {from:?} is not an e-mail address: {err}"))?;
        let domain = from.email.domain().to_owned();
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // A block tag's own line end is not output: the plain text comes out as written.
        env.set_trim_blocks(true);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self { env, from, domain })
    }

    /// The sender's address, as configured.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// The whole message for `mail`. An `Err` (an address the mail library refuses, a
    /// template bug) is recorded with the attempt, like a mail server's refusal.
    pub fn compose(&self, mail: &EmailToSend) -> Result<Message, String> {
        let to: Mailbox = mail.email.recipient.parse().map_err(|err| {
            format!(
                "the recipient {:?} is not a usable address: {err}",
                mail.email.recipient
            )
        })?;
        let order = &mail.order;
        let event_name = one_line(&mail.event_name);
        let tickets: Vec<TicketView> = mail
            .tickets
            .iter()
            .filter(|(ticket, _)| mail.email.kind == EmailKind::Refund || ticket.status == "valid")
            .map(|(ticket, type_name)| TicketView {
                content_id: format!("{}@boxoffice", ticket.code),
                code: ticket.code.clone(),
                type_name: type_name.clone(),
            })
            .collect();
        let context = minijinja::context! {
            event_name => &event_name,
            event_starts_at => display_time(mail.event_starts_at),
            event_starts_at_iso => mail.event_starts_at.to_rfc3339(),
            order_id => order.id.to_string(),
            amount => money(order.amount, order.currency),
            had_tickets => !tickets.is_empty(),
            tickets => &tickets,
        };
        let (subject, template) = match mail.email.kind {
            EmailKind::Confirmation => (format!("Your tickets for {event_name}"), "mail_confirmation"),
            EmailKind::Refund => (format!("Your order for {event_name} was refunded"), "mail_refund"),
        };
        let text = self.render(&format!("{template}.txt"), &context)?;
        let html = self.render(&format!("{template}.html"), &context)?;
        let body = match mail.email.kind {
            EmailKind::Confirmation => {
                let mut related = MultiPart::related().singlepart(SinglePart::html(html));
                for ticket in &tickets {
                    let png = super::qr::png(&ticket.code)?;
                    related = related.singlepart(
                        Attachment::new_inline_with_name(ticket.content_id.clone(), format!("{}.png", ticket.code))
                            .body(png, ContentType::parse("image/png").map_err(|err| err.to_string())?),
                    );
                }
                MultiPart::alternative()
                    .singlepart(SinglePart::plain(text))
                    .multipart(related)
            }
            EmailKind::Refund => MultiPart::alternative_plain_html(text, html),
        };
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            // Stable per message: a resend after a crash between the server's acceptance
            // and our record of it carries the same id, which receivers deduplicate on.
            .message_id(Some(format!("<{}@{}>", mail.email.id, self.domain)))
            .header(BoxofficeOrder(order.id.to_string()))
            .multipart(body)
            .map_err(|err| format!("the message could not be built: {err}"))
    }

    fn render(&self, template: &str, context: &minijinja::Value) -> Result<String, String> {
        self.env
            .get_template(template)
            .and_then(|t| t.render(context))
            .map_err(|err| format!("rendering {template}: {err:#}"))
    }
}

/// A header value on one line: control characters (a newline in an event name) become
/// spaces.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `X-Boxoffice-Order: ord_…`, so support can find a message's order in a mailbox.
#[derive(Clone)]
struct BoxofficeOrder(String);

impl lettre::message::header::Header for BoxofficeOrder {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Boxoffice-Order")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use boxoffice_core::Timestamp;
    use boxoffice_core::ids::{EmailId, HoldId, OrderId, TicketTypeId};
    use boxoffice_core::mail::{EmailStatus, QueuedEmail};
    use boxoffice_core::money::{Cents, Currency};
    use boxoffice_core::payments::{Order, OrderStatus};
    use boxoffice_core::tickets::Ticket;

    use super::*;

    fn mail(kind: EmailKind, event_name: &str, codes: &[&str]) -> EmailToSend {
        let at = Timestamp::parse_rfc3339("2030-06-01T19:30:00Z").unwrap();
        let order_id = OrderId::generate();
        EmailToSend {
            email: QueuedEmail {
                id: EmailId::generate(),
                order_id: order_id.clone(),
                kind,
                recipient: "ana@example.org".into(),
                status: EmailStatus::Queued,
                attempts: 0,
                next_attempt_at: at,
                last_error: None,
                created_at: at,
                sent_at: None,
            },
            order: Order {
                id: order_id,
                hold_id: HoldId::generate(),
                status: OrderStatus::Paid,
                amount: Cents::from_trusted(5_000),
                currency: Currency::parse("EUR").unwrap(),
                payment_intent_id: Some("pi_1".into()),
                client_secret: None,
                confirming_until: None,
                created_at: at,
            },
            event_name: event_name.into(),
            event_starts_at: at,
            tickets: codes
                .iter()
                .map(|code| {
                    let ticket = Ticket {
                        code: (*code).to_owned(),
                        ticket_type_id: TicketTypeId::generate(),
                        status: "valid".into(),
                    };
                    (ticket, "GA <standing>".to_owned())
                })
                .collect(),
        }
    }

    fn formatted(message: &Message) -> String {
        String::from_utf8(message.formatted()).unwrap()
    }

    #[test]
    fn a_confirmation_has_text_html_and_one_inline_png_per_ticket() {
        let composer = Composer::new("Box Office <tickets@shop.example>").unwrap();
        let codes = [
            "tkt_00000000000000000000000000000001",
            "tkt_00000000000000000000000000000002",
        ];
        let mail = mail(EmailKind::Confirmation, "Jazz & <Blues>", &codes);
        let message = composer.compose(&mail).unwrap();
        let raw = formatted(&message);
        assert!(raw.contains("To: ana@example.org"), "{raw}");
        assert!(
            raw.contains("From: \"Box Office\" <tickets@shop.example>")
                || raw.contains("From: Box Office <tickets@shop.example>"),
            "{raw}"
        );
        assert!(
            raw.contains(&format!("Message-ID: <{}@shop.example>", mail.email.id)),
            "{raw}"
        );
        assert!(raw.contains(&format!("X-Boxoffice-Order: {}", mail.order.id)), "{raw}");
        assert!(
            raw.contains("multipart/alternative") && raw.contains("multipart/related"),
            "{raw}"
        );
        assert_eq!(raw.matches("Content-Type: image/png").count(), 2, "{raw}");
        for code in codes {
            assert!(raw.contains(&format!("Content-ID: <{code}@boxoffice>")), "{raw}");
        }
        // The bodies are encoded for transport; read them from the rendered templates.
        let context = minijinja::context! {
            event_name => "Jazz & <Blues>", event_starts_at => "Sat 1 June 2030, 19:30 UTC",
            event_starts_at_iso => "2030-06-01T19:30:00Z", order_id => mail.order.id.to_string(),
            amount => "€50.00", had_tickets => true,
            tickets => codes.iter().map(|code| TicketView {
                code: (*code).to_owned(), type_name: "GA <standing>".into(), content_id: format!("{code}@boxoffice"),
            }).collect::<Vec<_>>(),
        };
        let text = composer.render("mail_confirmation.txt", &context).unwrap();
        assert!(text.contains("Jazz & <Blues>"), "{text}");
        assert!(
            text.contains(
                "Your tickets (2):\n  GA <standing>: tkt_00000000000000000000000000000001\n  \
                 GA <standing>: tkt_00000000000000000000000000000002\n\nShow"
            ),
            "{text}"
        );
        assert!(
            text.contains("Total paid: €50.00") && text.contains(&mail.order.id.to_string()),
            "{text}"
        );
        let html = composer.render("mail_confirmation.html", &context).unwrap();
        assert!(
            html.contains("Jazz &amp; &lt;Blues&gt;") && !html.contains("<Blues>"),
            "{html}"
        );
        assert!(
            html.contains("src=\"cid:tkt_00000000000000000000000000000002@boxoffice\""),
            "{html}"
        );
    }

    #[test]
    fn a_refund_notice_is_text_and_html_without_images() {
        let composer = Composer::new("boxoffice@localhost").unwrap();
        let mail = mail(EmailKind::Refund, "Line one\r\nBcc: evil@example.org", &[]);
        let raw = formatted(&composer.compose(&mail).unwrap());
        assert!(
            raw.contains("multipart/alternative") && raw.contains("text/html"),
            "{raw}"
        );
        assert!(!raw.contains("image/png"), "{raw}");
        assert!(
            !raw.contains("\r\nBcc:"),
            "a newline in the event name cannot add a header: {raw}"
        );
    }

    #[test]
    fn the_refund_text_says_whether_tickets_were_voided() {
        let composer = Composer::new("boxoffice@localhost").unwrap();
        let context = |had_tickets: bool| {
            minijinja::context! {
                event_name => "E", event_starts_at => "S", event_starts_at_iso => "I", order_id => "ord_1",
                amount => "€25.00", had_tickets, tickets => Vec::<TicketView>::new(),
            }
        };
        let with = composer.render("mail_refund.txt", &context(true)).unwrap();
        assert!(
            with.contains("to show it.\nThe order's tickets are no longer valid.\n\nThis happens"),
            "{with}"
        );
        let without = composer.render("mail_refund.txt", &context(false)).unwrap();
        assert!(without.contains("to show it.\n\nThis happens"), "{without}");
        assert!(without.contains("Amount refunded: €25.00"), "{without}");
    }

    #[test]
    fn an_address_the_mail_library_refuses_is_an_error_to_record() {
        let composer = Composer::new("boxoffice@localhost").unwrap();
        let mut mail = mail(EmailKind::Refund, "Event", &[]);
        mail.email.recipient = "not an address".into();
        assert!(composer.compose(&mail).unwrap_err().contains("not a usable address"));
        assert!(Composer::new("nobody").is_err());
    }
}
