//! The buyer's pages over HTTP, without a browser, on both engines (SPEC §8): the events
//! list, the event page, reserving, checkout with test cards against the built-in Stripe
//! double (a declined card, a retry, a double submit), the order page waiting for the
//! webhook, leaving checkout (released, or kept while a payment is under way), an expired
//! hold, security headers, error pages and escaping.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use boxoffice_core::ManualClock;
use common::{AppOptions, Engine, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use serde_json::{Value, json};

const STRIPE_KEY: &str = "sk_test_pages_buyer_suite";

/// An answer as a browser would see it: status, headers and the HTML.
struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The `Location` of a redirect.
    fn location(&self) -> &str {
        self.header("location")
    }

    /// The text content of every element with `data-testid="{id}"` (tags stripped),
    /// outside `<template>` elements (inert until a script uses them).
    fn texts(&self, id: &str) -> Vec<String> {
        let html = without_templates(&self.html);
        let marker = format!("data-testid=\"{id}\"");
        let mut found = Vec::new();
        let mut rest = html.as_str();
        while let Some(at) = rest.find(&marker) {
            rest = &rest[at + marker.len()..];
            let open_end = rest.find('>').unwrap();
            let body = &rest[open_end + 1..];
            // Up to the first closing tag: the elements used as hooks hold text, or text in
            // a few inline tags.
            let mut text = String::new();
            let mut in_tag = false;
            let mut depth = 0usize;
            for (i, c) in body.char_indices() {
                if c == '<' {
                    if body[i..].starts_with("</") {
                        if depth == 0 {
                            break;
                        }
                        depth -= 1;
                    } else {
                        depth += 1;
                    }
                    in_tag = true;
                } else if c == '>' {
                    in_tag = false;
                } else if !in_tag {
                    text.push(c);
                }
            }
            found.push(text.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        found
    }

    fn text(&self, id: &str) -> String {
        let texts = self.texts(id);
        assert_eq!(texts.len(), 1, "one [data-testid={id}] expected in:\n{}", self.html);
        texts[0].clone()
    }

    /// Whether an element with this test id is on the page (outside templates).
    fn has(&self, id: &str) -> bool {
        without_templates(&self.html).contains(&format!("data-testid=\"{id}\""))
    }

    /// The value of `attribute` on the first element with `data-testid="{id}"`.
    fn attr(&self, id: &str, attribute: &str) -> String {
        let html = without_templates(&self.html);
        let marker = format!("data-testid=\"{id}\"");
        let at = html
            .find(&marker)
            .unwrap_or_else(|| panic!("no {id} in:\n{}", self.html));
        let start = html[..at].rfind('<').unwrap();
        let end = at + html[at..].find('>').unwrap();
        let tag = &html[start..end];
        let key = format!(" {attribute}=\"");
        let value_at = tag.find(&key).unwrap_or_else(|| panic!("no {attribute} in {tag}")) + key.len();
        tag[value_at..value_at + tag[value_at..].find('"').unwrap()].to_owned()
    }
}

fn without_templates(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<template") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("</template>").unwrap();
        rest = &rest[start + end + "</template>".len()..];
    }
    out.push_str(rest);
    out
}

struct Shop {
    app: TestApp,
    /// Follows no redirects, as the tests look at each answer.
    browser: reqwest::Client,
    event: String,
    general: String,
    vip: String,
    _db: TestDatabase,
}

async fn shop_with(engine: Engine, options: AppOptions) -> Shop {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, options).await;
    let org = app.create_organization("Pages Org").await;
    let (event, tts) = app
        .create_event_with(
            &org,
            json!({ "name": "Spring Gala", "hold_seconds": 600 }),
            &[("General admission", 2_500, 10), ("VIP", 9_000, 5)],
        )
        .await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Shop {
        app,
        browser,
        event,
        general: tts[0].clone(),
        vip: tts[1].clone(),
        _db: db,
    }
}

async fn shop(engine: Engine) -> Shop {
    shop_with(
        engine,
        AppOptions {
            stripe_secret_key: Some(STRIPE_KEY.into()),
            ..Default::default()
        },
    )
    .await
}

impl Shop {
    async fn page(&self, request: reqwest::RequestBuilder) -> Page {
        let response = request.header("accept", "text/html").send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let html = response.text().await.unwrap();
        Page { status, headers, html }
    }

    async fn get(&self, path: &str) -> Page {
        self.page(self.browser.get(self.app.url(path))).await
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.page(self.browser.post(self.app.url(path)).form(form)).await
    }

    /// Reserves through the event page's form; returns the hold id.
    async fn reserve(&self, general: u32, vip: u32) -> String {
        let page = self.reserve_form(general, vip).await;
        assert_eq!(page.status, 303, "{}", page.html);
        let hold = page.location().strip_prefix("/checkout/").unwrap().to_owned();
        assert!(hold.starts_with("hold_"), "{hold}");
        hold
    }

    async fn reserve_form(&self, general: u32, vip: u32) -> Page {
        let (general, vip) = (general.to_string(), vip.to_string());
        self.post_form(
            &format!("/events/{}/reserve", self.event),
            &[
                (&format!("qty_{}", self.general), &general),
                (&format!("qty_{}", self.vip), &vip),
                ("customer_email", ""),
            ],
        )
        .await
    }

    async fn pay(&self, hold: &str, card: &str) -> Page {
        self.post_form(&format!("/checkout/{hold}/pay"), &[("card_number", card)])
            .await
    }

    async fn leave(&self, hold: &str) -> u16 {
        self.browser
            .post(self.app.url(&format!("/checkout/{hold}/leave")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `[data-testid=available]` of a ticket type on the event page.
    async fn available_on_page(&self, ticket_type: &str) -> i64 {
        let page = self.get(&format!("/events/{}", self.event)).await;
        assert_eq!(page.status, 200, "{}", page.html);
        let row = page
            .html
            .find(&format!("data-ticket-type-id=\"{ticket_type}\""))
            .unwrap();
        let row_page = Page {
            status: 200,
            headers: reqwest::header::HeaderMap::new(),
            html: page.html[row..].to_owned(),
        };
        row_page.texts("available")[0].parse().unwrap()
    }

    async fn hold_status(&self, hold: &str) -> String {
        let answer = self.app.get(&format!("/api/v1/reservations/{hold}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["status"].as_str().unwrap().to_owned()
    }

    async fn order(&self, order: &str) -> Value {
        let answer = self.app.get(&format!("/api/v1/orders/{order}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    /// Polls the JSON order until its status is `status` (at most 10 s).
    async fn wait_for_order_status(&self, order: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = self.order(order).await;
            if body["status"] == status {
                return body;
            }
            assert!(Instant::now() < deadline, "order {order} never became {status}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The double's PaymentIntents for an order, through its Stripe list endpoint.
    async fn payment_intents_of(&self, order: &str) -> Vec<Value> {
        let answer = self
            .app
            .send(
                self.app
                    .client
                    .get(self.app.url("/_fake-stripe/v1/payment_intents?limit=100"))
                    .bearer_auth(STRIPE_KEY),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pi| pi["metadata"]["order_id"] == order)
            .cloned()
            .collect()
    }

    /// The double's PaymentIntents for a hold.
    async fn payment_intents_of_hold(&self, hold: &str) -> Vec<Value> {
        let answer = self
            .app
            .send(
                self.app
                    .client
                    .get(self.app.url("/_fake-stripe/v1/payment_intents?limit=100"))
                    .bearer_auth(STRIPE_KEY),
            )
            .await;
        answer.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pi| pi["metadata"]["reservation_id"] == hold)
            .cloned()
            .collect()
    }

    async fn fault(&self, fault: &str, count: u32) {
        let answer = self
            .app
            .post(
                "/_fake-stripe/_control/faults",
                json!({ "fault": fault, "count": count }),
            )
            .await;
        assert!(answer.status < 300, "{}", answer.body);
    }
}

fn order_of(location: &str) -> String {
    let order = location
        .strip_prefix("/orders/")
        .unwrap_or_else(|| panic!("{location}"));
    assert!(order.starts_with("ord_"), "{order}");
    order.to_owned()
}

both_engines!(
    the_whole_purchase_works_from_pages_and_pays_once_after_a_declined_card,
    |engine| async move {
        let shop = shop(engine).await;

        // The events list links to the event.
        let list = shop.get("/").await;
        assert_eq!(list.status, 200, "{}", list.html);
        assert!(list.header("content-type").starts_with("text/html"));
        assert_eq!(list.attr("event-link", "href"), format!("/events/{}", shop.event));
        assert_eq!(list.text("event-link"), "Spring Gala");

        // The event page shows each ticket type with its availability, a labelled quantity
        // input, an e-mail field and the reserve button.
        let event = shop.get(&format!("/events/{}", shop.event)).await;
        assert_eq!(event.status, 200, "{}", event.html);
        assert_eq!(event.texts("ticket-type").len(), 2);
        assert_eq!(event.texts("available"), vec!["10", "5"]);
        for tt in [&shop.general, &shop.vip] {
            assert!(event.html.contains(&format!("data-ticket-type-id=\"{tt}\"")));
            assert!(event.html.contains(&format!("name=\"qty_{tt}\"")));
            assert!(event.html.contains(&format!("<label for=\"qty-{tt}\">")));
            assert!(event.html.contains(&format!("id=\"qty-{tt}\"")));
        }
        assert!(event.html.contains("€25.00") && event.html.contains("€90.00"));
        assert!(event.html.contains("name=\"customer_email\""));
        assert!(event.has("reserve") && event.has("message"));

        // Reserving redirects to checkout; the tickets are held.
        let hold = shop.reserve(2, 0).await;
        assert_eq!(shop.available_on_page(&shop.general).await, 8);
        assert_eq!(shop.hold_status(&hold).await, "active");

        // Checkout: the amount, the countdown with the server's expiry and clock, the form.
        let checkout = shop.get(&format!("/checkout/{hold}")).await;
        assert_eq!(checkout.status, 200, "{}", checkout.html);
        assert_eq!(checkout.header("cache-control"), "no-store");
        assert!(checkout.html.contains(&format!("data-hold-id=\"{hold}\"")));
        assert_eq!(checkout.text("amount"), "€50.00");
        let countdown = checkout.text("countdown");
        assert!(["10:00", "9:59", "9:58"].contains(&countdown.as_str()), "{countdown}");
        let api_hold = shop.app.get(&format!("/api/v1/reservations/{hold}")).await.body;
        assert_eq!(checkout.attr("countdown", "data-expires-at"), api_hold["expires_at"]);
        let server_now: i64 = checkout.attr("countdown", "data-server-now").parse().unwrap();
        assert!(server_now > 1_700_000_000_000);
        assert_eq!(checkout.attr("card-number", "name"), "card_number");
        assert_eq!(checkout.attr("card-number", "autocomplete"), "cc-number");
        assert_eq!(checkout.attr("card-number", "inputmode"), "numeric");
        assert!(checkout.html.contains("<label for=\"card-number\">"));
        assert!(checkout.has("pay"));
        assert!(!checkout.has("hold-expired"), "an active hold is not expired");
        assert!(!checkout.has("payment-error"));

        // A declined card: a clear message, the hold still active, no order paid.
        let declined = shop.pay(&hold, "4000 0000 0000 0002").await;
        assert_eq!(declined.status, 402, "{}", declined.html);
        assert!(declined.text("payment-error").contains("declined"), "{}", declined.html);
        assert!(declined.has("pay"), "the buyer can try again");
        assert_eq!(shop.hold_status(&hold).await, "active");

        // Not a test card: told which to use, nothing attempted.
        let wrong = shop.pay(&hold, "1234 5678").await;
        assert_eq!(wrong.status, 422, "{}", wrong.html);
        assert!(wrong.text("payment-error").contains("4242 4242 4242 4242"));

        // The good card: to the order page.
        let paid = shop.pay(&hold, "4242 4242 4242 4242").await;
        assert_eq!(paid.status, 303, "{}", paid.html);
        let order = order_of(paid.location());

        // The order page waits for the webhook, then shows two tickets with QR codes.
        let deadline = Instant::now() + Duration::from_secs(10);
        let confirmed = loop {
            let page = shop.get(&format!("/orders/{order}")).await;
            assert_eq!(page.status, 200, "{}", page.html);
            assert_eq!(page.header("cache-control"), "no-store");
            let status = page.text("order-status");
            if page.texts("ticket-code").len() == 2 {
                break page;
            }
            assert_eq!(status, "pending", "{}", page.html);
            assert!(page.html.contains("<meta http-equiv=\"refresh\" content=\"1\">"));
            assert!(page.html.contains("Waiting for the payment confirmation"));
            assert!(Instant::now() < deadline, "the order page never showed the tickets");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(confirmed.text("order-status"), "paid");
        assert!(!confirmed.html.contains("http-equiv=\"refresh\""));
        let codes = confirmed.texts("ticket-code");
        let qr_count = confirmed.html.matches("data-testid=\"ticket-qr\"").count();
        assert_eq!(qr_count, 2);
        assert!(
            confirmed
                .attr("ticket-qr", "src")
                .starts_with("data:image/svg+xml;base64,")
        );
        assert!(
            confirmed
                .html
                .contains(&format!("alt=\"QR code for ticket {}\"", codes[0]))
        );

        // The JSON API agrees: paid once, with those tickets.
        let body = shop.wait_for_order_status(&order, "paid").await;
        let mut api_codes: Vec<String> = body["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["code"].as_str().unwrap().to_owned())
            .collect();
        let mut page_codes = codes.clone();
        api_codes.sort();
        page_codes.sort();
        assert_eq!(api_codes, page_codes);
        assert_eq!(shop.hold_status(&hold).await, "completed");
        assert_eq!(shop.app.inventory(&shop.event, &shop.general).await, (2, 0, 8));
        let intents = shop.payment_intents_of(&order).await;
        assert_eq!(intents.len(), 1, "one PaymentIntent per order: {intents:?}");
        assert_eq!(intents[0]["status"], "succeeded");
        assert_eq!(intents[0]["amount_received"], 5_000);

        // Paying again, or coming back to checkout, leads to the order; nothing is charged.
        let again = shop.pay(&hold, "4242 4242 4242 4242").await;
        assert_eq!(again.status, 303, "{}", again.html);
        assert_eq!(again.location(), format!("/orders/{order}"));
        let back = shop.get(&format!("/checkout/{hold}")).await;
        assert_eq!(back.status, 303);
        assert_eq!(back.location(), format!("/orders/{order}"));
        assert_eq!(shop.payment_intents_of(&order).await.len(), 1);
    }
);

both_engines!(a_double_submitted_payment_charges_once, |engine| async move {
    let shop = std::sync::Arc::new(shop(engine).await);
    let hold = shop.reserve(1, 1).await;
    let attempts: Vec<_> = (0..4)
        .map(|_| {
            let shop = shop.clone();
            let hold = hold.clone();
            tokio::spawn(async move { shop.pay(&hold, "4242424242424242").await })
        })
        .collect();
    let mut orders = Vec::new();
    for attempt in attempts {
        let page = attempt.await.unwrap();
        // Each answer leads to the order, or says the payment is being processed.
        match page.status {
            303 => orders.push(order_of(page.location())),
            409 => assert!(page.html.contains("already being processed"), "{}", page.html),
            other => panic!("unexpected {other}: {}", page.html),
        }
    }
    assert!(!orders.is_empty());
    orders.dedup();
    assert_eq!(orders.len(), 1, "{orders:?}");
    let order = &orders[0];
    let body = shop.wait_for_order_status(order, "paid").await;
    assert_eq!(body["tickets"].as_array().unwrap().len(), 2);
    let intents = shop.payment_intents_of(order).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["amount_received"], 11_500);
});

both_engines!(
    reserving_refuses_sold_out_and_invalid_choices_holding_nothing,
    |engine| async move {
        let shop = shop(engine).await;

        // More than the per-order maximum (10).
        let too_many = shop.reserve_form(11, 0).await;
        assert_eq!(too_many.status, 422, "{}", too_many.html);
        assert!(
            too_many
                .text("message")
                .contains("At most 10 tickets of General admission per order"),
            "{}",
            too_many.html
        );

        let nothing = shop.reserve_form(0, 0).await;
        assert_eq!(nothing.status, 422, "{}", nothing.html);
        assert!(nothing.text("message").contains("Choose at least one ticket"));

        // Take four of the five VIP seats, then ask for two more: sold out, nothing held.
        shop.reserve(0, 4).await;
        let sold_out = shop.reserve_form(1, 2).await;
        assert_eq!(sold_out.status, 409, "{}", sold_out.html);
        assert!(sold_out.text("message").contains("VIP"), "{}", sold_out.html);
        assert!(sold_out.text("message").contains("Nothing was reserved"));
        // The page shows what is left now and keeps the buyer's choice.
        assert_eq!(sold_out.texts("available"), vec!["10", "1"]);
        assert!(sold_out.html.contains(&format!("name=\"qty_{}\"", shop.vip)));
        assert!(sold_out.html.contains("value=\"2\""));
        assert_eq!(shop.app.inventory(&shop.event, &shop.general).await, (0, 0, 10));
        assert_eq!(shop.app.inventory(&shop.event, &shop.vip).await, (0, 4, 1));

        let garbage = shop
            .post_form(
                &format!("/events/{}/reserve", shop.event),
                &[(&format!("qty_{}", shop.general), "two"), ("customer_email", "")],
            )
            .await;
        assert_eq!(garbage.status, 422);
        assert!(garbage.text("message").contains("whole number"));

        let bad_email = shop
            .post_form(
                &format!("/events/{}/reserve", shop.event),
                &[
                    (&format!("qty_{}", shop.general), "1"),
                    ("customer_email", "not-an-address"),
                ],
            )
            .await;
        assert_eq!(bad_email.status, 422);
        assert!(bad_email.text("message").contains("e-mail"));

        let foreign = shop
            .post_form(
                &format!("/events/{}/reserve", shop.event),
                &[("qty_tt_00000000000000000000000000000000", "1")],
            )
            .await;
        assert_eq!(foreign.status, 422);
        assert_eq!(shop.app.inventory(&shop.event, &shop.general).await, (0, 0, 10));

        let unknown = shop.reserve_form_for("ev_00000000000000000000000000000000").await;
        assert_eq!(unknown.status, 404);
    }
);

impl Shop {
    async fn reserve_form_for(&self, event: &str) -> Page {
        self.post_form(
            &format!("/events/{event}/reserve"),
            &[(&format!("qty_{}", self.general), "1")],
        )
        .await
    }
}

both_engines!(
    leaving_checkout_releases_a_fresh_hold_but_never_one_being_paid,
    |engine| async move {
        let shop = shop(engine).await;

        // A fresh hold: released, and checkout then shows the expired state.
        let fresh = shop.reserve(3, 0).await;
        assert_eq!(shop.available_on_page(&shop.general).await, 7);
        assert_eq!(shop.leave(&fresh).await, 204);
        assert_eq!(shop.available_on_page(&shop.general).await, 10);
        assert_eq!(shop.hold_status(&fresh).await, "cancelled");
        assert_eq!(shop.leave(&fresh).await, 204, "leaving twice is harmless");
        let gone = shop.get(&format!("/checkout/{fresh}")).await;
        assert_eq!(gone.status, 200);
        assert!(gone.has("hold-expired"), "{}", gone.html);
        assert_eq!(gone.attr("try-again", "href"), format!("/events/{}", shop.event));
        assert!(!gone.has("pay"));

        // Paid: kept (leave right after paying, before or after the webhook).
        let paid = shop.reserve(1, 0).await;
        let answer = shop.pay(&paid, "4242 4242 4242 4242").await;
        assert_eq!(answer.status, 303, "{}", answer.html);
        assert_eq!(shop.leave(&paid).await, 204);
        let order = order_of(answer.location());
        shop.wait_for_order_status(&order, "paid").await;
        assert_eq!(shop.hold_status(&paid).await, "completed");
        assert_eq!(shop.leave(&paid).await, 204);
        assert_eq!(shop.app.inventory(&shop.event, &shop.general).await, (1, 0, 9));

        // A payment that succeeded at Stripe whose webhook has not arrived: under way, kept.
        shop.fault("drop_webhooks", 1).await;
        let in_flight = shop.reserve(2, 0).await;
        let answer = shop.pay(&in_flight, "4242 4242 4242 4242").await;
        assert_eq!(answer.status, 303, "{}", answer.html);
        let order = order_of(answer.location());
        assert_eq!(shop.leave(&in_flight).await, 204);
        assert_eq!(shop.hold_status(&in_flight).await, "active");
        assert_eq!(shop.order(&order).await["status"], "pending");
        assert_eq!(shop.app.inventory(&shop.event, &shop.general).await, (1, 2, 7));
        let waiting = shop.get(&format!("/orders/{order}")).await;
        assert_eq!(waiting.text("order-status"), "pending");
        // Checkout sends the buyer to the order page rather than offering to pay again.
        let back = shop.get(&format!("/checkout/{in_flight}")).await;
        assert_eq!(back.status, 303);
        assert_eq!(back.location(), format!("/orders/{order}"));

        // A declined card, then leaving: nothing is under way, so the hold is released.
        let declined = shop.reserve(0, 2).await;
        let answer = shop.pay(&declined, "4000000000000002").await;
        assert_eq!(answer.status, 402, "{}", answer.html);
        assert_eq!(shop.app.inventory(&shop.event, &shop.vip).await, (0, 2, 3));
        assert_eq!(shop.leave(&declined).await, 204);
        assert_eq!(shop.hold_status(&declined).await, "cancelled");
        assert_eq!(shop.app.inventory(&shop.event, &shop.vip).await, (0, 0, 5));

        // Unknown holds.
        assert_eq!(shop.leave("hold_00000000000000000000000000000000").await, 404);
        assert_eq!(shop.leave("nonsense").await, 404);
    }
);

both_engines!(
    a_failed_order_retried_with_a_good_card_is_paid_and_shown_as_waiting_meanwhile,
    |engine| async move {
        let shop = shop(engine).await;
        let hold = shop.reserve(1, 0).await;
        let declined = shop.pay(&hold, "4000000000000002").await;
        assert_eq!(declined.status, 402);
        // The failure webhook arrives: the order is `failed`, the hold stays for a retry.
        let intents = shop.payment_intents_of_hold(&hold).await;
        assert_eq!(intents.len(), 1);
        let order = intents[0]["metadata"]["order_id"].as_str().unwrap().to_owned();
        shop.wait_for_order_status(&order, "failed").await;
        assert_eq!(shop.hold_status(&hold).await, "active");
        let failed = shop.get(&format!("/orders/{order}")).await;
        assert_eq!(failed.text("order-status"), "failed");
        assert!(
            failed.html.contains(&format!("href=\"/checkout/{hold}\"")),
            "a way to try again"
        );

        // Pay with the good card, its webhook dropped: our records still say failed while
        // Stripe says succeeded, and the order page shows it as waiting.
        shop.fault("drop_webhooks", 1).await;
        let paid = shop.pay(&hold, "4242424242424242").await;
        assert_eq!(paid.status, 303, "{}", paid.html);
        assert_eq!(order_of(paid.location()), order);
        assert_eq!(shop.order(&order).await["status"], "failed");
        let page = shop.get(&format!("/orders/{order}")).await;
        assert_eq!(page.text("order-status"), "pending", "{}", page.html);
        assert!(page.html.contains("http-equiv=\"refresh\""));
        assert_eq!(shop.leave(&hold).await, 204);
        assert_eq!(
            shop.hold_status(&hold).await,
            "active",
            "a paid PaymentIntent keeps the hold"
        );

        // The reconciler finds the missed event: paid once.
        let run = shop
            .app
            .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/webhook-reconciler/run", json!({}))
            .await;
        assert!(run.status < 300, "{}", run.body);
        shop.wait_for_order_status(&order, "paid").await;
        let page = shop.get(&format!("/orders/{order}")).await;
        assert_eq!(page.text("order-status"), "paid");
        assert_eq!(page.texts("ticket-code").len(), 1);
        let intents = shop.payment_intents_of(&order).await;
        assert_eq!(intents.len(), 1);
        assert_eq!(intents[0]["status"], "succeeded");
    }
);

both_engines!(
    an_expired_hold_shows_the_expired_state_with_a_way_to_try_again,
    |engine| async move {
        let clock = ManualClock::starting_now();
        let shop = shop_with(
            engine,
            AppOptions {
                clock: Some(clock),
                stripe_secret_key: Some(STRIPE_KEY.into()),
                ..Default::default()
            },
        )
        .await;
        let hold = shop.reserve(2, 0).await;
        shop.app.advance(Duration::from_secs(5 * 60));
        let halfway = shop.get(&format!("/checkout/{hold}")).await;
        assert_eq!(halfway.text("countdown"), "5:00");
        // The expired state is only a template while the hold lasts.
        assert!(halfway.html.contains("<template id=\"hold-expired-template\">"));
        assert!(!halfway.has("hold-expired"));

        shop.app.advance(Duration::from_secs(5 * 60 + 1));
        let expired = shop.get(&format!("/checkout/{hold}")).await;
        assert_eq!(expired.status, 200, "{}", expired.html);
        assert!(expired.has("hold-expired"), "{}", expired.html);
        assert!(expired.text("hold-expired").contains("Your reservation has expired"));
        assert_eq!(expired.attr("try-again", "href"), format!("/events/{}", shop.event));
        assert!(!expired.has("pay") && !expired.has("countdown"));
        assert!(!expired.html.contains("<template"));

        // Paying now is refused with the same state; nothing is created at Stripe.
        let late = shop.pay(&hold, "4242 4242 4242 4242").await;
        assert_eq!(late.status, 409, "{}", late.html);
        assert!(late.has("hold-expired"));
        assert_eq!(shop.available_on_page(&shop.general).await, 10);

        // Trying again works.
        let again = shop.reserve(2, 0).await;
        assert_ne!(again, hold);
        assert_eq!(shop.get(&format!("/checkout/{again}")).await.text("countdown"), "10:00");
    }
);

both_engines!(
    without_test_mode_checkout_says_stripe_js_is_needed,
    |engine| async move {
        // A live key at an address nothing answers: no test cards, and nothing loaded.
        let shop = shop_with(
            engine,
            AppOptions {
                stripe_api_base: Some("http://127.0.0.1:9".into()),
                stripe_secret_key: Some("sk_live_not_a_real_key".into()),
                ..Default::default()
            },
        )
        .await;
        let hold = shop.reserve(1, 0).await;
        let checkout = shop.get(&format!("/checkout/{hold}")).await;
        assert_eq!(checkout.status, 200, "{}", checkout.html);
        assert!(checkout.html.contains("Stripe.js"), "{}", checkout.html);
        assert!(!checkout.has("card-number") && !checkout.has("pay"));
        assert!(checkout.has("countdown"));
        let pay = shop.pay(&hold, "4242424242424242").await;
        assert_eq!(pay.status, 422);
        assert!(pay.text("payment-error").contains("Stripe.js"));
        assert_eq!(shop.hold_status(&hold).await, "active");
    }
);

both_engines!(
    pages_carry_security_headers_escape_names_and_answer_unknown_ids_with_a_page,
    |engine| async move {
        let shop = shop(engine).await;
        let org = shop.app.create_organization("Hostile Org").await;
        let (hostile, _) = shop
            .app
            .create_event_with(
                &org,
                json!({ "name": "<script>alert(1)</script>" }),
                &[("<b>GA</b>", 1_000, 5)],
            )
            .await;
        let hold = shop.reserve(1, 0).await;
        let paid = shop.pay(&hold, "4242424242424242").await;
        let order = order_of(paid.location());

        for path in [
            "/".to_owned(),
            format!("/events/{}", shop.event),
            format!("/events/{hostile}"),
            format!("/checkout/{hold}"),
            format!("/orders/{order}"),
            "/events/ev_00000000000000000000000000000000".to_owned(),
            "/static/checkout.js".to_owned(),
        ] {
            let page = shop.get(&path).await;
            let csp = page.header("content-security-policy");
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
                "{path}: {csp}"
            );
            assert_eq!(page.header("x-content-type-options"), "nosniff", "{path}");
            assert!(!page.header("referrer-policy").is_empty(), "{path}");
            assert!(!page.header("x-request-id").is_empty(), "{path}");
            if page.header("content-type").starts_with("text/html") {
                // No inline script, nothing from elsewhere.
                assert!(!page.html.contains("<script>"), "{path}");
                assert!(
                    !page.html.contains("http://") && !page.html.contains("https://"),
                    "{path}"
                );
                assert!(!page.html.contains(" style="), "{path}");
            }
        }

        // Names are escaped wherever they appear.
        for path in ["/".to_owned(), format!("/events/{hostile}")] {
            let page = shop.get(&path).await;
            assert_eq!(page.status, 200);
            assert!(!page.html.contains("<script>alert(1)"), "{path}: {}", page.html);
            assert!(page.html.contains("&lt;script&gt;alert(1)"), "{path}: {}", page.html);
            assert!(!page.html.contains("<b>GA</b>"), "{path}");
        }

        // Unknown ids: a friendly 404 page with the request id.
        for path in [
            "/events/ev_00000000000000000000000000000000",
            "/events/nonsense",
            "/checkout/hold_00000000000000000000000000000000",
            "/checkout/nonsense",
            "/orders/ord_00000000000000000000000000000000",
            "/orders/%3Cscript%3E",
        ] {
            let page = shop.get(path).await;
            assert_eq!(page.status, 404, "{path}");
            assert!(page.header("content-type").starts_with("text/html"), "{path}");
            let request_id = page.header("x-request-id").to_owned();
            assert_eq!(page.text("request-id"), request_id, "{path}");
            assert!(!page.html.contains("<script>"), "{path}");
        }

        // The scripts are served from here, as JavaScript.
        let script = shop.get("/static/checkout.js").await;
        assert_eq!(script.status, 200);
        assert!(script.header("content-type").starts_with("text/javascript"));
        assert!(script.html.contains("sendBeacon") && script.html.contains("pagehide"));
        let script = shop.get("/static/event.js").await;
        assert_eq!(script.status, 200);
    }
);
