//! Security, over HTTP and on both engines: every route of the router, classified by its
//! guard, called by every kind of caller (no credentials, garbage, a forged key, another
//! organization's key, the owner's key, the operator token, a dashboard session cookie),
//! with the exact answer SPEC.md gives (401 unauthenticated, 404 for anything outside the
//! caller's organization and for operator-only routes, never 5xx, never another
//! organization's data). The matrix fails when a route is added without being classified:
//! it is compared with the OpenAPI document and with the `.route(…)` calls of the router's
//! source. Also: secrets are stored only as hashes (the SQLite file's bytes, PostgreSQL's
//! rows), and alerts never go to a loopback address unless the operator allows it.
//!
//! `tests/api_tenancy.rs` keeps its two narrative tests (a key working inside its own
//! organization; five malformed `Authorization` forms); this matrix covers every route and
//! every caller kind rather than repeating them.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use common::{AppOptions, Engine, OPERATOR_TOKEN, TestApp, TestDatabase, spawn_app};
use reqwest::Method;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

const STRIPE_KEY: &str = "sk_test_security_matrix_key";
const WEBHOOK_SECRET: &str = "whsec_security_matrix_secret";
const BUYER_EMAIL: &str = "buyer.of.org.b@example.org";
const ORG_B_NAME: &str = "Org B Confidential";

/// How a route is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// No credentials; a token, good or bad, changes nothing.
    Public,
    /// Public, but a token that is sent must be valid (it picks the idempotency scope).
    PublicOrValidToken,
    /// The operator token only; an organization key answers 404.
    Operator,
    /// The operator or the key of the organization owning the resource (all resources in
    /// the matrix are organization B's); another organization's key answers 404.
    OwnOrganization,
    /// The operator or any organization key, acting on its own organization only.
    AnyCredential,
    /// The organization's Sentry DSN key (`X-Sentry-Auth`); bearer tokens mean nothing.
    SentryKey,
    /// Stripe's signature; bearer tokens mean nothing.
    StripeSignature,
    /// A dashboard session cookie; bearer tokens mean nothing (redirect to the login page).
    Session,
    /// The login form itself (its own CSRF cookie).
    LoginForm,
}

/// One route of the router: method, path as routed, guard, the status of a good call.
struct Route {
    method: &'static str,
    path: &'static str,
    guard: Guard,
    ok: u16,
}

const fn route(method: &'static str, path: &'static str, guard: Guard, ok: u16) -> Route {
    Route {
        method,
        path,
        guard,
        ok,
    }
}

/// Every route of `http::router` and `pages::router`. A route added to the router without
/// a line here fails `every_route_is_classified`.
const ROUTES: &[Route] = &[
    // Public buyer API (rate-limited per address).
    route("GET", "/api/v1/events", Guard::Public, 200),
    route("GET", "/api/v1/events/{event_id}", Guard::Public, 200),
    route("POST", "/api/v1/reservations", Guard::Public, 201),
    route("GET", "/api/v1/reservations/{reservation_id}", Guard::Public, 200),
    route("DELETE", "/api/v1/reservations/{reservation_id}", Guard::Public, 200),
    route(
        "POST",
        "/api/v1/reservations/{reservation_id}/payment-intent",
        Guard::PublicOrValidToken,
        201,
    ),
    route("GET", "/api/v1/orders/{order_id}", Guard::Public, 200),
    // Organizations, events, ticket types.
    route("POST", "/api/v1/organizations", Guard::Operator, 201),
    route("GET", "/api/v1/organizations/{org_id}", Guard::OwnOrganization, 200),
    route("POST", "/api/v1/organizations/{org_id}/api-keys", Guard::Operator, 201),
    route("POST", "/api/v1/events", Guard::OwnOrganization, 201),
    route(
        "POST",
        "/api/v1/events/{event_id}/ticket-types",
        Guard::OwnOrganization,
        201,
    ),
    route(
        "PATCH",
        "/api/v1/ticket-types/{ticket_type_id}",
        Guard::OwnOrganization,
        200,
    ),
    // Operator administration.
    route("GET", "/api/v1/admin/stats/reservations", Guard::Operator, 200),
    route("GET", "/api/v1/admin/jobs/runs", Guard::Operator, 200),
    route("POST", "/api/v1/admin/jobs/{job}/run", Guard::Operator, 200),
    route("GET", "/api/v1/admin/webhooks/events", Guard::Operator, 200),
    route("GET", "/api/v1/admin/errors", Guard::Operator, 200),
    route("GET", "/api/v1/admin/errors/{group_id}", Guard::Operator, 200),
    route("POST", "/api/v1/admin/errors/{group_id}/resolve", Guard::Operator, 200),
    route("GET", "/api/v1/admin/emails", Guard::Operator, 200),
    route("POST", "/api/v1/admin/emails/{email_id}/retry", Guard::Operator, 200),
    // Error reports.
    route("POST", "/api/v1/errors", Guard::AnyCredential, 202),
    route("POST", "/api/{project_id}/envelope/", Guard::SentryKey, 200),
    // A CORS preflight, answered by tower-http's CORS layer (200, no body).
    route("OPTIONS", "/api/{project_id}/envelope/", Guard::Public, 200),
    route("POST", "/_errors/browser", Guard::Public, 202),
    // Operations.
    route("POST", "/webhooks/stripe", Guard::StripeSignature, 200),
    route("GET", "/healthz", Guard::Public, 200),
    route("GET", "/readyz", Guard::Public, 200),
    route("GET", "/metrics", Guard::Public, 200),
    route("GET", "/api/openapi.json", Guard::Public, 200),
    // Buyer pages.
    route("GET", "/", Guard::Public, 200),
    route("GET", "/events/{event_id}", Guard::Public, 200),
    route("POST", "/events/{event_id}/reserve", Guard::Public, 303),
    route("GET", "/checkout/{hold_id}", Guard::Public, 200),
    route("POST", "/checkout/{hold_id}/pay", Guard::Public, 422),
    route("POST", "/checkout/{hold_id}/leave", Guard::Public, 204),
    route("GET", "/orders/{order_id}", Guard::Public, 200),
    route("GET", "/static/{file}", Guard::Public, 200),
    // The operator's dashboard.
    route("GET", "/admin/login", Guard::LoginForm, 200),
    route("POST", "/admin/login", Guard::LoginForm, 403),
    route("POST", "/admin/logout", Guard::Session, 303),
    route("GET", "/admin", Guard::Session, 200),
    route("GET", "/admin/errors", Guard::Session, 200),
    route("GET", "/admin/errors/{group_id}", Guard::Session, 200),
    // Post/redirect/get: resolving answers 303 to the group's page.
    route("POST", "/admin/errors/{group_id}/resolve", Guard::Session, 303),
    route("GET", "/admin/webhooks", Guard::Session, 200),
    route("GET", "/admin/orders", Guard::Session, 200),
];

/// The kinds of caller every route is tried with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    GarbageToken,
    WrongScheme,
    /// Organization B's real key id with a made-up secret.
    ForgedKey,
    /// Organization A's valid key, on organization B's resources.
    OtherOrganization,
    /// Organization B's own key.
    OwnOrganization,
    Operator,
    /// A signed-in dashboard session cookie and no bearer token.
    OperatorSession,
}

const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::GarbageToken,
    Caller::WrongScheme,
    Caller::ForgedKey,
    Caller::OtherOrganization,
    Caller::OwnOrganization,
    Caller::Operator,
    Caller::OperatorSession,
];

impl Caller {
    fn has_valid_bearer(self) -> bool {
        matches!(
            self,
            Caller::OtherOrganization | Caller::OwnOrganization | Caller::Operator
        )
    }
}

/// What the matrix expects: a status, and for JSON errors the code.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    status: u16,
    code: Option<&'static str>,
}

const fn answer(status: u16, code: Option<&'static str>) -> Expected {
    Expected { status, code }
}

const UNAUTHORIZED: Expected = answer(401, Some("unauthorized"));
const NOT_FOUND: Expected = answer(404, Some("not_found"));

fn expected(route: &Route, caller: Caller) -> Expected {
    let ok = answer(route.ok, None);
    match route.guard {
        Guard::Public => ok,
        Guard::PublicOrValidToken => match caller {
            Caller::GarbageToken | Caller::WrongScheme | Caller::ForgedKey => UNAUTHORIZED,
            _ => ok,
        },
        Guard::Operator => match caller {
            Caller::Operator => ok,
            Caller::OtherOrganization | Caller::OwnOrganization => NOT_FOUND,
            _ => UNAUTHORIZED,
        },
        Guard::OwnOrganization => match caller {
            Caller::Operator | Caller::OwnOrganization => ok,
            Caller::OtherOrganization => NOT_FOUND,
            _ => UNAUTHORIZED,
        },
        Guard::AnyCredential => {
            if caller.has_valid_bearer() {
                ok
            } else {
                UNAUTHORIZED
            }
        }
        Guard::SentryKey => match caller {
            Caller::OwnOrganization => ok,
            _ => UNAUTHORIZED,
        },
        Guard::StripeSignature => answer(400, Some("invalid_signature")),
        Guard::Session => match caller {
            Caller::OperatorSession => ok,
            // No session: to the login page, whatever bearer token came along.
            _ => answer(303, None),
        },
        Guard::LoginForm => match (route.method, caller) {
            // Already signed in: the login page sends the operator to the dashboard.
            ("GET", Caller::OperatorSession) => answer(303, None),
            _ => ok,
        },
    }
}

/// Organization B's resources (and A's credentials) the matrix calls with.
struct Fixture {
    org_a: String,
    org_b: String,
    key_a: String,
    key_b: String,
    key_b_id: String,
    dsn_key_a: String,
    dsn_key_b: String,
    project_b: String,
    event_b: String,
    ticket_type_b: String,
    /// An active hold for reading and checkout pages.
    hold_view: String,
    /// An active hold the matrix pays for (payment intents).
    hold_pay: String,
    /// An active hold the matrix cancels (DELETE, leaving the checkout page).
    hold_cancel: String,
    order_b: String,
    group_b: String,
    email_b: String,
    session_cookie: String,
}

fn client_without_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn value_of_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(SET_COOKIE).iter().find_map(|value| {
        let pair = value.to_str().ok()?.split(';').next()?;
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// Signs in to the dashboard with `token` through the login form; the answer's status and
/// the session cookie, if one was set.
async fn dashboard_login(app: &TestApp, token: &str) -> (u16, Option<String>) {
    let client = client_without_redirects();
    let form = client.get(app.url("/admin/login")).send().await.unwrap();
    let login_cookie = value_of_cookie(form.headers(), "bo_login_csrf").unwrap();
    let csrf = hidden_field(&form.text().await.unwrap(), "csrf_token");
    let answer = client
        .post(app.url("/admin/login"))
        .header("cookie", format!("bo_login_csrf={login_cookie}"))
        .form(&[("token", token), ("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, value_of_cookie(answer.headers(), "bo_admin"))
}

async fn mint_key(app: &TestApp, org: &str) -> String {
    let minted = app
        .post_as(
            OPERATOR_TOKEN,
            &format!("/api/v1/organizations/{org}/api-keys"),
            json!({}),
        )
        .await;
    assert_eq!(minted.status, 201, "{}", minted.body);
    minted.body["key"].as_str().unwrap().to_owned()
}

/// `http://<public_key>@host/<project>` → (public key, project id).
async fn dsn_of(app: &TestApp, org: &str) -> (String, String) {
    let answer = app
        .get_as(OPERATOR_TOKEN, &format!("/api/v1/organizations/{org}"))
        .await;
    let dsn = url::Url::parse(answer.body["error_dsn"].as_str().unwrap()).unwrap();
    (dsn.username().to_owned(), dsn.path().trim_start_matches('/').to_owned())
}

async fn hold_for(app: &TestApp, event: &str, ticket_type: &str, email: Option<&str>) -> String {
    let mut body = json!({ "event_id": event, "items": [{ "ticket_type_id": ticket_type, "quantity": 1 }] });
    if let Some(email) = email {
        body["customer_email"] = json!(email);
    }
    let hold = app.post("/api/v1/reservations", body).await;
    assert_eq!(hold.status, 201, "{}", hold.body);
    hold.body["id"].as_str().unwrap().to_owned()
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}")
}

fn options() -> AppOptions {
    AppOptions {
        stripe_secret_key: Some(STRIPE_KEY.into()),
        webhook_secrets: vec![WEBHOOK_SECRET.into()],
        ..AppOptions::default()
    }
}

async fn fixture(app: &TestApp) -> Fixture {
    let org_a = app.create_organization("Org A").await;
    let org_b = app.create_organization(ORG_B_NAME).await;
    let key_a = mint_key(app, &org_a).await;
    let key_b = mint_key(app, &org_b).await;
    let key_b_id = key_b.rsplit_once('_').unwrap().0.to_owned();
    let (dsn_key_a, _) = dsn_of(app, &org_a).await;
    let (dsn_key_b, project_b) = dsn_of(app, &org_b).await;
    let (event_b, tts) = app.create_event(&org_b, &[("B-GA", 2_500, 1_000)]).await;
    let ticket_type_b = tts[0].clone();

    // A paid order of B's, which queues B's confirmation e-mail.
    let hold_paid = hold_for(app, &event_b, &ticket_type_b, Some(BUYER_EMAIL)).await;
    let intent = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/reservations/{hold_paid}/payment-intent")))
                .header("idempotency-key", "fixture-pay"),
        )
        .await;
    assert_eq!(intent.status, 201, "{}", intent.body);
    let order_b = intent.body["order_id"].as_str().unwrap().to_owned();
    let payment_intent = intent.body["payment_intent_id"].as_str().unwrap();
    let confirmed = app
        .send(
            app.client
                .post(app.url(&format!("/_fake-stripe/v1/payment_intents/{payment_intent}/confirm")))
                .bearer_auth(STRIPE_KEY)
                .form(&[("payment_method", "pm_card_visa")]),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    eventually("the order to be paid", || async {
        (app.get(&format!("/api/v1/orders/{order_b}")).await.body["status"] == "paid").then_some(())
    })
    .await;
    let email_b = eventually("the confirmation e-mail", || async {
        let emails = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/emails").await;
        emails.body["data"]
            .as_array()
            .and_then(|data| data.first())
            .map(|email| email["id"].as_str().unwrap().to_owned())
    })
    .await;

    // An error group of B's.
    let reported = app
        .post_as(
            &key_b,
            "/api/v1/errors",
            json!({ "severity": "error", "message": "B's private failure", "fingerprint": ["org-b-failure"] }),
        )
        .await;
    assert_eq!(reported.status, 202, "{}", reported.body);
    let scope_b = format!("org:{org_b}");
    let group_b = eventually("B's error group", || async {
        let groups = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
        groups.body["data"]
            .as_array()?
            .iter()
            .find(|group| group["scope"] == scope_b.as_str())
            .map(|group| group["id"].as_str().unwrap().to_owned())
    })
    .await;

    let (status, session) = dashboard_login(app, OPERATOR_TOKEN).await;
    assert_eq!(status, 303);
    Fixture {
        hold_view: hold_for(app, &event_b, &ticket_type_b, None).await,
        hold_pay: hold_for(app, &event_b, &ticket_type_b, None).await,
        hold_cancel: hold_for(app, &event_b, &ticket_type_b, None).await,
        org_a,
        org_b,
        key_a,
        key_b,
        key_b_id,
        dsn_key_a,
        dsn_key_b,
        project_b,
        event_b,
        ticket_type_b,
        order_b,
        group_b,
        email_b,
        session_cookie: format!("bo_admin={}", session.unwrap()),
    }
}

impl Fixture {
    /// The route's path with organization B's resources in it.
    fn path(&self, route: &Route) -> String {
        let hold = match (route.method, route.path) {
            ("DELETE", _) | (_, "/checkout/{hold_id}/leave") => &self.hold_cancel,
            (_, "/api/v1/reservations/{reservation_id}/payment-intent") => &self.hold_pay,
            _ => &self.hold_view,
        };
        route
            .path
            .replace("{event_id}", &self.event_b)
            .replace("{reservation_id}", hold)
            .replace("{hold_id}", hold)
            .replace("{order_id}", &self.order_b)
            .replace("{org_id}", &self.org_b)
            .replace("{ticket_type_id}", &self.ticket_type_b)
            .replace("{job}", "expire-holds")
            .replace("{group_id}", &self.group_b)
            .replace("{email_id}", &self.email_b)
            .replace("{project_id}", &self.project_b)
            .replace("{file}", "app.css")
    }

    fn request(
        &self,
        app: &TestApp,
        client: &reqwest::Client,
        route: &Route,
        caller: Caller,
    ) -> reqwest::RequestBuilder {
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let mut request = client.request(method, app.url(&self.path(route)));
        request = match caller {
            Caller::Anonymous => request,
            Caller::GarbageToken => request.bearer_auth("not-a-token"),
            Caller::WrongScheme => request.header("authorization", format!("Basic {OPERATOR_TOKEN}")),
            Caller::ForgedKey => request.bearer_auth(format!("{}_{}", self.key_b_id, "0".repeat(64))),
            Caller::OtherOrganization => request.bearer_auth(&self.key_a),
            Caller::OwnOrganization => request.bearer_auth(&self.key_b),
            Caller::Operator => request.bearer_auth(OPERATOR_TOKEN),
            Caller::OperatorSession => request.header("cookie", &self.session_cookie),
        };
        match (route.method, route.path) {
            ("POST", "/api/v1/organizations") => request.json(&json!({ "name": format!("made by {caller:?}") })),
            ("POST", "/api/v1/organizations/{org_id}/api-keys") => request.json(&json!({})),
            ("POST", "/api/v1/events") => request.json(&json!({
                "organization_id": self.org_b, "name": format!("made by {caller:?}"),
                "starts_at": "2030-01-01T20:00:00Z", "currency": "EUR",
            })),
            ("POST", "/api/v1/events/{event_id}/ticket-types") => request.json(&json!({
                "name": format!("made by {caller:?}"), "price_cents": 1, "capacity": 1,
            })),
            ("PATCH", _) => request.json(&json!({ "name": format!("renamed by {caller:?}") })),
            ("POST", "/api/v1/reservations") => request.json(&json!({
                "event_id": self.event_b, "items": [{ "ticket_type_id": self.ticket_type_b, "quantity": 1 }],
            })),
            ("POST", "/api/v1/reservations/{reservation_id}/payment-intent") => {
                request.header("idempotency-key", "matrix-pay").body("")
            }
            ("POST", "/api/v1/errors") => request.json(&json!({
                "severity": "warning", "message": format!("reported by {caller:?}"),
                "fingerprint": [format!("matrix-{caller:?}")],
            })),
            ("POST", "/api/{project_id}/envelope/") => {
                let sentry_key = match caller {
                    Caller::OwnOrganization => Some(&self.dsn_key_b),
                    Caller::OtherOrganization => Some(&self.dsn_key_a),
                    _ => None,
                };
                let request = match sentry_key {
                    Some(key) => request.header("x-sentry-auth", format!("Sentry sentry_version=7, sentry_key={key}")),
                    None => request,
                };
                let event = json!({ "message": "from the matrix", "level": "error" }).to_string();
                request.body(format!(
                    "{{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}}\n{{\"type\":\"event\"}}\n{event}\n"
                ))
            }
            ("OPTIONS", _) => request
                .header("origin", "https://shop.example.org")
                .header("access-control-request-method", "POST"),
            ("POST", "/_errors/browser") => {
                request.json(&json!({ "message": "TypeError: x is undefined", "url": "/" }))
            }
            ("POST", "/webhooks/stripe") => request
                .header("stripe-signature", "t=1,v1=00")
                .body(r#"{"id":"evt_matrix","type":"charge.refunded"}"#),
            ("POST", "/events/{event_id}/reserve") => {
                let field = format!("qty_{}", self.ticket_type_b);
                request.form(&[(field.as_str(), "1")])
            }
            ("POST", "/admin/errors/{group_id}/resolve") | ("POST", "/admin/logout") => {
                let csrf = hidden_field_of_session(&self.session_cookie);
                request.form(&[("csrf_token", csrf.as_str())])
            }
            ("POST", _) => request.form(&[("x", "y")]),
            _ => request,
        }
    }
}

/// The CSRF token of a session: read from a dashboard page once per session cookie.
fn hidden_field_of_session(session_cookie: &str) -> String {
    CSRF.lock()
        .unwrap()
        .iter()
        .find(|(cookie, _)| cookie == session_cookie)
        .map(|(_, token)| token.clone())
        .unwrap_or_default()
}

static CSRF: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn is_page(route: &Route) -> bool {
    !route.path.starts_with("/api/")
        && !matches!(
            route.path,
            "/webhooks/stripe" | "/healthz" | "/readyz" | "/metrics" | "/_errors/browser"
        )
}

both_engines!(
    every_route_answers_every_kind_of_caller_as_the_spec_says,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(&db, options()).await;
        let fixture = fixture(&app).await;
        let page = client_without_redirects()
            .get(app.url("/admin"))
            .header("cookie", &fixture.session_cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        CSRF.lock()
            .unwrap()
            .push((fixture.session_cookie.clone(), hidden_field(&page, "csrf_token")));

        let client = client_without_redirects();
        // Secrets of organization B that no other caller may ever see.
        let b_secrets = [
            ORG_B_NAME.to_owned(),
            fixture.key_b.clone(),
            fixture.dsn_key_b.clone(),
            BUYER_EMAIL.to_owned(),
            "B's private failure".to_owned(),
        ];
        let mut failures = Vec::new();
        let mut cases = 0;
        // Logging out (a row of the matrix) ends nothing for later rows: the session
        // cookie is stateless and stays valid until it expires.
        for route in ROUTES {
            for caller in CALLERS {
                cases += 1;
                let response = fixture.request(&app, &client, route, caller).send().await.unwrap();
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let text = response.text().await.unwrap();
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let code = body["error"]["code"].as_str();
                let want = expected(route, caller);
                let label = format!("{} {} as {caller:?}", route.method, route.path);
                if status >= 500 {
                    failures.push(format!("{label}: {status} {text}"));
                    continue;
                }
                let code_matches = want.code.is_none_or(|want| code == Some(want));
                if status != want.status || !code_matches {
                    failures.push(format!(
                        "{label}: expected {} {:?}, got {status} {:?}: {}",
                        want.status,
                        want.code,
                        code,
                        text.chars().take(300).collect::<String>()
                    ));
                }
                if want.status == 303 && route.guard == Guard::Session {
                    let location = headers.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
                    // Without a session, always the login page; with one, resolving a
                    // group shows that group (logging out goes to the login page too).
                    let want_location = match (caller, route.path) {
                        (Caller::OperatorSession, "/admin/errors/{group_id}/resolve") => {
                            format!("/admin/errors/{}", fixture.group_b)
                        }
                        _ => "/admin/login".to_owned(),
                    };
                    if location != want_location {
                        failures.push(format!("{label}: redirected to {location:?}, not {want_location:?}"));
                    }
                }
                if route.method == "OPTIONS" {
                    let methods = headers
                        .get("access-control-allow-methods")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    if !methods.contains("POST") {
                        failures.push(format!("{label}: preflight allows {methods:?}, not POST"));
                    }
                }
                // Organization B's private data reaches only B and the operator.
                let may_see_b = matches!(
                    caller,
                    Caller::OwnOrganization | Caller::Operator | Caller::OperatorSession
                );
                let public_body = matches!(route.guard, Guard::Public | Guard::PublicOrValidToken);
                if !may_see_b && !public_body {
                    for secret in &b_secrets {
                        if text.contains(secret.as_str()) {
                            failures.push(format!("{label}: the answer shows {secret:?}"));
                        }
                    }
                }
                if is_page(route) {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let csp = header("content-security-policy");
                    if !csp.contains("frame-ancestors 'none'") || csp.contains("unsafe-inline") {
                        failures.push(format!("{label}: content-security-policy {csp:?}"));
                    }
                    if header("x-content-type-options") != "nosniff" || header("x-frame-options") != "DENY" {
                        failures.push(format!("{label}: nosniff/frame options missing"));
                    }
                    if header("referrer-policy").is_empty() {
                        failures.push(format!("{label}: no referrer-policy"));
                    }
                }
            }
        }
        assert_eq!(cases, ROUTES.len() * CALLERS.len());
        assert!(
            failures.is_empty(),
            "{} of {cases} cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );

        // Nothing another organization's key sent took effect in B.
        let events_b = app
            .get(&format!("/api/v1/events?organization_id={}&limit=500", fixture.org_b))
            .await;
        let names: BTreeSet<&str> = events_b.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["Test event", "made by OwnOrganization", "made by Operator"]),
            "only B's key and the operator created events in B"
        );
        let event = app.get(&format!("/api/v1/events/{}", fixture.event_b)).await;
        let types: BTreeSet<&str> = event.body["ticket_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tt| tt["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            BTreeSet::from(["renamed by Operator", "made by OwnOrganization", "made by Operator"])
        );
        // An organization key's error reports land in its own organization, never B's.
        let groups = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
        let scope_of = |fingerprint_message: &str| {
            groups.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|group| group["title"].as_str().is_some_and(|t| t.contains(fingerprint_message)))
                .map(|group| group["scope"].as_str().unwrap().to_owned())
        };
        assert_eq!(
            scope_of("reported by OtherOrganization"),
            Some(format!("org:{}", fixture.org_a))
        );
        assert_eq!(
            scope_of("reported by OwnOrganization"),
            Some(format!("org:{}", fixture.org_b))
        );
    }
);

both_engines!(
    organization_keys_cannot_sign_in_to_the_dashboard_and_sessions_do_not_authenticate_the_api,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        let app = spawn_app(&db, options()).await;
        let org = app.create_organization("Org A").await;
        let key = mint_key(&app, &org).await;
        let (status, session) = dashboard_login(&app, &key).await;
        assert_eq!(
            (status, session),
            (401, None),
            "an organization key is not the operator token"
        );
        // A session cookie is not a bearer credential: the JSON API (no CSRF tokens) must
        // not accept it, or any page could make a signed-in browser call it.
        let (status, session) = dashboard_login(&app, OPERATOR_TOKEN).await;
        assert_eq!(status, 303);
        let answer = app
            .send(
                app.client
                    .get(app.url("/api/v1/admin/errors"))
                    .header("cookie", format!("bo_admin={}", session.unwrap())),
            )
            .await;
        assert_eq!((answer.status, answer.code()), (401, "unauthorized"));
    }
);

/// The `.route("path", method(…))` calls in `source`: (METHOD, path) pairs.
fn routes_in_source(source: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(".route(") {
        let call = &rest[start + ".route(".len()..];
        // The call's text up to its closing parenthesis.
        let mut depth = 1;
        let mut end = call.len();
        for (i, c) in call.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let call = &call[..end];
        let path = call.split('"').nth(1).unwrap().to_owned();
        for method in ["get", "post", "patch", "put", "delete", "options"] {
            let needle = format!("{method}(");
            let mut search = call;
            while let Some(at) = search.find(&needle) {
                let before = search[..at].chars().last();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                    found.push((method.to_uppercase(), path.clone()));
                }
                search = &search[at + needle.len()..];
            }
        }
        rest = &rest[start + 1..];
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_classified() {
    let classified: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|route| (route.method.to_owned(), route.path.to_owned()))
        .collect();
    assert_eq!(classified.len(), ROUTES.len(), "a route is listed twice");

    // Every `.route(…)` of the router's source, and nothing more.
    let sources = [
        include_str!("../src/http/mod.rs"),
        include_str!("../src/pages/mod.rs"),
        include_str!("../src/pages/buyer/mod.rs"),
        include_str!("../src/pages/admin/mod.rs"),
    ];
    let routed: BTreeSet<(String, String)> = sources.iter().flat_map(|source| routes_in_source(source)).collect();
    let unclassified: Vec<_> = routed.difference(&classified).collect();
    assert!(
        unclassified.is_empty(),
        "routes missing from the security matrix: {unclassified:?}"
    );
    let stale: Vec<_> = classified.difference(&routed).collect();
    assert!(
        stale.is_empty(),
        "the matrix lists routes the router does not have: {stale:?}"
    );
    // Routers mounted elsewhere: only the Stripe test double (tested below).
    let startup = include_str!("../src/startup.rs");
    assert_eq!(startup.matches(".nest(").count(), 1, "a router is nested in startup.rs");
    assert_eq!(
        startup.matches(".merge(").count(),
        0,
        "a router is merged in startup.rs"
    );
    assert_eq!(startup.matches(".route(").count(), 0, "a route is added in startup.rs");

    // Every operation of the OpenAPI document.
    let db = TestDatabase::new(Engine::Sqlite).await;
    let app = spawn_app(&db, AppOptions::default()).await;
    let document = app.get("/api/openapi.json").await;
    assert_eq!(document.status, 200);
    let mut documented = BTreeSet::new();
    for (path, item) in document.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "patch", "put", "delete", "options", "head"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(documented.len() >= 25, "{documented:?}");
    let undocumented_in_matrix: Vec<_> = documented.difference(&classified).collect();
    assert!(
        undocumented_in_matrix.is_empty(),
        "OpenAPI operations missing from the security matrix: {undocumented_in_matrix:?}"
    );
}

// The built-in Stripe double (mounted only when no Stripe base URL is configured) takes
// only its own key: none of boxoffice's credentials open it.
both_engines!(the_stripe_double_takes_only_its_own_key, |engine| async move {
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(&db, options()).await;
    let org = app.create_organization("Org A").await;
    let key = mint_key(&app, &org).await;
    for token in [None, Some(OPERATOR_TOKEN), Some(key.as_str()), Some("sk_test_wrong")] {
        let mut request = app.client.get(app.url("/_fake-stripe/v1/events"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(app.send(request).await.status, 401, "{token:?}");
    }
    let own = app
        .send(
            app.client
                .get(app.url("/_fake-stripe/v1/events"))
                .bearer_auth(STRIPE_KEY),
        )
        .await;
    assert_eq!(own.status, 200);
});

// ----- secrets at rest --------------------------------------------------------------------

/// Every byte of the SQLite database (main file, WAL and shared memory).
fn sqlite_bytes(url: &str) -> Vec<u8> {
    let path = url.strip_prefix("sqlite://").unwrap();
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        if let Ok(mut file) = std::fs::read(format!("{path}{suffix}")) {
            bytes.append(&mut file);
        }
    }
    bytes
}

/// Every row of every table of the PostgreSQL database, as text.
async fn postgres_text(url: &str) -> String {
    use sqlx::Connection;
    use sqlx::Row;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(!tables.is_empty());
    let mut text = String::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        for row in rows {
            text.push_str(&row.get::<String, _>(0));
            text.push('\n');
        }
    }
    text
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

both_engines!(
    api_keys_and_the_operator_token_are_stored_only_as_hashes,
    |engine| async move {
        let db = TestDatabase::new(engine).await;
        // No configured token: one is generated, printed once and stored (hashed).
        let spool = tempfile::tempdir().unwrap();
        let config = boxoffice_server::ServerConfig {
            database_url: db.url.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            sweep_interval: Duration::ZERO,
            error_spool_dir: Some(spool.path().join("spool")),
            mail_dir: Some(spool.path().join("mail")),
            ..boxoffice_server::ServerConfig::default()
        };
        let server = boxoffice_server::Server::build(config, Arc::new(boxoffice_core::SystemClock))
            .await
            .unwrap();
        let operator = server.generated_operator_token().unwrap().expose().to_owned();
        let base = format!("http://{}", server.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::new();
        let org: Value = client
            .post(format!("{base}/api/v1/organizations"))
            .bearer_auth(&operator)
            .json(&json!({ "name": "Hashed" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let org = org["id"].as_str().unwrap();
        let mut keys = Vec::new();
        for _ in 0..3 {
            let minted: Value = client
                .post(format!("{base}/api/v1/organizations/{org}/api-keys"))
                .bearer_auth(&operator)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let key = minted["key"].as_str().unwrap().to_owned();
            // The key works, so it is stored in some form.
            let own = client
                .get(format!("{base}/api/v1/organizations/{org}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(own.status(), StatusCode::OK);
            keys.push(key);
        }
        let _ = tx.send(());
        task.await.unwrap().unwrap();

        let secret_part = |key: &str| key.rsplit_once('_').unwrap().1.to_owned();
        let mut secrets = vec![operator.clone(), operator.trim_start_matches("bo_admin_").to_owned()];
        secrets.extend(keys.iter().map(|key| secret_part(key)));
        match engine {
            Engine::Sqlite => {
                let bytes = sqlite_bytes(&db.url);
                assert!(bytes.len() > 4096);
                // The hashes are there (so this search would find a stored value)…
                let hash = boxoffice_core::auth::SecretToken::new(operator.as_str())
                    .hash()
                    .to_hex();
                assert!(contains(&bytes, &hash), "the operator token's hash is stored");
                // …the secrets are not.
                for secret in &secrets {
                    assert!(
                        !contains(&bytes, secret),
                        "a secret is stored in clear in the SQLite file"
                    );
                }
            }
            Engine::Postgres => {
                let text = postgres_text(&db.url).await;
                let hash = boxoffice_core::auth::SecretToken::new(operator.as_str())
                    .hash()
                    .to_hex();
                assert!(text.contains(&hash), "the operator token's hash is stored");
                for secret in &secrets {
                    assert!(
                        !text.contains(secret.as_str()),
                        "a secret is stored in clear in PostgreSQL"
                    );
                }
            }
        }
    }
);

// ----- the alert webhook's SSRF guard -----------------------------------------------------

/// A receiver on 127.0.0.1 that counts the requests it gets.
async fn loopback_receiver() -> (String, Arc<Mutex<usize>>) {
    let hits = Arc::new(Mutex::new(0usize));
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                *counter.lock().unwrap() += 1;
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (url, hits)
}

async fn critical_alert_delivery(app: &TestApp) -> Value {
    let reported = app
        .post_as(
            OPERATOR_TOKEN,
            "/api/v1/errors",
            json!({ "severity": "critical", "message": "the matrix room is on fire", "component": "checkout" }),
        )
        .await;
    assert_eq!(reported.status, 202, "{}", reported.body);
    eventually("the error to be grouped", || async {
        let groups = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors").await;
        groups.body["data"]
            .as_array()?
            .iter()
            .any(|group| group["title"].as_str().is_some_and(|t| t.contains("matrix room")))
            .then_some(())
    })
    .await;
    let run = app
        .post_as(OPERATOR_TOKEN, "/api/v1/admin/jobs/alert-sender/run", json!({}))
        .await;
    assert_eq!(run.status, 200, "{}", run.body);
    run.body
}

both_engines!(alerts_to_a_loopback_address_need_the_allow_flag, |engine| async move {
    // Without the flag: the receiver is never contacted; the refusal is a failed
    // delivery, recorded in the error store under `alerts`.
    let (url, hits) = loopback_receiver().await;
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(
        &db,
        AppOptions {
            alert_webhook_url: Some(url.clone()),
            // One attempt: the refusal is recorded at once.
            alert_retry: boxoffice_core::error_store::alerts::AlertRetry {
                max_attempts: 1,
                ..boxoffice_core::error_store::alerts::AlertRetry::default()
            },
            ..AppOptions::default()
        },
    )
    .await;
    critical_alert_delivery(&app).await;
    let refusal = eventually("the refused delivery to be recorded", || async {
        let groups = app.get_as(OPERATOR_TOKEN, "/api/v1/admin/errors?limit=500").await;
        groups.body["data"]
            .as_array()?
            .iter()
            .find(|group| group["component"] == "alerts")
            .cloned()
    })
    .await;
    let detail = app
        .get_as(
            OPERATOR_TOKEN,
            &format!("/api/v1/admin/errors/{}", refusal["id"].as_str().unwrap()),
        )
        .await;
    let recorded = detail.body.to_string();
    assert!(recorded.contains("loopback"), "{recorded}");
    assert!(recorded.contains("--alert-webhook-allow-private"), "{recorded}");
    assert_eq!(*hits.lock().unwrap(), 0, "a refused destination is never contacted");
    app.stop().await;

    // With the flag: delivered.
    let (url, hits) = loopback_receiver().await;
    let db = TestDatabase::new(engine).await;
    let app = spawn_app(
        &db,
        AppOptions {
            alert_webhook_url: Some(url),
            alert_webhook_allow_private: true,
            ..AppOptions::default()
        },
    )
    .await;
    critical_alert_delivery(&app).await;
    assert_eq!(*hits.lock().unwrap(), 1, "an allowed loopback receiver gets the alert");
});
