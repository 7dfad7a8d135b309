//! Buyer e-mail end to end (SPEC §9), on both engines: a real purchase through the Stripe
//! double, the sender job delivering over SMTP to an in-test SMTP server (which can be
//! stopped, restarted on its port, and read back), exactly once across webhook
//! redeliveries, outages, give-up (error store and alert), operator retry, two instances,
//! and the folder transport used without `--smtp-url`.

#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_core::ManualClock;
use boxoffice_core::error_store::alerts::AlertRetry;
use boxoffice_core::mail::MailRetry;
use common::{Answer, AppOptions, Engine, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

const STRIPE_KEY: &str = "sk_test_mail_suite";
const SECRET: &str = "whsec_mail_suite";
const BUYER: &str = "ana@example.org";
const EVENT_NAME: &str = "Jazz on the Roof";

/// How long any wait for something asynchronous may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

// ----- an SMTP server -------------------------------------------------------------------

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    /// The message as sent after DATA (dot-stuffing undone), CRLF line ends.
    data: String,
}

/// A minimal SMTP server on 127.0.0.1: greeting, EHLO/HELO (no STARTTLS, no AUTH),
/// MAIL/RCPT/DATA/RSET/NOOP/QUIT. It keeps every message; it can be stopped (connections
/// are then refused) and started again on the same port.
struct SmtpSink {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    server: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SmtpSink {
    async fn start() -> Self {
        let listener = listen("127.0.0.1:0".parse().unwrap());
        let sink = Self {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            connections: Arc::default(),
            server: tokio::sync::Mutex::new(None),
        };
        sink.serve(listener).await;
        sink
    }

    /// The `--smtp-url` of this server: plain SMTP, as a local test server speaks it.
    fn url(&self) -> String {
        format!("smtp://{}?tls=none", self.addr)
    }

    async fn serve(&self, listener: tokio::net::TcpListener) {
        let (received, connections) = (self.received.clone(), self.connections.clone());
        let task = tokio::spawn(async move {
            // Conversations are owned by this task: stopping it ends them too.
            let mut conversations = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                conversations.spawn(converse(stream, received.clone()));
            }
        });
        *self.server.lock().await = Some(task);
    }

    /// Closes the port: connections are refused until [`SmtpSink::restart`].
    async fn stop(&self) {
        if let Some(task) = self.server.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens on the same port again.
    async fn restart(&self) {
        self.stop().await;
        self.serve(listen(self.addr)).await;
    }

    fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A listener that may take a port just closed (`SO_REUSEADDR`).
fn listen(addr: SocketAddr) -> tokio::net::TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(64).unwrap()
}

/// The address inside `<…>` of a MAIL FROM / RCPT TO argument.
fn angle_address(argument: &str) -> String {
    let start = argument.find('<').map_or(0, |i| i + 1);
    let end = argument[start..].find('>').map_or(argument.len(), |i| start + i);
    argument[start..end].to_owned()
}

async fn converse(stream: TcpStream, received: Arc<Mutex<Vec<Received>>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    if write.write_all(b"220 sink.test ESMTP ready\r\n").await.is_err() {
        return;
    }
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => "250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".to_owned(),
            "HELO" | "NOOP" => "250 2.0.0 Ok\r\n".to_owned(),
            "RSET" => {
                (mail_from, rcpt_to) = (String::new(), Vec::new());
                "250 2.0.0 Ok\r\n".to_owned()
            }
            "MAIL" => {
                (mail_from, rcpt_to) = (angle_address(&command), Vec::new());
                "250 2.1.0 Ok\r\n".to_owned()
            }
            "RCPT" => {
                rcpt_to.push(angle_address(&command));
                "250 2.1.5 Ok\r\n".to_owned()
            }
            "DATA" => {
                if write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut data = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == b".\r\n" {
                        break;
                    }
                    let unstuffed = if line.starts_with(b"..") { &line[1..] } else { &line[..] };
                    data.extend_from_slice(unstuffed);
                }
                let mut all = received.lock().unwrap();
                all.push(Received {
                    mail_from: mail_from.clone(),
                    rcpt_to: rcpt_to.clone(),
                    data: String::from_utf8_lossy(&data).into_owned(),
                });
                format!("250 2.0.0 Ok: queued as SINK{}\r\n", all.len())
            }
            "QUIT" => {
                let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                return;
            }
            _ => "502 5.5.2 Error: command not recognized\r\n".to_owned(),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ----- a minimal MIME reader ------------------------------------------------------------

/// A leaf part of a MIME message: its headers (names lower-cased) and decoded body.
#[derive(Debug)]
struct Part {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Part {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn content_type(&self) -> String {
        self.header("content-type")
            .unwrap_or("text/plain")
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_ascii_lowercase()
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Headers (unfolded) and the rest.
fn split_headers(raw: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

/// Every leaf part of `raw`, depth first, bodies decoded (base64, quoted-printable).
fn leaves(raw: &str) -> Vec<Part> {
    let (headers, body) = split_headers(raw);
    let content_type = header(&headers, "content-type").unwrap_or("text/plain").to_owned();
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        let boundary = content_type
            .split(';')
            .find_map(|param| param.trim().strip_prefix("boundary="))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        let delimiter = format!("--{boundary}");
        return body
            .split(&delimiter)
            .skip(1)
            .take_while(|segment| !segment.starts_with("--"))
            .flat_map(|segment| leaves(segment.strip_prefix("\r\n").unwrap_or(segment)))
            .collect();
    }
    let body = body.strip_suffix("\r\n").unwrap_or(body);
    let body = match header(&headers, "content-transfer-encoding").map(str::to_ascii_lowercase) {
        Some(encoding) if encoding == "base64" => base64_decode(body),
        Some(encoding) if encoding == "quoted-printable" => quoted_printable_decode(body),
        _ => body.as_bytes().to_vec(),
    };
    vec![Part { headers, body }]
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digits: Vec<u32> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .map(|b| ALPHABET.iter().position(|a| *a == b).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0, |n, (i, d)| n | (d << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}

fn quoted_printable_decode(text: &str) -> Vec<u8> {
    let bytes = text.replace("=\r\n", "").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// What a test checks of a received message.
struct Mail {
    to: String,
    subject: String,
    message_id: String,
    text: String,
    html: String,
    /// The PNG images: (Content-ID, decoded bytes).
    images: Vec<(String, Vec<u8>)>,
    /// `Content-Type: image/png` lines in the raw message.
    png_parts: usize,
}

fn read_mail(raw: &str) -> Mail {
    let (headers, _) = split_headers(raw);
    let parts = leaves(raw);
    let text_of = |kind: &str| {
        parts
            .iter()
            .filter(|part| part.content_type() == kind)
            .map(Part::text)
            .collect::<Vec<_>>()
            .join("\n")
    };
    Mail {
        to: header(&headers, "to").unwrap_or("").to_owned(),
        subject: header(&headers, "subject").unwrap_or("").to_owned(),
        message_id: header(&headers, "message-id").unwrap_or("").to_owned(),
        text: text_of("text/plain"),
        html: text_of("text/html"),
        images: parts
            .iter()
            .filter(|part| part.content_type() == "image/png")
            .map(|part| (part.header("content-id").unwrap_or("").to_owned(), part.body.clone()))
            .collect(),
        png_parts: raw.matches("Content-Type: image/png").count(),
    }
}

// ----- a webhook receiver for alerts ----------------------------------------------------

/// A Slack-like incoming webhook that records every POST.
struct AlertReceiver {
    url: String,
    posts: Arc<Mutex<Vec<Value>>>,
}

async fn receive_alert(State(posts): State<Arc<Mutex<Vec<Value>>>>, body: axum::body::Bytes) -> StatusCode {
    posts
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    StatusCode::OK
}

impl AlertReceiver {
    async fn start() -> Self {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive_alert))
            .with_state(posts.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { url, posts }
    }

    fn posts(&self) -> Vec<Value> {
        self.posts.lock().unwrap().clone()
    }
}

// ----- a shop ---------------------------------------------------------------------------

struct Shop {
    app: Arc<TestApp>,
    event: String,
    ticket_type: String,
    _db: Option<TestDatabase>,
}

struct Purchase {
    order: String,
    payment_intent: String,
}

fn options(clock: Option<ManualClock>, smtp_url: Option<String>) -> AppOptions {
    AppOptions {
        clock,
        stripe_secret_key: Some(STRIPE_KEY.into()),
        webhook_secrets: vec![SECRET.into()],
        smtp_url,
        mail_from: "Box Office <tickets@boxoffice.test>".into(),
        ..Default::default()
    }
}

impl Shop {
    async fn open(engine: Engine, options: AppOptions) -> Self {
        let db = TestDatabase::new(engine).await;
        let mut shop = Self::on(&db, options).await;
        shop._db = Some(db);
        shop
    }

    /// A shop on `db` (for several instances on one database).
    async fn on(db: &TestDatabase, options: AppOptions) -> Self {
        let app = spawn_app(db, options).await;
        let org = app.create_organization("Org").await;
        let (event, tts) = app
            .create_event_with(
                &org,
                json!({ "name": EVENT_NAME, "hold_seconds": 600 }),
                &[("GA", 2_500, 1_000)],
            )
            .await;
        Self {
            app: Arc::new(app),
            event,
            ticket_type: tts[0].clone(),
            _db: None,
        }
    }

    async fn hold(&self, quantity: i64, email: Option<&str>) -> Answer {
        let mut body = json!({
            "event_id": self.event,
            "items": [{ "ticket_type_id": self.ticket_type, "quantity": quantity }],
        });
        if let Some(email) = email {
            body["customer_email"] = json!(email);
        }
        self.app.post("/api/v1/reservations", body).await
    }

    async fn stripe(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Answer {
        self.app.fake_stripe(STRIPE_KEY, method, path, form).await
    }

    /// A hold of `quantity` for `email`, paid with the double's test card; waits until the
    /// webhook has marked the order paid.
    async fn buy(&self, quantity: i64, email: Option<&str>) -> Purchase {
        let hold = self.hold(quantity, email).await;
        assert_eq!(hold.status, 201, "{}", hold.body);
        let hold = hold.body["id"].as_str().unwrap().to_owned();
        let request = self
            .app
            .client
            .post(self.app.url(&format!("/api/v1/reservations/{hold}/payment-intent")))
            .header("idempotency-key", format!("pay-{hold}"));
        let intent = self.app.send(request).await;
        assert_eq!(intent.status, 201, "{}", intent.body);
        let purchase = Purchase {
            order: intent.body["order_id"].as_str().unwrap().to_owned(),
            payment_intent: intent.body["payment_intent_id"].as_str().unwrap().to_owned(),
        };
        let confirmed = self
            .stripe(
                reqwest::Method::POST,
                &format!("/v1/payment_intents/{}/confirm", purchase.payment_intent),
                &[("payment_method", "pm_card_visa")],
            )
            .await;
        assert_eq!(confirmed.status, 200, "{}", confirmed.body);
        self.order_becomes(&purchase, "paid").await;
        purchase
    }

    async fn order(&self, purchase: &Purchase) -> Value {
        self.app.get(&format!("/api/v1/orders/{}", purchase.order)).await.body
    }

    async fn order_becomes(&self, purchase: &Purchase, status: &str) -> Value {
        eventually(&format!("order {} to become {status}", purchase.order), || async {
            let order = self.order(purchase).await;
            (order["status"] == status).then_some(order)
        })
        .await
    }

    async fn ticket_codes(&self, purchase: &Purchase) -> Vec<String> {
        let mut codes: Vec<String> = self.order(purchase).await["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ticket| ticket["code"].as_str().unwrap().to_owned())
            .collect();
        codes.sort();
        codes
    }

    /// Runs the email-sender job once; returns how many messages it sent.
    async fn send_mail(&self) -> u64 {
        run_job(&self.app, "email-sender").await
    }

    /// The outbox as the admin API lists it.
    async fn emails(&self, query: &str) -> Vec<Value> {
        let answer = self
            .app
            .get_as(OPERATOR_TOKEN, &format!("/api/v1/admin/emails?limit=500{query}"))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["data"].as_array().unwrap().clone()
    }

    async fn email_of(&self, purchase: &Purchase, kind: &str) -> Value {
        let emails: Vec<Value> = self
            .emails("")
            .await
            .into_iter()
            .filter(|email| email["order_id"] == purchase.order.as_str() && email["kind"] == kind)
            .collect();
        assert_eq!(emails.len(), 1, "one {kind} message per order: {emails:?}");
        emails[0].clone()
    }

    /// Delivers the payment's `payment_intent.succeeded` event again, signed, `times` times
    /// at once; every delivery is acknowledged.
    async fn redeliver_payment(&self, purchase: &Purchase, times: usize) {
        let events = self.stripe(reqwest::Method::GET, "/v1/events?limit=100", &[]).await;
        let event = events.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "payment_intent.succeeded" && e["data"]["object"]["id"] == purchase.payment_intent)
            .unwrap()
            .to_string();
        let deliveries = (0..times).map(|_| {
            let (app, payload) = (self.app.clone(), event.clone());
            tokio::spawn(async move { app.deliver_stripe_webhook(&payload, SECRET).await })
        });
        for answer in futures::future::join_all(deliveries).await {
            let answer = answer.unwrap();
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    }
}

async fn run_job(app: &TestApp, job: &str) -> u64 {
    let run = app
        .post_as(OPERATOR_TOKEN, &format!("/api/v1/admin/jobs/{job}/run"), json!({}))
        .await;
    assert_eq!(run.status, 200, "{}", run.body);
    assert_eq!(run.body["outcome"], "succeeded", "{}", run.body);
    run.body["affected"].as_u64().unwrap()
}

/// Polls `check` every 50 ms until it answers, for at most [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outcomes(email: &Value) -> Vec<String> {
    email["attempt_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["outcome"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks a received confirmation against the order: recipient, codes, one PNG per ticket.
fn assert_confirmation(received: &Received, codes: &[String], order: &str) {
    assert_eq!(received.rcpt_to, [BUYER], "the envelope's recipient is the buyer");
    assert_eq!(received.mail_from, "tickets@boxoffice.test");
    let mail = read_mail(&received.data);
    assert_eq!(mail.to, BUYER);
    assert!(mail.subject.contains(EVENT_NAME), "{}", mail.subject);
    assert!(mail.message_id.ends_with("@boxoffice.test>"), "{}", mail.message_id);
    assert_eq!(mail.png_parts, codes.len(), "one PNG per ticket");
    assert_eq!(mail.images.len(), codes.len());
    for code in codes {
        assert!(
            mail.text.contains(code.as_str()),
            "the text names {code}: {}",
            mail.text
        );
        assert!(mail.html.contains(code.as_str()), "the HTML names {code}");
        assert!(
            mail.html.contains(&format!("src=\"cid:{code}@boxoffice\"")),
            "the HTML shows {code}'s QR code"
        );
        let (_, png) = mail
            .images
            .iter()
            .find(|(id, _)| *id == format!("<{code}@boxoffice>"))
            .unwrap_or_else(|| panic!("an image for {code}"));
        let decoder = png::Decoder::new(std::io::Cursor::new(png.clone()));
        let info = decoder.read_info().unwrap();
        assert!(info.info().width >= 200, "a scannable size");
    }
    assert!(
        mail.text.contains(order) && mail.text.contains(EVENT_NAME),
        "{}",
        mail.text
    );
    assert!(
        mail.text.contains("Sat 1 June 2030, 19:30 UTC"),
        "the event's date: {}",
        mail.text
    );
    let total = format!("€{}.00", 25 * codes.len());
    assert!(mail.text.contains(&total), "the amount {total}: {}", mail.text);
}

// ----- the tests --------------------------------------------------------------------------

both_engines!(
    a_paid_order_sends_one_confirmation_whatever_the_redeliveries,
    |engine| async move {
        let sink = SmtpSink::start().await;
        let shop = Shop::open(engine, options(None, Some(sink.url()))).await;
        let purchase = shop.buy(3, Some(BUYER)).await;
        let queued = shop.email_of(&purchase, "confirmation").await;
        assert_eq!(
            (queued["status"].as_str(), queued["attempts"].as_i64()),
            (Some("queued"), Some(0))
        );
        assert_eq!(queued["recipient"], BUYER);

        // 30 redeliveries of the payment before the sender runs: still one message queued.
        shop.redeliver_payment(&purchase, 30).await;
        assert_eq!(shop.emails("").await.len(), 1);

        assert_eq!(shop.send_mail().await, 1);
        let codes = shop.ticket_codes(&purchase).await;
        assert_eq!(codes.len(), 3);
        let messages = sink.messages();
        assert_eq!(messages.len(), 1, "exactly one message");
        assert_confirmation(&messages[0], &codes, &purchase.order);

        // More redeliveries and more runs after it was sent: nothing more.
        shop.redeliver_payment(&purchase, 30).await;
        assert_eq!(shop.send_mail().await, 0);
        assert_eq!(shop.send_mail().await, 0);
        assert_eq!(sink.messages().len(), 1);
        let sent = shop.email_of(&purchase, "confirmation").await;
        assert_eq!(
            (sent["status"].as_str(), sent["attempts"].as_i64()),
            (Some("sent"), Some(1))
        );
        assert!(
            sent["sent_at"].is_string() && sent["next_attempt_at"].is_null(),
            "{sent}"
        );
        let attempt = &sent["attempt_history"][0];
        assert_eq!(attempt["outcome"], "sent");
        assert!(
            attempt["reply"]
                .as_str()
                .unwrap()
                .starts_with("250 2.0.0 Ok: queued as SINK1"),
            "the server's reply is recorded: {attempt}"
        );
        let listed = shop.emails("&status=sent").await;
        assert_eq!(listed.len(), 1);
        assert!(shop.emails("&status=queued").await.is_empty());
        assert!(shop.emails("&status=failed").await.is_empty());

        let metrics = shop.app.metrics().await;
        assert!(
            metrics.contains(r#"boxoffice_email_attempts_total{kind="confirmation",outcome="sent"} 1"#),
            "{metrics}"
        );
        assert!(metrics.contains(r#"boxoffice_emails{status="sent"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"boxoffice_emails{status="queued"} 0"#), "{metrics}");
    }
);

both_engines!(a_refund_sends_a_notice_with_the_amount, |engine| async move {
    let sink = SmtpSink::start().await;
    let shop = Shop::open(engine, options(None, Some(sink.url()))).await;
    let purchase = shop.buy(2, Some(BUYER)).await;
    assert_eq!(shop.send_mail().await, 1);
    let refund = shop
        .stripe(
            reqwest::Method::POST,
            "/v1/refunds",
            &[("payment_intent", &purchase.payment_intent)],
        )
        .await;
    assert_eq!(refund.status, 200, "{}", refund.body);
    shop.order_becomes(&purchase, "refunded").await;
    assert_eq!(shop.send_mail().await, 1);
    assert_eq!(shop.send_mail().await, 0);
    let messages = sink.messages();
    assert_eq!(messages.len(), 2, "the confirmation, then the refund notice");
    let notice = read_mail(&messages[1].data);
    assert_eq!(notice.to, BUYER);
    assert!(notice.subject.contains("refunded"), "{}", notice.subject);
    assert!(notice.text.contains(&purchase.order), "{}", notice.text);
    assert!(notice.text.contains("Amount refunded: €50.00"), "{}", notice.text);
    assert!(notice.html.contains("€50.00"), "{}", notice.html);
    assert_eq!(notice.png_parts, 0, "no tickets in a refund notice");
    assert_eq!(shop.email_of(&purchase, "refund").await["status"], "sent");
});

both_engines!(
    an_smtp_outage_is_retried_with_backoff_and_delivered_once,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let sink = SmtpSink::start().await;
        let retry = MailRetry {
            base: Duration::from_secs(60),
            max_wait: Duration::from_secs(10 * 60),
            give_up_after: Duration::from_secs(24 * 60 * 60),
        };
        let shop = Shop::open(
            engine,
            AppOptions {
                mail_retry: retry,
                ..options(Some(clock.clone()), Some(sink.url()))
            },
        )
        .await;
        sink.stop().await;
        let purchase = shop.buy(1, Some(BUYER)).await;

        assert_eq!(shop.send_mail().await, 0, "the server refuses connections");
        let email = shop.email_of(&purchase, "confirmation").await;
        assert_eq!(
            (email["status"].as_str(), email["attempts"].as_i64()),
            (Some("queued"), Some(1))
        );
        assert_eq!(outcomes(&email), ["failed"]);
        let reply = email["attempt_history"][0]["reply"].as_str().unwrap();
        assert!(reply.contains("SMTP"), "the transport's error is recorded: {reply}");
        assert_eq!(email["last_error"].as_str(), Some(reply));

        // Not due again before the backoff has passed.
        assert_eq!(shop.send_mail().await, 0);
        clock.advance(Duration::from_secs(30));
        assert_eq!(shop.send_mail().await, 0);
        assert_eq!(shop.email_of(&purchase, "confirmation").await["attempts"], 1);

        clock.advance(Duration::from_secs(31));
        assert_eq!(shop.send_mail().await, 0);
        let email = shop.email_of(&purchase, "confirmation").await;
        assert_eq!(outcomes(&email), ["failed", "failed"]);

        // Back up: delivered at the next due run, once.
        sink.restart().await;
        clock.advance(Duration::from_secs(60));
        assert_eq!(shop.send_mail().await, 0, "the second backoff (2 min) has not passed");
        clock.advance(Duration::from_secs(61));
        assert_eq!(shop.send_mail().await, 1);
        for _ in 0..3 {
            clock.advance(Duration::from_secs(15 * 60));
            assert_eq!(shop.send_mail().await, 0);
        }
        let messages = sink.messages();
        assert_eq!(messages.len(), 1, "delivered exactly once");
        assert_confirmation(&messages[0], &shop.ticket_codes(&purchase).await, &purchase.order);
        let email = shop.email_of(&purchase, "confirmation").await;
        assert_eq!(email["status"], "sent");
        assert_eq!(outcomes(&email), ["failed", "failed", "sent"]);
        let metrics = shop.app.metrics().await;
        assert!(
            metrics.contains(r#"boxoffice_email_attempts_total{kind="confirmation",outcome="failed"} 2"#),
            "{metrics}"
        );
    }
);

both_engines!(
    a_message_undeliverable_past_the_give_up_time_fails_once_is_recorded_and_alerted,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let sink = SmtpSink::start().await;
        let alerts = AlertReceiver::start().await;
        let retry = MailRetry {
            base: Duration::from_secs(60),
            max_wait: Duration::from_secs(5 * 60),
            give_up_after: Duration::from_secs(30 * 60),
        };
        let shop = Shop::open(
            engine,
            AppOptions {
                mail_retry: retry,
                alert_webhook_url: Some(alerts.url.clone()),
                alert_webhook_allow_private: true,
                alert_retry: AlertRetry::default(),
                ..options(Some(clock.clone()), Some(sink.url()))
            },
        )
        .await;
        sink.stop().await;
        let purchase = shop.buy(2, Some(BUYER)).await;

        // Down for longer than the give-up time: retried until then, then failed.
        let mut runs = 0;
        loop {
            assert_eq!(shop.send_mail().await, 0);
            let email = shop.email_of(&purchase, "confirmation").await;
            if email["status"] == "failed" {
                break;
            }
            assert_eq!(email["status"], "queued");
            runs += 1;
            assert!(runs < 50, "never given up: {email}");
            clock.advance(Duration::from_secs(5 * 60 + 1));
        }
        let failed = shop.email_of(&purchase, "confirmation").await;
        let attempts = outcomes(&failed);
        assert!(
            attempts.len() >= 3 && attempts.iter().all(|o| o == "failed"),
            "{failed}"
        );
        assert_eq!(shop.emails("&status=failed").await.len(), 1);
        assert!(shop.emails("&status=queued").await.is_empty());

        // Recorded in the error store under component email, and alerted once.
        let group = eventually("the give-up in the error store", || async {
            let answer = shop.app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
            answer.body["data"]
                .as_array()?
                .iter()
                .find(|group| group["component"] == "email")
                .cloned()
        })
        .await;
        assert_eq!(
            (group["scope"].as_str(), group["count"].as_i64()),
            (Some("server"), Some(1))
        );
        assert_eq!(group["severity"], "error");
        let title = group["title"].as_str().unwrap();
        assert!(
            title.contains("confirmation") && title.contains("could not be sent"),
            "{title}"
        );
        assert!(
            !title.contains(BUYER),
            "the buyer's address stays out of the error store: {title}"
        );
        assert_eq!(run_job(&shop.app, "alert-sender").await, 1);
        assert_eq!(run_job(&shop.app, "alert-sender").await, 0);
        let posts = alerts.posts();
        assert_eq!(posts.len(), 1, "alerted once: {posts:?}");
        assert!(
            posts[0]["text"].as_str().unwrap().contains("component email"),
            "{}",
            posts[0]
        );
        // Nothing else was recorded as a failure: outages are retried quietly until the end.
        let groups = shop.app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
        assert_eq!(groups.body["data"].as_array().unwrap().len(), 1, "{}", groups.body);

        // A failed message stays failed: no more attempts by the job.
        clock.advance(Duration::from_secs(60 * 60));
        assert_eq!(shop.send_mail().await, 0);
        assert_eq!(
            outcomes(&shop.email_of(&purchase, "confirmation").await).len(),
            attempts.len()
        );

        // The operator retries it once the server is back: sent, once.
        sink.restart().await;
        let retried = shop
            .app
            .post_as(
                OPERATOR_TOKEN,
                &format!("/api/v1/admin/emails/{}/retry", failed["id"].as_str().unwrap()),
                json!({}),
            )
            .await;
        assert_eq!(retried.status, 200, "{}", retried.body);
        assert_eq!(retried.body["status"], "queued");
        assert_eq!(shop.send_mail().await, 1);
        assert_eq!(shop.send_mail().await, 0);
        assert_eq!(sink.messages().len(), 1);
        assert_confirmation(
            &sink.messages()[0],
            &shop.ticket_codes(&purchase).await,
            &purchase.order,
        );
        let email = shop.email_of(&purchase, "confirmation").await;
        assert_eq!(email["status"], "sent");
        // Retrying a sent message changes nothing.
        let again = shop
            .app
            .post_as(
                OPERATOR_TOKEN,
                &format!("/api/v1/admin/emails/{}/retry", failed["id"].as_str().unwrap()),
                json!({}),
            )
            .await;
        assert_eq!((again.status, again.body["status"].as_str()), (200, Some("sent")));
        assert_eq!(shop.send_mail().await, 0);
        assert_eq!(sink.messages().len(), 1);
    }
);

both_engines!(
    bad_addresses_are_refused_at_hold_time_and_orders_without_one_send_nothing,
    |engine| async move {
        let sink = SmtpSink::start().await;
        let shop = Shop::open(engine, options(None, Some(sink.url()))).await;
        for bad in ["not-an-address", "ana@localhost", "ana @example.org", "@example.org"] {
            let refused = shop.hold(1, Some(bad)).await;
            assert_eq!(
                (refused.status, refused.code()),
                (422, "invalid_request"),
                "{bad}: {}",
                refused.body
            );
        }
        let stats = shop
            .app
            .get_as(OPERATOR_TOKEN, "/api/v1/admin/stats/reservations")
            .await;
        assert_eq!(stats.body["active"], 0, "nothing was held");
        // Paid without an address: nothing to send.
        let purchase = shop.buy(1, None).await;
        assert_eq!(shop.order(&purchase).await["status"], "paid");
        assert_eq!(shop.send_mail().await, 0);
        assert!(shop.emails("").await.is_empty());
        assert!(sink.messages().is_empty());
        assert_eq!(sink.connections(), 0, "the mail server was never contacted");
    }
);

both_engines!(
    smtp_without_tls_none_requires_starttls_and_sends_nothing_in_clear_text,
    |engine| async move {
        let sink = SmtpSink::start().await;
        // The sink offers no STARTTLS: an smtp:// URL without tls=none must not send.
        let url = format!("smtp://{}", sink.addr);
        let shop = Shop::open(engine, options(None, Some(url))).await;
        let purchase = shop.buy(1, Some(BUYER)).await;
        assert_eq!(shop.send_mail().await, 0);
        let email = shop.email_of(&purchase, "confirmation").await;
        assert_eq!(
            (email["status"].as_str(), email["attempts"].as_i64()),
            (Some("queued"), Some(1))
        );
        let reply = email["attempt_history"][0]["reply"].as_str().unwrap();
        assert!(reply.to_ascii_lowercase().contains("tls"), "{reply}");
        assert!(sink.connections() >= 1, "it did connect");
        assert!(sink.messages().is_empty(), "and sent nothing");
    }
);

both_engines!(
    without_an_smtp_url_messages_are_written_to_the_mail_folder,
    |engine| async move {
        let shop = Shop::open(engine, options(None, None)).await;
        let purchase = shop.buy(2, Some(BUYER)).await;
        assert_eq!(shop.send_mail().await, 1);
        assert_eq!(shop.send_mail().await, 0);
        let email = shop.email_of(&purchase, "confirmation").await;
        let id = email["id"].as_str().unwrap();
        let files: Vec<_> = std::fs::read_dir(&shop.app.mail_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            files,
            [format!("{id}.eml")],
            "one whole file per message, no temporary left"
        );
        let path = shop.app.mail_dir.join(&files[0]);
        let reply = email["attempt_history"][0]["reply"].as_str().unwrap();
        assert_eq!(reply, format!("written to {}", path.display()));
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(raw.contains("\r\n"), "RFC 5322 line ends");
        let received = Received {
            mail_from: "tickets@boxoffice.test".into(),
            rcpt_to: vec![BUYER.into()],
            data: raw,
        };
        assert_confirmation(&received, &shop.ticket_codes(&purchase).await, &purchase.order);
    }
);

both_engines!(the_outbox_is_the_operators_only, |engine| async move {
    let shop = Shop::open(engine, options(None, None)).await;
    let org = shop.app.create_organization("Other").await;
    let key = shop
        .app
        .post_as(
            OPERATOR_TOKEN,
            &format!("/api/v1/organizations/{org}/api-keys"),
            json!({}),
        )
        .await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    let purchase = shop.buy(1, Some(BUYER)).await;
    let id = shop.email_of(&purchase, "confirmation").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = shop.app.get_as(&key, "/api/v1/admin/emails").await;
    assert_eq!((listed.status, listed.code()), (404, "not_found"));
    let retried = shop
        .app
        .post_as(&key, &format!("/api/v1/admin/emails/{id}/retry"), json!({}))
        .await;
    assert_eq!((retried.status, retried.code()), (404, "not_found"));
    assert_eq!(shop.app.get("/api/v1/admin/emails").await.status, 401);
    let unknown = shop
        .app
        .post_as(OPERATOR_TOKEN, "/api/v1/admin/emails/eml_nope/retry", json!({}))
        .await;
    assert_eq!(unknown.status, 404);
    let bad_status = shop
        .app
        .get_as(OPERATOR_TOKEN, "/api/v1/admin/emails?status=bounced")
        .await;
    assert_eq!(bad_status.status, 400);
    let openapi = shop.app.get("/api/openapi.json").await;
    assert!(openapi.body["paths"]["/api/v1/admin/emails"].is_object());
    assert!(openapi.body["paths"]["/api/v1/admin/emails/{email_id}/retry"].is_object());
});

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sending_at_once_send_each_message_once() {
    let sink = SmtpSink::start().await;
    let db = TestDatabase::new(Engine::Postgres).await;
    let first = Shop::on(&db, options(None, Some(sink.url()))).await;
    let second = spawn_app(&db, options(None, Some(sink.url()))).await;
    let second = Arc::new(second);
    // More than one run's batch (20), so that runs overlap on several claims.
    let mut orders = Vec::new();
    for _ in 0..45 {
        orders.push(first.buy(1, Some(BUYER)).await.order);
    }
    let runs = (0..8).map(|i| {
        let app = if i % 2 == 0 { first.app.clone() } else { second.clone() };
        tokio::spawn(async move { run_job(&app, "email-sender").await })
    });
    let mut sent: u64 = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    // Whatever a run left claimed (none expected) is not lost: keep running until done.
    for _ in 0..5 {
        sent += run_job(&second, "email-sender").await;
    }
    assert_eq!(sent, 45, "each message sent by exactly one run");
    let messages = sink.messages();
    assert_eq!(messages.len(), 45, "each message received once");
    let mut ids: Vec<String> = messages.iter().map(|m| read_mail(&m.data).message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 45, "45 distinct messages");
    let mut named: Vec<String> = messages
        .iter()
        .map(|m| {
            let text = read_mail(&m.data).text;
            orders
                .iter()
                .find(|order| text.contains(order.as_str()))
                .unwrap()
                .clone()
        })
        .collect();
    named.sort();
    orders.sort();
    assert_eq!(named, orders, "one message per order");
}
