//! The pages (SPEC §8) in a real browser: headless Chromium driven over WebDriver against
//! the server spawned in-process (with the built-in Stripe double), on both engines.
//!
//! - the whole purchase: events list → event → 2 tickets → checkout with a live countdown
//!   → pay with 4242… → confirmation with 2 ticket codes; the order is paid (JSON API);
//! - a declined card (4000 0000 0000 0002) shows a clear message and the buyer retries;
//! - leaving checkout cancels the hold; an expired hold shows its state;
//! - a JavaScript error on a page reaches the error store, scrubbed; the 404 page shows
//!   the request id;
//! - the dashboard: login, an error group resolved, and CSRF protection refusing a forged
//!   form from another origin and a same-origin POST without the token.
//!
//! Each page is screenshotted to `target/page-screenshots/<engine>/` (printed).
//! Needs chromedriver: see `browser/mod.rs` (scripts/test.sh installs it).

#![allow(clippy::unwrap_used)]

mod browser;
mod common;

use std::time::{Duration, Instant};

use browser::{Browser, OtherOrigin, eventually, parse_countdown};
use common::{AppOptions, Engine, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use serde_json::{Value, json};

const CARD_OK: &str = "4242 4242 4242 4242";
const CARD_DECLINED: &str = "4000 0000 0000 0002";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A browser (or `None`: skipped, reason printed), a fresh database and the app over it.
async fn setup(engine: Engine) -> Option<(Browser, TestDatabase, TestApp)> {
    let browser = Browser::start(engine).await?;
    let database = TestDatabase::new(engine).await;
    let app = spawn_app(&database, AppOptions::default()).await;
    Some((browser, database, app))
}

/// An organization with an event of two ticket types (General 25.00 × 10, VIP 90.00 × 2).
async fn seed(app: &TestApp, extra: Value) -> (String, Vec<String>) {
    let org = app.create_organization("Night Owl Concerts").await;
    app.create_event_with(&org, extra, &[("General", 2500, 10), ("VIP", 9000, 2)])
        .await
}

fn ticket_row(ticket_type: &str) -> String {
    format!(r#"[data-testid="ticket-type"][data-ticket-type-id="{ticket_type}"]"#)
}

/// From the events list, opens the event's page; returns the event page's path.
async fn open_event(browser: &Browser, app: &TestApp, event: &str, screenshot: Option<&str>) -> String {
    browser.goto(&app.url("/")).await;
    let link = format!(r#"a[data-testid="event-link"][href*="{event}"]"#);
    browser.find_visible(&link).await;
    if let Some(name) = screenshot {
        browser.screenshot(name).await;
    }
    browser.click(&link).await;
    browser.find_visible(r#"[data-testid="ticket-type"]"#).await;
    browser.path().await
}

/// On the event page: chooses `quantity` of `ticket_type`, enters the e-mail, reserves;
/// waits for checkout and returns the hold id it shows.
async fn reserve(browser: &Browser, ticket_type: &str, quantity: u32, screenshot: Option<&str>) -> String {
    let qty = format!(r#"{} input[data-testid="qty"]"#, ticket_row(ticket_type));
    let input = browser.find_visible(&qty).await;
    assert_eq!(
        input.attr("name").await.unwrap().as_deref(),
        Some(format!("qty_{ticket_type}").as_str()),
        "the quantity input of {ticket_type} must be named qty_{ticket_type}"
    );
    browser.fill(&qty, &quantity.to_string()).await;
    browser.fill(r#"input[name="customer_email"]"#, "ana@example.org").await;
    if let Some(name) = screenshot {
        browser.screenshot(name).await;
    }
    browser.click(r#"button[data-testid="reserve"]"#).await;
    let hold = browser
        .eventually("the checkout page (an element with data-hold-id)", async || {
            let element = browser.try_find("[data-hold-id]").await?;
            element.attr("data-hold-id").await.ok().flatten()
        })
        .await;
    assert!(hold.starts_with("hold_"), "data-hold-id is {hold:?}");
    hold
}

/// The seconds the checkout countdown shows.
async fn countdown(browser: &Browser) -> u64 {
    let text = browser.text(r#"[data-testid="countdown"]"#).await;
    parse_countdown(&text).unwrap_or_else(|| panic!("the countdown reads {text:?}, not m:ss"))
}

/// On checkout: enters `card` and pays.
async fn pay_with(browser: &Browser, card: &str) {
    browser.fill(r#"input[data-testid="card-number"]"#, card).await;
    browser.click(r#"button[data-testid="pay"]"#).await;
}

/// After paying: waits for the order page to say `paid`; returns the order id.
async fn wait_paid_order(browser: &Browser) -> String {
    let path = browser
        .wait_path("an order page /orders/{id}", |path| path.starts_with("/orders/"))
        .await;
    let order = path.trim_start_matches("/orders/").trim_end_matches('/').to_owned();
    // Pending until the double's webhook arrives; the page refreshes itself meanwhile.
    browser
        .wait_text(r#"[data-testid="order-status"]"#, "paid", |text| {
            text.eq_ignore_ascii_case("paid")
        })
        .await;
    order
}

/// The ticket codes the order page shows (waited for: `count` of them).
async fn ticket_codes(browser: &Browser, count: usize) -> Vec<String> {
    browser
        .eventually(&format!("{count} ticket codes"), async || {
            let mut codes = Vec::new();
            for element in browser.all(r#"[data-testid="ticket-code"]"#).await {
                codes.push(element.text().await.ok()?.trim().to_owned());
            }
            (codes.len() == count && codes.iter().all(|code| !code.is_empty())).then_some(codes)
        })
        .await
}

async fn order(app: &TestApp, order: &str) -> Value {
    let answer = app.get(&format!("/api/v1/orders/{order}")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

async fn hold_status(app: &TestApp, hold: &str) -> String {
    let answer = app.get(&format!("/api/v1/reservations/{hold}")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["status"].as_str().unwrap_or_default().to_owned()
}

/// The digits of a text ("€50.00" → "5000").
fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Reports a browser error the way `static/report-errors.js` does.
async fn report_browser_error(app: &TestApp, message: &str) {
    let body = json!({ "kind": "error", "message": message, "stack": null, "url": "/" });
    let answer = app.send(app.client.post(app.url("/_errors/browser")).json(&body)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
}

/// Waits for an error group matching `matches` (as the JSON API lists it).
async fn wait_for_group(app: &TestApp, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + browser::WAIT;
    loop {
        let answer = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let groups = answer.body["data"].as_array().cloned().unwrap_or_default();
        if let Some(group) = groups.iter().find(|group| matches(group)) {
            return group.clone();
        }
        assert!(
            Instant::now() <= deadline,
            "gave up after {:?} waiting for {what}; the error store has: {}",
            browser::WAIT,
            Value::Array(groups)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn group_resolved(app: &TestApp, group: &str) -> bool {
    let answer = app
        .get_as(OPERATOR_TOKEN, &format!("/api/v1/admin/errors/{group}"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["resolved"].as_bool().unwrap()
}

// ---------------------------------------------------------------------------------------
// The purchase
// ---------------------------------------------------------------------------------------

both_engines!(purchase_two_tickets, |engine| async move {
    let Some((browser, _database, app)) = setup(engine).await else {
        return;
    };
    let started = Instant::now();
    let (event, ticket_types) = seed(&app, json!({ "name": "Owls at Midnight" })).await;
    let general = &ticket_types[0];

    open_event(&browser, &app, &event, Some("events-list")).await;
    let available = browser
        .text(&format!(r#"{} [data-testid="available"]"#, ticket_row(general)))
        .await;
    assert_eq!(digits(&available), "10", "available shows {available:?}");

    let hold = reserve(&browser, general, 2, Some("event")).await;
    assert_eq!(hold_status(&app, &hold).await, "active");
    assert_eq!(app.inventory(&event, general).await, (0, 2, 8));

    // Checkout: the amount, and a countdown that counts down.
    let amount = browser.text(r#"[data-testid="amount"]"#).await;
    assert_eq!(
        digits(&amount),
        "5000",
        "2 × 25.00 is 50.00; the amount shows {amount:?}"
    );
    let first = countdown(&browser).await;
    assert!((880..=900).contains(&first), "a 15-minute hold shows {first} s");
    browser.screenshot("checkout").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = countdown(&browser).await;
    assert!(
        second < first,
        "the countdown did not decrease: {first} s, then {second} s"
    );

    pay_with(&browser, CARD_OK).await;
    let order_id = wait_paid_order(&browser).await;
    let codes = ticket_codes(&browser, 2).await;
    assert_ne!(codes[0], codes[1], "two tickets, two codes");
    let qr_loaded = browser
        .eventually("2 loaded QR codes", async || {
            let loaded = browser
                .execute(
                    r#"return Array.from(document.querySelectorAll('img[data-testid="ticket-qr"]'))
                           .map(img => img.complete && img.naturalWidth > 0);"#,
                    vec![],
                )
                .await;
            let loaded: Vec<bool> = serde_json::from_value(loaded).ok()?;
            (loaded.len() == 2 && loaded.iter().all(|ok| *ok)).then_some(loaded)
        })
        .await;
    assert_eq!(qr_loaded.len(), 2);
    browser.screenshot("confirmation").await;

    // The JSON API agrees: paid, the same two codes, the tickets sold.
    let paid = order(&app, &order_id).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["reservation_id"], hold.as_str(), "{paid}");
    assert_eq!(paid["amount_cents"], 5000, "{paid}");
    let mut api_codes: Vec<String> = paid["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ticket| ticket["code"].as_str().unwrap().to_owned())
        .collect();
    let mut page_codes = codes.clone();
    api_codes.sort();
    page_codes.sort();
    assert_eq!(page_codes, api_codes, "the page shows the order's ticket codes");
    assert_eq!(app.inventory(&event, general).await, (2, 0, 8));
    println!("purchase on {engine:?}: {:?}", started.elapsed());
    browser.close().await;
});

both_engines!(declined_card_then_retry, |engine| async move {
    let Some((browser, _database, app)) = setup(engine).await else {
        return;
    };
    let (event, ticket_types) = seed(&app, json!({})).await;
    let vip = &ticket_types[1];
    open_event(&browser, &app, &event, None).await;

    // Asking for more than is left: a message on the event page, nothing held.
    let vip_qty = format!(r#"{} input[data-testid="qty"]"#, ticket_row(vip));
    browser.fill(&vip_qty, "3").await;
    browser.click(r#"button[data-testid="reserve"]"#).await;
    let message = browser
        .wait_text(r#"[data-testid="message"]"#, "a message", |text| !text.is_empty())
        .await;
    assert!(
        message.contains("VIP"),
        "the sold-out message names the ticket type: {message:?}"
    );
    assert!(
        browser.try_find("[data-hold-id]").await.is_none(),
        "no checkout after a refusal"
    );
    assert_eq!(app.inventory(&event, vip).await, (0, 0, 2));

    let hold = reserve(&browser, vip, 1, None).await;

    pay_with(&browser, CARD_DECLINED).await;
    let error = browser
        .eventually("a visible payment error", async || {
            let element = browser.try_find(r#"[data-testid="payment-error"]"#).await?;
            if !element.is_displayed().await.ok()? {
                return None;
            }
            let text = element.text().await.ok()?.trim().to_owned();
            (!text.is_empty()).then_some(text)
        })
        .await;
    assert!(
        error.to_lowercase().contains("declined"),
        "the payment error should say the card was declined: {error:?}"
    );
    // Still on checkout for the same hold, which is still held; the buyer can retry.
    let shown = browser.find("[data-hold-id]").await.attr("data-hold-id").await.unwrap();
    assert_eq!(
        shown.as_deref(),
        Some(hold.as_str()),
        "checkout of the same hold after a decline"
    );
    assert!(
        !browser.is_visible(r#"[data-testid="hold-expired"]"#).await,
        "a declined card does not end the hold"
    );
    browser.find_visible(r#"button[data-testid="pay"]"#).await;
    assert_eq!(hold_status(&app, &hold).await, "active");
    assert_eq!(app.inventory(&event, vip).await, (0, 1, 1));
    browser.screenshot("checkout-declined").await;

    pay_with(&browser, CARD_OK).await;
    let order_id = wait_paid_order(&browser).await;
    ticket_codes(&browser, 1).await;
    let paid = order(&app, &order_id).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["tickets"].as_array().unwrap().len(), 1, "{paid}");
    assert_eq!(app.inventory(&event, vip).await, (1, 0, 1));
    browser.close().await;
});

// ---------------------------------------------------------------------------------------
// Holds: leaving checkout, expiry
// ---------------------------------------------------------------------------------------

both_engines!(leaving_checkout_cancels_and_expiry_shows, |engine| async move {
    let Some((browser, _database, app)) = setup(engine).await else {
        return;
    };
    let (event, ticket_types) = seed(&app, json!({})).await;
    let general = &ticket_types[0];

    // Leaving checkout gives the tickets back.
    open_event(&browser, &app, &event, None).await;
    let hold = reserve(&browser, general, 2, None).await;
    assert_eq!(app.inventory(&event, general).await, (0, 2, 8));
    browser.goto(&app.url("/")).await;
    browser.find_visible(r#"a[data-testid="event-link"]"#).await;
    eventually("the hold to be cancelled after leaving checkout", async || {
        (app.inventory(&event, general).await == (0, 0, 10)).then_some(())
    })
    .await;
    assert_eq!(hold_status(&app, &hold).await, "cancelled");

    // A 3-second hold: the countdown runs out, and checkout then shows the expired state.
    let (short_event, short_types) = {
        let org = app.create_organization("Quick Sales").await;
        app.create_event_with(
            &org,
            json!({ "name": "Flash sale", "hold_seconds": 3 }),
            &[("Flash", 1000, 5)],
        )
        .await
    };
    let flash = &short_types[0];
    open_event(&browser, &app, &short_event, None).await;
    let short_hold = reserve(&browser, flash, 1, None).await;
    let first = countdown(&browser).await;
    assert!(first <= 3, "a 3-second hold shows {first} s");
    browser
        .eventually("the countdown to reach 0:00 or the expired state to show", async || {
            if browser.is_visible(r#"[data-testid="hold-expired"]"#).await {
                return Some(());
            }
            let text = browser
                .try_find(r#"[data-testid="countdown"]"#)
                .await?
                .text()
                .await
                .ok()?;
            (parse_countdown(&text) == Some(0)).then_some(())
        })
        .await;
    eventually("the hold to read expired", async || {
        (hold_status(&app, &short_hold).await == "expired").then_some(())
    })
    .await;
    browser.refresh().await;
    browser.find_visible(r#"[data-testid="hold-expired"]"#).await;
    browser.find_visible(r#"a[data-testid="try-again"]"#).await;
    assert!(
        !browser.is_visible(r#"button[data-testid="pay"]"#).await,
        "an expired hold cannot be paid"
    );
    browser.screenshot("expired-hold").await;
    assert_eq!(app.inventory(&short_event, flash).await, (0, 0, 5));

    // Try again leads back to the event.
    browser.click(r#"a[data-testid="try-again"]"#).await;
    let available = browser
        .text(&format!(r#"{} [data-testid="available"]"#, ticket_row(flash)))
        .await;
    assert_eq!(digits(&available), "5", "available after the expiry: {available:?}");
    browser.close().await;
});

// ---------------------------------------------------------------------------------------
// Browser errors, error pages
// ---------------------------------------------------------------------------------------

both_engines!(javascript_errors_are_reported_scrubbed, |engine| async move {
    let Some((browser, _database, app)) = setup(engine).await else {
        return;
    };
    let (event, _) = seed(&app, json!({})).await;
    open_event(&browser, &app, &event, None).await;
    browser.wait_loaded().await;
    let page = browser.path().await;
    // Through CDP's Runtime.evaluate, not WebDriver's execute: see `evaluate_as_page` (an
    // error thrown by a WebDriver-executed callback reaches the page as "Script error.").
    browser
        .evaluate_as_page(r#"setTimeout(() => { throw new Error("checkout broke for ana@example.org") }, 0)"#)
        .await;

    let group = wait_for_group(&app, "a browser error group", |group| {
        group["component"] == "browser" && group["title"].as_str().is_some_and(|t| t.contains("checkout broke"))
    })
    .await;
    let title = group["title"].as_str().unwrap();
    assert!(title.contains("[email]"), "the title is scrubbed: {title}");
    assert!(!title.contains("ana@example.org"), "the address is gone: {title}");
    let detail = app
        .get_as(
            OPERATOR_TOKEN,
            &format!("/api/v1/admin/errors/{}", group["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    let stored = detail.body.to_string();
    assert!(
        !stored.contains("ana@example.org"),
        "nothing stored has the address: {stored}"
    );
    assert!(stored.contains(&page), "the event records the page {page}: {stored}");

    // The friendly 404 page shows the request id, to the browser and to anyone asking for HTML.
    browser.goto(&app.url("/no-such-page")).await;
    let shown = browser.text(r#"[data-testid="request-id"]"#).await;
    assert!(!shown.is_empty(), "the 404 page shows a request id");
    browser.screenshot("not-found").await;
    let answer = app
        .client
        .get(app.url("/orders/ord_doesnotexist"))
        .header("accept", "text/html")
        .header("x-request-id", "req-browser-404")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let html = answer.text().await.unwrap();
    assert!(
        html.contains(r#"data-testid="request-id""#) && html.contains("req-browser-404"),
        "an unknown order's page is the 404 page with the request id: {html}"
    );
    browser.close().await;
});

// ---------------------------------------------------------------------------------------
// The dashboard
// ---------------------------------------------------------------------------------------

both_engines!(admin_login_resolve_and_csrf, |engine| async move {
    let Some((browser, _database, app)) = setup(engine).await else {
        return;
    };
    // Something to show: an order (pending) and a browser error group.
    let (event, ticket_types) = seed(&app, json!({})).await;
    let hold = app.hold(&event, &[(&ticket_types[0], 1)]).await;
    assert_eq!(hold.status, 201, "{}", hold.body);
    let hold = hold.body["id"].as_str().unwrap();
    let intent = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/reservations/{hold}/payment-intent")))
                .header("idempotency-key", "browser-admin-order")
                .json(&json!({})),
        )
        .await;
    assert_eq!(intent.status, 201, "{}", intent.body);
    let message = "seat map broke for bob@example.org";
    report_browser_error(&app, message).await;
    let group = wait_for_group(&app, "the reported group", |group| {
        group["component"] == "browser" && group["title"].as_str().is_some_and(|t| t.contains("seat map broke"))
    })
    .await;
    let group = group["id"].as_str().unwrap().to_owned();

    // Not logged in: the dashboard asks for the token; a wrong one is refused.
    browser.goto(&app.url("/admin")).await;
    browser.find_visible(r#"input[data-testid="token"]"#).await;
    assert!(
        browser.path().await.starts_with("/admin/login"),
        "the dashboard sends a visitor to /admin/login, not {}",
        browser.url().await
    );
    browser.screenshot("admin-login").await;
    browser
        .fill(r#"input[data-testid="token"]"#, "bo_admin_not_the_token")
        .await;
    browser.click(r#"button[data-testid="login"]"#).await;
    browser.find_visible(r#"[data-testid="login-error"]"#).await;
    browser.fill(r#"input[data-testid="token"]"#, OPERATOR_TOKEN).await;
    browser.click(r#"button[data-testid="login"]"#).await;
    browser
        .wait_path("the overview /admin", |path| path.trim_end_matches('/') == "/admin")
        .await;
    browser.find_visible(r#"[data-testid="hold-stats"]"#).await;
    browser.screenshot("admin-overview").await;

    browser.goto(&app.url("/admin/orders")).await;
    browser.find_visible(r#"[data-testid="order-row"]"#).await;

    // Errors list → the group → resolve.
    browser.goto(&app.url("/admin/errors")).await;
    let row = format!(r#"tr[data-testid="error-group"][data-group-id="{group}"]"#);
    browser.find_visible(&row).await;
    browser.screenshot("admin-errors").await;
    browser
        .click(&format!(r#"{row} a[data-testid="error-group-link"]"#))
        .await;
    browser
        .wait_path("the group's page", |path| path.contains(group.as_str()))
        .await;
    let detail_url = browser.url().await;
    let title = browser.text(r#"[data-testid="group-title"]"#).await;
    assert!(
        title.contains("[email]") && !title.contains("bob@example.org"),
        "the group title is the scrubbed one: {title:?}"
    );
    let status = browser.text(r#"[data-testid="group-status"]"#).await;
    assert!(
        status.eq_ignore_ascii_case("open"),
        "a new group is open, the page says {status:?}"
    );
    browser.screenshot("admin-error-detail").await;
    browser.click(r#"button[data-testid="resolve"]"#).await;
    browser
        .wait_text(r#"[data-testid="group-status"]"#, "resolved", |text| {
            text.eq_ignore_ascii_case("resolved")
        })
        .await;
    assert!(group_resolved(&app, &group).await, "resolved through the page");

    // A regression reopens it, so a forged resolve would show.
    report_browser_error(&app, message).await;
    eventually("the group to reopen", async || {
        (!group_resolved(&app, &group).await).then_some(())
    })
    .await;

    // A forged form on another origin, auto-submitted in the logged-in browser: refused.
    let resolve_url = app.url(&format!("/admin/errors/{group}/resolve"));
    let attacker = OtherOrigin::serve(format!(
        r#"<!doctype html><html><head><title>You won</title></head><body>
<h1>Claim your prize</h1>
<form id="forged" method="post" action="{resolve_url}"><input type="hidden" name="note" value="forged"></form>
<script>document.getElementById("forged").submit();</script>
</body></html>"#
    ))
    .await;
    browser.goto(&attacker.base).await;
    browser
        .eventually("the forged form to be submitted to the app", async || {
            let url = browser.client.current_url().await.ok()?;
            url.as_str().starts_with(&resolve_url).then_some(())
        })
        .await;
    browser.wait_loaded().await;
    let answered = browser.describe().await;
    println!("the forged form got: {answered}");
    let status = browser
        .execute(
            "return performance.getEntriesByType('navigation')[0].responseStatus;",
            vec![],
        )
        .await;
    assert_eq!(
        status,
        json!(403),
        "the forged form's answer; the browser got {answered}"
    );
    // The session cookie went along (same site, another origin): the refusal is the CSRF
    // check's, not a login page.
    assert!(
        browser.try_find(r#"input[data-testid="token"]"#).await.is_none(),
        "the forged form reached the app without the session: {answered}"
    );
    assert!(
        !group_resolved(&app, &group).await,
        "a forged cross-origin form resolved the group; the browser got {answered}"
    );

    // Same origin, logged in, but no CSRF token: 403.
    browser.goto(&detail_url).await;
    browser.find_visible(r#"[data-testid="group-status"]"#).await;
    let status = browser
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               fetch(arguments[0], {
                   method: "POST",
                   credentials: "same-origin",
                   headers: { "content-type": "application/x-www-form-urlencoded" },
                   body: "",
               }).then(r => done(r.status), e => done(String(e)));"#,
            vec![json!(format!("/admin/errors/{group}/resolve"))],
        )
        .await;
    assert_eq!(status, json!(403), "a same-origin POST without the CSRF token");
    assert!(!group_resolved(&app, &group).await, "not resolved without the token");

    // The session itself still works: the real form resolves it.
    browser.refresh().await;
    browser.click(r#"button[data-testid="resolve"]"#).await;
    browser
        .wait_text(r#"[data-testid="group-status"]"#, "resolved", |text| {
            text.eq_ignore_ascii_case("resolved")
        })
        .await;
    assert!(group_resolved(&app, &group).await);
    drop(attacker);
    browser.close().await;
});
