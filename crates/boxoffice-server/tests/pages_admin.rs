//! The operator's dashboard over HTTP, on both engines: signing in with the operator token
//! (a strict, HttpOnly session cookie), pages that need the session, CSRF tokens on every
//! form, escaping of stored error text, and the pages' security headers.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use boxoffice_core::webhooks::StripeEvent;
use boxoffice_core::{Clock, ManualClock, Timestamp};
use common::{AppOptions, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

/// A raw HTTP answer: status, headers, body text.
struct Page {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The `Set-Cookie` headers.
    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The `Set-Cookie` header of cookie `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value of the first hidden `csrf_token` field.
    fn csrf_token(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self
            .text
            .find(marker)
            .unwrap_or_else(|| panic!("no csrf_token in {}", self.text))
            + marker.len();
        let end = self.text[start..].find('"').unwrap() + start;
        self.text[start..end].to_owned()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// The value part of a `Set-Cookie` header (`name=value; …` → `value`).
fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_owned()
}

/// A signed cookie's value as the cookie crate writes it (axum-extra's `SignedCookieJar`):
/// the base64 HMAC-SHA256 tag, 44 characters with `/` and `=` percent-encoded in the
/// header, then the signed text. Returns both, decoded.
fn signed_parts(value: &str) -> (String, String) {
    let decoded = value.replace("%2F", "/").replace("%3D", "=");
    let (mac, signed) = decoded.split_at(44);
    (mac.to_owned(), signed.to_owned())
}

/// A client that shows redirects instead of following them, and keeps no cookies.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { app, client }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let response = request.header("accept", "text/html").send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Page { status, headers, text }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        let mut request = self.client.get(self.app.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        self.send(request).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Page {
        let mut request = self.client.post(self.app.url(path)).form(form);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        self.send(request).await
    }

    /// The login page: its `bo_login_csrf` cookie value and the form's token.
    async fn login_form(&self) -> (String, String) {
        let page = self.get("/admin/login", None).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let cookie = page
            .set_cookie("bo_login_csrf")
            .expect("the login page sets its CSRF cookie");
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
            assert!(cookie.contains(flag), "{flag} missing: {cookie}");
        }
        (cookie_value(&cookie), page.csrf_token())
    }

    /// Signs in with `token`; the answer.
    async fn try_login(&self, token: &str) -> Page {
        let (cookie, csrf) = self.login_form().await;
        self.post(
            "/admin/login",
            Some(&format!("bo_login_csrf={cookie}")),
            &[("token", token), ("csrf_token", &csrf)],
        )
        .await
    }

    /// Signs in with the operator token; the `Cookie` header of the session.
    async fn login(&self) -> String {
        let page = self.try_login(OPERATOR_TOKEN).await;
        assert_eq!((page.status, page.location()), (303, "/admin"), "{}", page.text);
        let cookie = page.set_cookie("bo_admin").expect("a session cookie");
        format!("bo_admin={}", cookie_value(&cookie))
    }
}

/// Reports an error through the JSON API; the id of its group.
async fn report_error(app: &TestApp, message: &str) -> String {
    let answer = app
        .post_as(
            OPERATOR_TOKEN,
            "/api/v1/errors",
            json!({ "severity": "error", "message": message, "component": "checkout",
                    "context": { "note": "<script>alert('ctx')</script>" } }),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let groups = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors").await;
    let group = groups.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["title"].as_str().unwrap().contains(&message[..8]))
        .unwrap_or_else(|| panic!("no group for {message}: {}", groups.body))
        .clone();
    group["id"].as_str().unwrap().to_owned()
}

async fn group_resolved(app: &TestApp, group: &str) -> bool {
    let answer = app
        .get_as(OPERATOR_TOKEN, &format!("/api/v1/admin/errors/{group}"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["resolved"].as_bool().unwrap()
}

fn assert_security_headers(page: &Page, path: &str) {
    let csp = page.header("content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{path}: CSP lacks {directive}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    assert_eq!(page.header("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(page.header("x-frame-options"), "DENY", "{path}");
    assert_eq!(page.header("referrer-policy"), "same-origin", "{path}");
    assert_eq!(page.header("cache-control"), "no-store", "{path}");
}

/// No inline script or style: the CSP forbids both.
fn assert_no_inline_script_or_style(page: &Page, path: &str) {
    for forbidden in [" style=\"", "<style", " onclick=", " onload=", " onerror="] {
        assert!(!page.text.contains(forbidden), "{path} contains {forbidden}");
    }
    for (i, _) in page.text.match_indices("<script") {
        let tag = &page.text[i..i + page.text[i..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/static/"), "{path}: inline script {tag}");
    }
}

both_engines!(signing_in_needs_the_operator_token, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let browser = Browser::new(&app);

    let form = browser.get("/admin/login", None).await;
    assert_eq!(form.status, 200);
    assert_security_headers(&form, "/admin/login");
    assert_no_inline_script_or_style(&form, "/admin/login");
    for hook in [
        r#"name="token" type="password" data-testid="token""#,
        r#"<label for="token">"#,
        r#"data-testid="login""#,
    ] {
        assert!(form.text.contains(hook), "{hook} missing: {}", form.text);
    }

    // A wrong token: 401, the form again with a message, and no cookie at all.
    let wrong = browser.try_login("bo_admin_not_the_token").await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(wrong.text.contains(r#"data-testid="login-error""#), "{}", wrong.text);
    assert!(wrong.set_cookies().is_empty(), "{:?}", wrong.set_cookies());
    assert_security_headers(&wrong, "POST /admin/login");
    let empty = browser.try_login("").await;
    assert_eq!(empty.status, 401);
    assert!(empty.set_cookie("bo_admin").is_none());

    // The operator token: a strict, HttpOnly session cookie scoped to the dashboard.
    let right = browser.try_login(OPERATOR_TOKEN).await;
    assert_eq!((right.status, right.location()), (303, "/admin"), "{}", right.text);
    let session = right.set_cookie("bo_admin").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=43200"] {
        assert!(session.contains(flag), "{flag} missing: {session}");
    }
    let value = cookie_value(&session);
    let (mac, signed) = signed_parts(&value);
    let (expires, csrf) = signed.split_once('.').unwrap();
    assert!(
        mac.ends_with('=') && expires.parse::<i64>().is_ok() && csrf.len() == 64,
        "{value}"
    );
    assert!(
        !session.contains(OPERATOR_TOKEN) && !right.text.contains(OPERATOR_TOKEN),
        "the token is never echoed"
    );
    let overview = browser.get("/admin", Some(&format!("bo_admin={value}"))).await;
    assert_eq!(overview.status, 200, "{}", overview.text);

    // The login form's CSRF token: refused without its cookie, or with another form's.
    let (cookie, csrf) = browser.login_form().await;
    let no_cookie = browser
        .post(
            "/admin/login",
            None,
            &[("token", OPERATOR_TOKEN), ("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(no_cookie.status, 403, "{}", no_cookie.text);
    assert!(no_cookie.set_cookie("bo_admin").is_none());
    let (other_cookie, _) = browser.login_form().await;
    let mismatched = browser
        .post(
            "/admin/login",
            Some(&format!("bo_login_csrf={other_cookie}")),
            &[("token", OPERATOR_TOKEN), ("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(mismatched.status, 403);
    assert!(mismatched.set_cookie("bo_admin").is_none());
    let no_field = browser
        .post(
            "/admin/login",
            Some(&format!("bo_login_csrf={cookie}")),
            &[("token", OPERATOR_TOKEN)],
        )
        .await;
    assert_eq!(no_field.status, 403);
    assert!(no_field.set_cookie("bo_admin").is_none());
    // A forged login cookie, paired with itself, is not ours.
    let forged = "9999999999.00000000000000000000000000000000.00";
    let planted = browser
        .post(
            "/admin/login",
            Some(&format!("bo_login_csrf={forged}")),
            &[("token", OPERATOR_TOKEN), ("csrf_token", forged)],
        )
        .await;
    assert_eq!(planted.status, 403);
    assert!(planted.set_cookie("bo_admin").is_none());

    // Signed in already: the login page sends to the dashboard.
    let again = browser.get("/admin/login", Some(&format!("bo_admin={value}"))).await;
    assert_eq!((again.status, again.location()), (303, "/admin"));
});

both_engines!(dashboard_pages_need_a_valid_session, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let clock = ManualClock::new(Timestamp::from_millis(1_900_000_000_000));
    let app = spawn_app(
        &db,
        AppOptions {
            clock: Some(clock.clone()),
            ..Default::default()
        },
    )
    .await;
    let browser = Browser::new(&app);
    let group = report_error(&app, "Seat map did not load for section 12").await;

    // Something for every page to show: a hold with an order, a webhook event.
    let org = app.create_organization("Org").await;
    let (event, tts) = app.create_event(&org, &[("GA", 2_550, 10)]).await;
    let hold = app.hold(&event, &[(&tts[0], 2)]).await;
    assert_eq!(hold.status, 201, "{}", hold.body);
    let hold_id = hold.body["id"].as_str().unwrap();
    let intent = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/reservations/{hold_id}/payment-intent")))
                .header("idempotency-key", "k1")
                .json(&json!({})),
        )
        .await;
    assert_eq!(intent.status, 201, "{}", intent.body);
    let order_id = intent.body["order_id"].as_str().unwrap().to_owned();
    let payload = json!({ "id": "evt_admin_1", "type": "payment_intent.processing",
                          "data": { "object": { "id": "pi_x", "object": "payment_intent" } } });
    let now = clock.now();
    app.store
        .record_webhook_event(
            &StripeEvent::parse(payload.to_string().as_bytes()).unwrap(),
            true,
            now,
            now,
        )
        .await
        .unwrap();

    let pages = [
        "/admin".to_owned(),
        "/admin/errors".to_owned(),
        "/admin/errors?status=open&severity=error".to_owned(),
        format!("/admin/errors/{group}"),
        "/admin/webhooks".to_owned(),
        "/admin/orders".to_owned(),
    ];
    for path in &pages {
        let page = browser.get(path, None).await;
        assert_eq!((page.status, page.location()), (303, "/admin/login"), "{path}");
    }

    let session = browser.login().await;
    for path in &pages {
        let page = browser.get(path, Some(&session)).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert!(page.header("content-type").starts_with("text/html"), "{path}");
        assert_security_headers(&page, path);
        assert_no_inline_script_or_style(&page, path);
        for link in [
            "href=\"/admin\"",
            "href=\"/admin/errors\"",
            "href=\"/admin/webhooks\"",
            "href=\"/admin/orders\"",
        ] {
            assert!(page.text.contains(link), "{path}: nav link {link} missing");
        }
        assert!(
            page.text.contains("action=\"/admin/logout\""),
            "{path}: no sign-out form"
        );
    }
    let overview = browser.get("/admin", Some(&session)).await;
    assert!(overview.text.contains(r#"data-testid="hold-stats""#));
    assert!(
        overview.text.contains(r#"data-testid="holds-active">1<"#),
        "{}",
        overview.text
    );
    let errors = browser.get("/admin/errors", Some(&session)).await;
    assert!(
        errors
            .text
            .contains(&format!(r#"<tr data-testid="error-group" data-group-id="{group}">"#))
    );
    assert!(errors.text.contains(&format!(
        r#"<a data-testid="error-group-link" href="/admin/errors/{group}""#
    )));
    let detail = browser.get(&format!("/admin/errors/{group}"), Some(&session)).await;
    for hook in [
        r#"data-testid="group-title""#,
        r#"data-testid="group-status" class="badge open">open<"#,
        r#"data-testid="error-event""#,
        r#"data-testid="resolve""#,
        "<pre>",
    ] {
        assert!(detail.text.contains(hook), "{hook} missing: {}", detail.text);
    }
    let orders = browser.get("/admin/orders", Some(&session)).await;
    assert_eq!(orders.text.matches(r#"data-testid="order-row""#).count(), 1);
    assert!(
        orders.text.contains(&order_id) && orders.text.contains("51.00 EUR"),
        "{}",
        orders.text
    );
    let webhooks = browser.get("/admin/webhooks", Some(&session)).await;
    assert_eq!(webhooks.text.matches(r#"data-testid="webhook-row""#).count(), 1);
    assert!(webhooks.text.contains("evt_admin_1"));

    // An unknown group is a friendly 404 page.
    let missing = browser.get("/admin/errors/grp_nope", Some(&session)).await;
    assert_eq!(missing.status, 404);
    assert!(missing.text.contains("<!doctype html>"), "{}", missing.text);

    // Forged sessions: a moved expiry (the MAC no longer matches), a foreign MAC, junk.
    let value = session.trim_start_matches("bo_admin=");
    let (mac, signed) = signed_parts(value);
    let (expires, csrf) = signed.split_once('.').unwrap();
    let later = expires.parse::<i64>().unwrap() + 86_400;
    let mut flipped = mac.clone();
    flipped.replace_range(0..1, if mac.starts_with('A') { "B" } else { "A" });
    for forged in [
        format!("bo_admin={mac}{later}.{csrf}"),
        format!("bo_admin={flipped}{signed}"),
        format!("bo_admin={}={signed}", "A".repeat(43)),
        format!("bo_admin={signed}"),
        "bo_admin=".to_owned(),
        "bo_admin=garbage".to_owned(),
        format!("bo_session={value}"),
    ] {
        let page = browser.get("/admin", Some(&forged)).await;
        assert_eq!((page.status, page.location()), (303, "/admin/login"), "{forged}");
    }

    // The session ends after 12 hours.
    clock.advance(Duration::from_secs(12 * 3600 - 5));
    assert_eq!(browser.get("/admin", Some(&session)).await.status, 200);
    clock.advance(Duration::from_secs(5));
    let expired = browser.get("/admin", Some(&session)).await;
    assert_eq!((expired.status, expired.location()), (303, "/admin/login"));
});

both_engines!(resolving_a_group_needs_the_csrf_token, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let browser = Browser::new(&app);
    let group = report_error(&app, "Payment button did nothing").await;
    let session = browser.login().await;
    let detail = browser.get(&format!("/admin/errors/{group}"), Some(&session)).await;
    let csrf = detail.csrf_token();
    assert!(
        detail.text.contains(&format!(
            r#"<form method="post" action="/admin/errors/{group}/resolve">"#
        )),
        "{}",
        detail.text
    );
    let resolve = format!("/admin/errors/{group}/resolve");

    // Without a session: to the login page, nothing changed.
    let anonymous = browser.post(&resolve, None, &[("csrf_token", &csrf)]).await;
    assert_eq!((anonymous.status, anonymous.location()), (303, "/admin/login"));
    assert!(!group_resolved(&app, &group).await);

    // Without the token, or with a wrong one: 403, a friendly page, nothing changed.
    let wrong_tokens: [&[(&str, &str)]; 5] = [
        &[],
        &[("csrf_token", "")],
        &[("csrf_token", &"0".repeat(64))],
        &[("csrf_token", "not-hex")],
        &[("other", &csrf)],
    ];
    for form in wrong_tokens {
        let refused = browser.post(&resolve, Some(&session), form).await;
        assert_eq!(refused.status, 403, "{form:?}: {}", refused.text);
        assert!(refused.text.contains("Nothing was changed"), "{}", refused.text);
        assert_security_headers(&refused, "refused resolve");
        assert!(!group_resolved(&app, &group).await, "{form:?}");
    }
    // A session's token does not work with another session's cookie.
    let other_session = {
        let expires = session.trim_start_matches("bo_admin=").split_once('.').unwrap().0;
        format!("bo_admin={expires}.{}", "a".repeat(64))
    };
    let crossed = browser
        .post(&resolve, Some(&other_session), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(crossed.status, 303, "an invalid session is sent to sign in");
    assert!(!group_resolved(&app, &group).await);

    // The right token: resolved, and back to the group.
    let resolved = browser.post(&resolve, Some(&session), &[("csrf_token", &csrf)]).await;
    assert_eq!(
        (resolved.status, resolved.location()),
        (303, format!("/admin/errors/{group}").as_str()),
        "{}",
        resolved.text
    );
    assert!(group_resolved(&app, &group).await);
    let detail = browser.get(&format!("/admin/errors/{group}"), Some(&session)).await;
    assert!(
        detail
            .text
            .contains(r#"data-testid="group-status" class="badge resolved">resolved<"#)
    );
    let list = browser.get("/admin/errors?status=resolved", Some(&session)).await;
    assert!(list.text.contains(&format!(r#"data-group-id="{group}""#)));
    let open = browser.get("/admin/errors?status=open", Some(&session)).await;
    assert!(!open.text.contains(&format!(r#"data-group-id="{group}""#)));
});

both_engines!(signing_out_clears_the_session_cookie, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let browser = Browser::new(&app);
    let session = browser.login().await;
    let overview = browser.get("/admin", Some(&session)).await;
    let csrf = overview.csrf_token();

    let refused = browser.post("/admin/logout", Some(&session), &[]).await;
    assert_eq!(refused.status, 403);
    assert!(refused.set_cookie("bo_admin").is_none());
    let refused = browser
        .post("/admin/logout", Some(&session), &[("csrf_token", &"f".repeat(64))])
        .await;
    assert_eq!(refused.status, 403);

    let out = browser
        .post("/admin/logout", Some(&session), &[("csrf_token", &csrf)])
        .await;
    assert_eq!((out.status, out.location()), (303, "/admin/login"));
    let cleared = out.set_cookie("bo_admin").expect("the cookie is cleared");
    assert_eq!(cookie_value(&cleared), "");
    for flag in ["Max-Age=0", "Path=/admin", "HttpOnly", "SameSite=Strict"] {
        assert!(cleared.contains(flag), "{flag} missing: {cleared}");
    }
});

both_engines!(stored_error_text_is_escaped, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let browser = Browser::new(&app);
    let group = report_error(&app, "<img src=x onerror=alert(1)> broke the \"page\"").await;
    let session = browser.login().await;
    for path in ["/admin/errors".to_owned(), format!("/admin/errors/{group}")] {
        let page = browser.get(&path, Some(&session)).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.text.contains("<img"), "{path}: {}", page.text);
        assert!(!page.text.contains("<script>alert"), "{path}");
        assert!(
            page.text.contains("&lt;img src=x onerror=alert("),
            "{path}: {}",
            page.text
        );
    }
    let detail = browser.get(&format!("/admin/errors/{group}"), Some(&session)).await;
    assert!(
        detail.text.contains("&lt;script&gt;alert("),
        "the payload is shown, escaped: {}",
        detail.text
    );
});
