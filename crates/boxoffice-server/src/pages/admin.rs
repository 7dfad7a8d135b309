//! The operator's dashboard, behind the operator token: error groups (with detail and
//! resolve), hold statistics, sweeper and reconciliation runs, webhook events and recent
//! orders.
//!
//! Sessions are stateless and shared by every instance: signing in with the operator token
//! sets the cookie `bo_admin` = `<expires_unix>.<hex HMAC-SHA256(session_key, "session|" +
//! expires)>` (HttpOnly, SameSite=Strict, Path=/admin, 12 hours), checked in constant time
//! on every request. Every form carries a CSRF token, hex HMAC(session_key, "csrf|" +
//! cookie value), and every POST without the right one is refused with 403 and changes
//! nothing. The login form, which has no session yet, uses a signed double-submit token
//! instead: the login page sets the short-lived cookie `bo_login_csrf` and embeds the same
//! value in the form. SameSite=Strict already keeps other sites' requests cookie-less; the
//! tokens are defense in depth.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use boxoffice_core::Timestamp;
use boxoffice_core::auth::{Caller, SecretToken};
use boxoffice_core::error_store::reports::{ErrorGroup, GroupFilter, StoredError};
use boxoffice_core::failures::Severity;
use boxoffice_core::ids::ErrorGroupId;
use boxoffice_core::jobs::{self, JobRun};
use boxoffice_core::payments::Order;
use boxoffice_core::webhooks::StoredStripeEvent;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Asset, Template};
use crate::http::api_error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::request_id::RequestId;
use crate::state::AppState;

/// This module's templates (under `templates/`).
pub const TEMPLATES: &[Template] = &[
    ("admin_layout.html", include_str!("../../templates/admin_layout.html")),
    ("admin_login.html", include_str!("../../templates/admin_login.html")),
    (
        "admin_overview.html",
        include_str!("../../templates/admin_overview.html"),
    ),
    ("admin_errors.html", include_str!("../../templates/admin_errors.html")),
    ("admin_error.html", include_str!("../../templates/admin_error.html")),
    (
        "admin_webhooks.html",
        include_str!("../../templates/admin_webhooks.html"),
    ),
    ("admin_orders.html", include_str!("../../templates/admin_orders.html")),
    ("admin_message.html", include_str!("../../templates/admin_message.html")),
];

/// This module's static assets (under `static/`).
pub const ASSETS: &[Asset] = &[(
    "admin.css",
    "text/css; charset=utf-8",
    include_bytes!("../../static/admin.css"),
)];

/// The session cookie.
pub const SESSION_COOKIE: &str = "bo_admin";
/// The login form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "bo_login_csrf";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// How long a login form stays usable.
pub const LOGIN_CSRF_TTL: Duration = Duration::from_secs(60 * 60);
/// The form field of CSRF tokens.
const CSRF_FIELD: &str = "csrf_token";
/// The largest form body the dashboard reads (its forms are a few hundred bytes).
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Rows shown per list page.
const LIST_ROWS: u32 = 100;
/// Job runs shown per job on the overview.
const OVERVIEW_RUNS: u32 = 10;

/// The dashboard's routes.
pub fn routes(state: AppState) -> Router<AppState> {
    // Signing in is public: the per-address limit of the public API applies.
    let login = Router::new()
        .route("/admin/login", get(login_page).post(login_submit))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::http::middleware::rate_limit,
        ));
    Router::new()
        .merge(login)
        .route("/admin/logout", post(logout))
        .route("/admin", get(overview))
        .route("/admin/errors", get(error_groups))
        .route("/admin/errors/{group_id}", get(error_group))
        .route("/admin/errors/{group_id}/resolve", post(resolve_group))
        .route("/admin/webhooks", get(webhook_events))
        .route("/admin/orders", get(recent_orders))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(no_store))
}

/// Dashboard pages show operational data: never cached, not even in the back button's
/// cache after signing out.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ----- signing: sessions and CSRF tokens -------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8; 32], message: &str) -> HmacSha256 {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        // HMAC takes keys of any length (RFC 2104 hashes long ones and pads short ones).
        unreachable!("HMAC-SHA256 accepts a 32-byte key")
    };
    mac.update(message.as_bytes());
    mac
}

fn sign(key: &[u8; 32], message: &str) -> String {
    hex::encode(mac(key, message).finalize().into_bytes())
}

/// Whether `tag_hex` is the MAC of `message`, compared in constant time.
fn verify(key: &[u8; 32], message: &str, tag_hex: &str) -> bool {
    match hex::decode(tag_hex) {
        Ok(tag) => mac(key, message).verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

/// Seconds since the epoch by the box office's clock.
fn now_unix(state: &AppState) -> i64 {
    state.boxoffice.now().as_millis().div_euclid(1000)
}

fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}

/// Parses the `<expires_unix>` part of a signed value; `None` unless it is 1–12 digits.
fn parse_expiry(raw: &str) -> Option<i64> {
    if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// A fresh session cookie value, valid for [`SESSION_TTL`] from `now`.
pub fn new_session(key: &[u8; 32], now: i64) -> String {
    let expires = now.saturating_add(ttl_seconds(SESSION_TTL));
    format!("{expires}.{}", sign(key, &format!("session|{expires}")))
}

/// Whether a session cookie value is ours and unexpired at `now`.
pub fn session_is_valid(key: &[u8; 32], value: &str, now: i64) -> bool {
    let Some((expires, tag)) = value.split_once('.') else {
        return false;
    };
    let Some(expires_at) = parse_expiry(expires) else {
        return false;
    };
    // The MAC is checked even for an expired value: the time taken says nothing.
    let authentic = verify(key, &format!("session|{expires}"), tag);
    authentic && expires_at > now
}

/// The CSRF token of the forms shown to the holder of `session`.
pub fn csrf_token(key: &[u8; 32], session: &str) -> String {
    sign(key, &format!("csrf|{session}"))
}

/// A fresh login-form token: `<expires>.<nonce>.<mac>`, the same value in the cookie and
/// the form. Signed, so a cookie planted by a sibling domain cannot be paired with a form.
fn new_login_token(key: &[u8; 32], now: i64) -> String {
    let expires = now.saturating_add(ttl_seconds(LOGIN_CSRF_TTL));
    let nonce = hex::encode(boxoffice_core::ids::random_bytes::<16>());
    let signed = format!("{expires}.{nonce}");
    format!("{signed}.{}", sign(key, &format!("login|{signed}")))
}

/// Whether the login form's token matches its cookie, is ours, and is unexpired.
fn login_token_is_valid(key: &[u8; 32], cookie: &str, submitted: &str, now: i64) -> bool {
    let same = cookie.len() == submitted.len() && bool::from(cookie.as_bytes().ct_eq(submitted.as_bytes()));
    let Some((signed, tag)) = cookie.rsplit_once('.') else {
        return false;
    };
    let Some((expires, nonce)) = signed.split_once('.') else {
        return false;
    };
    let Some(expires_at) = parse_expiry(expires) else {
        return false;
    };
    let authentic = nonce.len() == 32 && verify(key, &format!("login|{signed}"), tag);
    same && authentic && expires_at > now
}

// ----- cookies -----------------------------------------------------------------------------

/// The values of every cookie called `name` the request carries.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        })
}

/// Whether the browser reached us over HTTPS (directly, or through a proxy that says so):
/// cookies then also get `Secure`. A client lying about it only loses its own cookie.
fn request_is_https(headers: &HeaderMap, uri: &Uri) -> bool {
    uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/admin.
fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let expired = if max_age.is_zero() {
        "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    } else {
        ""
    };
    let cookie = format!(
        "{name}={value}; Max-Age={}{expired}; Path=/admin; HttpOnly; SameSite=Strict{secure}",
        max_age.as_secs()
    );
    // Names and values are ours: ASCII digits, hex and dots.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

// ----- the session extractor ---------------------------------------------------------------

/// A signed-in operator. Extracting it without a valid session redirects to the login page
/// (303), so no dashboard handler runs, and nothing changes, without one.
pub struct Session {
    /// The verified cookie value.
    value: String,
    /// The CSRF token of the forms this operator is shown.
    csrf_token: String,
}

impl Session {
    /// Whether a submitted form carries this session's CSRF token (constant time).
    fn accepts(&self, state: &AppState, form: &Form) -> bool {
        form.get(CSRF_FIELD)
            .is_some_and(|token| verify(&state.session_key, &format!("csrf|{}", self.value), token))
    }

    fn layout(&self, active: &'static str) -> Layout {
        Layout {
            csrf_token: self.csrf_token.clone(),
            active,
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let now = now_unix(state);
        let value = cookies(&parts.headers, SESSION_COOKIE)
            .find(|value| session_is_valid(&state.session_key, value, now))
            .map(str::to_owned);
        match value {
            Some(value) => Ok(Session {
                csrf_token: csrf_token(&state.session_key, &value),
                value,
            }),
            None => Err(Redirect::to("/admin/login").into_response()),
        }
    }
}

/// The request id, for error pages.
fn request_id(parts: Option<axum::Extension<RequestId>>) -> Option<String> {
    parts.map(|axum::Extension(RequestId(id))| id)
}

// ----- forms ---------------------------------------------------------------------------------

/// An `application/x-www-form-urlencoded` body, as name/value pairs.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Option<Self> {
        serde_urlencoded::from_bytes(body).ok().map(Form)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

// ----- page contexts -----------------------------------------------------------------------

/// What every dashboard page's layout needs.
#[derive(Serialize)]
struct Layout {
    /// For the sign-out form in the navigation.
    csrf_token: String,
    /// The navigation entry of this page (`overview`, `errors`, `webhooks`, `orders`).
    active: &'static str,
}

/// An instant, for `<time datetime="{iso}">{text}</time>`.
#[derive(Serialize)]
struct When {
    iso: String,
    text: String,
}

fn when(at: Timestamp) -> When {
    let iso = at.to_rfc3339();
    let nanos = i128::from(at.as_millis()) * 1_000_000;
    let text = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| iso.clone());
    When { iso, text }
}

/// `1234` EUR → `12.34 EUR`; currencies without minor units are shown whole.
fn money(cents: i64, currency: &str) -> String {
    const ZERO_DECIMAL: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    ];
    if ZERO_DECIMAL.contains(&currency.to_ascii_uppercase().as_str()) {
        return format!("{cents} {currency}");
    }
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

#[derive(Serialize)]
struct GroupView {
    id: String,
    title: String,
    severity: &'static str,
    component: Option<String>,
    count: i64,
    first_seen: When,
    last_seen: When,
    resolved: bool,
    scope: String,
    fingerprint: String,
}

impl From<ErrorGroup> for GroupView {
    fn from(group: ErrorGroup) -> Self {
        Self {
            id: group.id.to_string(),
            title: group.title,
            severity: group.severity.as_str(),
            component: group.component,
            count: group.count,
            first_seen: when(group.first_seen),
            last_seen: when(group.last_seen),
            resolved: group.resolved,
            scope: group.scope,
            fingerprint: group.fingerprint,
        }
    }
}

#[derive(Serialize)]
struct EventView {
    id: String,
    severity: &'static str,
    message: String,
    request_id: Option<String>,
    release: Option<String>,
    environment: Option<String>,
    received_at: When,
    /// The scrubbed report, pretty-printed.
    payload: String,
}

impl From<StoredError> for EventView {
    fn from(event: StoredError) -> Self {
        let payload = serde_json::from_str::<serde_json::Value>(&event.payload)
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or(event.payload);
        Self {
            id: event.event_id,
            severity: event.severity.as_str(),
            message: event.message,
            request_id: event.request_id,
            release: event.release,
            environment: event.environment,
            received_at: when(event.received_at),
            payload,
        }
    }
}

#[derive(Serialize)]
struct RunView {
    started_at: When,
    duration_ms: i64,
    outcome: &'static str,
    affected: u64,
    error: Option<String>,
}

impl From<JobRun> for RunView {
    fn from(run: JobRun) -> Self {
        Self {
            duration_ms: (run.finished_at.as_millis() - run.started_at.as_millis()).max(0),
            started_at: when(run.started_at),
            outcome: run.outcome.as_str(),
            affected: run.affected,
            error: run.error,
        }
    }
}

#[derive(Serialize)]
struct WebhookView {
    id: String,
    event_type: String,
    status: &'static str,
    outcome: Option<String>,
    last_error: Option<String>,
    delivery_count: i64,
    attempts: i64,
    received_at: When,
    applied_at: Option<When>,
}

impl From<StoredStripeEvent> for WebhookView {
    fn from(event: StoredStripeEvent) -> Self {
        Self {
            id: event.id,
            event_type: event.event_type,
            status: event.status.as_str(),
            outcome: event.outcome,
            last_error: event.last_error,
            delivery_count: event.delivery_count,
            attempts: event.attempts,
            received_at: when(event.received_at),
            applied_at: event.applied_at.map(when),
        }
    }
}

#[derive(Serialize)]
struct OrderView {
    id: String,
    hold_id: String,
    status: &'static str,
    amount: String,
    amount_cents: i64,
    currency: String,
    payment_intent_id: Option<String>,
    created_at: When,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        Self {
            id: order.id.to_string(),
            hold_id: order.hold_id.to_string(),
            status: order.status.as_str(),
            amount: money(order.amount.get(), order.currency.as_str()),
            amount_cents: order.amount.get(),
            currency: order.currency.to_string(),
            payment_intent_id: order.payment_intent_id,
            created_at: when(order.created_at),
        }
    }
}

/// Keeps the first `limit` rows of a list fetched with one extra; says whether more exist.
fn truncate<T>(mut rows: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let limit = limit as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

// ----- login and logout ----------------------------------------------------------------------

#[derive(Serialize)]
struct LoginPage<'a> {
    login_csrf: &'a str,
    error: Option<&'a str>,
}

fn login_form(state: &AppState, status: StatusCode, token: &str, error: Option<&str>) -> Response {
    let mut response = state.pages.render(
        "admin_login.html",
        LoginPage {
            login_csrf: token,
            error,
        },
    );
    if response.status().is_success() {
        *response.status_mut() = status;
    }
    response
}

/// A login form with a fresh token, its cookie set.
fn fresh_login_form(state: &AppState, https: bool, status: StatusCode, error: Option<&str>) -> Response {
    let token = new_login_token(&state.session_key, now_unix(state));
    let mut response = login_form(state, status, &token, error);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, &token, LOGIN_CSRF_TTL, https),
    );
    response
}

/// `GET /admin/login`: the sign-in form (or the dashboard, when signed in already).
async fn login_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let now = now_unix(&state);
    if cookies(&headers, SESSION_COOKIE).any(|value| session_is_valid(&state.session_key, value, now)) {
        return Redirect::to("/admin").into_response();
    }
    fresh_login_form(&state, request_is_https(&headers, &uri), StatusCode::OK, None)
}

/// `POST /admin/login` (`token`, `csrf_token`): checks the operator token in constant
/// time; on success sets the session cookie and redirects to the dashboard.
async fn login_submit(State(state): State<AppState>, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    let https = request_is_https(&headers, &uri);
    let now = now_unix(&state);
    let form = Form::parse(&body);
    let submitted = form.as_ref().and_then(|form| form.get(CSRF_FIELD)).unwrap_or("");
    let Some(login_token) = cookies(&headers, LOGIN_CSRF_COOKIE)
        .find(|cookie| login_token_is_valid(&state.session_key, cookie, submitted, now))
    else {
        return fresh_login_form(
            &state,
            https,
            StatusCode::FORBIDDEN,
            Some("This sign-in form has expired or did not come from this site. Please enter the token again."),
        );
    };
    let token = form
        .as_ref()
        .and_then(|form| form.get("token"))
        .map(str::trim)
        .filter(|token| !token.is_empty() && token.len() <= 512);
    let accepted = token.is_some_and(|token| state.operator_token_hash.matches(&SecretToken::new(token)));
    if !accepted {
        tracing::info!("dashboard sign-in refused: wrong operator token");
        // The form's token is still good: shown again, and no cookie is set.
        return login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            login_token,
            Some("That is not the operator token. Check it and try again."),
        );
    }
    let session = new_session(&state.session_key, now);
    let mut response = Redirect::to("/admin").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &session, SESSION_TTL, https),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, "", Duration::ZERO, https),
    );
    response
}

/// `POST /admin/logout` (`csrf_token`): clears the session cookie.
async fn logout(
    State(state): State<AppState>,
    session: Result<Session, Response>,
    headers: HeaderMap,
    uri: Uri,
    request_id: Option<axum::Extension<RequestId>>,
    body: Bytes,
) -> Response {
    let https = request_is_https(&headers, &uri);
    if let Ok(session) = &session {
        let accepted = Form::parse(&body).is_some_and(|form| session.accepts(&state, &form));
        if !accepted {
            return refused(&state, session, request_id);
        }
    }
    let mut response = Redirect::to("/admin/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", Duration::ZERO, https),
    );
    response
}

// ----- friendly refusals -------------------------------------------------------------------

#[derive(Serialize)]
struct MessagePage<'a> {
    #[serde(flatten)]
    layout: Layout,
    title: &'a str,
    message: &'a str,
    request_id: Option<String>,
}

/// 403 for a form without the right CSRF token; nothing was changed.
fn refused(state: &AppState, session: &Session, request_id: Option<axum::Extension<RequestId>>) -> Response {
    let mut response = state.pages.render(
        "admin_message.html",
        MessagePage {
            layout: session.layout(""),
            title: "This form has expired",
            message: "Nothing was changed. For your safety the dashboard only accepts forms it has just shown \
                      you. Go back, reload the page and try again.",
            request_id: self::request_id(request_id),
        },
    );
    if response.status().is_success() {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}

// ----- dashboard pages -------------------------------------------------------------------------

#[derive(Serialize)]
struct HoldStatsView {
    active: i64,
    expired: i64,
    completed: i64,
    cancelled: i64,
    total: i64,
    oldest_active: Option<When>,
}

#[derive(Serialize)]
struct OverviewPage {
    #[serde(flatten)]
    layout: Layout,
    holds: HoldStatsView,
    open_groups: usize,
    open_groups_more: bool,
    sweeper_runs: Vec<RunView>,
    reconciler_runs: Vec<RunView>,
}

/// `GET /admin`: hold statistics, open error groups, the latest sweeper and
/// reconciliation runs.
async fn overview(State(state): State<AppState>, session: Session) -> Result<Response, ApiError> {
    let caller = Caller::Operator;
    let stats = state.boxoffice.reservation_stats(&caller).await?;
    let open_filter = GroupFilter {
        severity: None,
        resolved: Some(false),
    };
    let open = state
        .boxoffice
        .list_error_groups(&caller, &open_filter, LIST_ROWS + 1)
        .await?;
    let (open, open_groups_more) = truncate(open, LIST_ROWS);
    let sweeper_runs = state
        .boxoffice
        .list_job_runs(&caller, jobs::EXPIRE_HOLDS, OVERVIEW_RUNS)
        .await?;
    let reconciler_runs = state
        .boxoffice
        .list_job_runs(&caller, jobs::WEBHOOK_RECONCILER, OVERVIEW_RUNS)
        .await?;
    let page = OverviewPage {
        layout: session.layout("overview"),
        holds: HoldStatsView {
            active: stats.active,
            expired: stats.expired,
            completed: stats.completed,
            cancelled: stats.cancelled,
            total: stats.active + stats.expired + stats.completed + stats.cancelled,
            oldest_active: stats.oldest_active_created_at.map(when),
        },
        open_groups: open.len(),
        open_groups_more,
        sweeper_runs: sweeper_runs.into_iter().map(Into::into).collect(),
        reconciler_runs: reconciler_runs.into_iter().map(Into::into).collect(),
    };
    Ok(state.pages.render("admin_overview.html", page))
}

#[derive(Deserialize)]
struct GroupsQuery {
    /// `open`, `resolved` or `all` (the default); anything else is `all`.
    status: Option<String>,
    /// A severity; anything else is every severity.
    severity: Option<String>,
}

#[derive(Serialize)]
struct GroupsPage {
    #[serde(flatten)]
    layout: Layout,
    groups: Vec<GroupView>,
    more: bool,
    status: &'static str,
    severity: &'static str,
    severities: &'static [&'static str],
}

/// `GET /admin/errors`: error groups, most recently seen first.
async fn error_groups(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(query): ApiQuery<GroupsQuery>,
) -> Result<Response, ApiError> {
    let (status, resolved) = match query.status.as_deref() {
        Some("open") => ("open", Some(false)),
        Some("resolved") => ("resolved", Some(true)),
        _ => ("all", None),
    };
    let severity = query.severity.as_deref().and_then(Severity::parse);
    let filter = GroupFilter { severity, resolved };
    let groups = state
        .boxoffice
        .list_error_groups(&Caller::Operator, &filter, LIST_ROWS + 1)
        .await?;
    let (groups, more) = truncate(groups, LIST_ROWS);
    let page = GroupsPage {
        layout: session.layout("errors"),
        groups: groups.into_iter().map(Into::into).collect(),
        more,
        status,
        severity: severity.map_or("", Severity::as_str),
        severities: &["debug", "info", "warning", "error", "critical"],
    };
    Ok(state.pages.render("admin_errors.html", page))
}

#[derive(Serialize)]
struct GroupPage {
    #[serde(flatten)]
    layout: Layout,
    group: GroupView,
    events: Vec<EventView>,
}

fn parse_group_id(raw: &str) -> Result<ErrorGroupId, ApiError> {
    ErrorGroupId::parse(raw).map_err(|_| ApiError::not_found("error group"))
}

/// `GET /admin/errors/{id}`: a group with its latest occurrences.
async fn error_group(
    State(state): State<AppState>,
    session: Session,
    ApiPath(group_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_group_id(&group_id)?;
    let (group, events) = state.boxoffice.get_error_group(&Caller::Operator, &id).await?;
    let page = GroupPage {
        layout: session.layout("errors"),
        group: group.into(),
        events: events.into_iter().map(Into::into).collect(),
    };
    Ok(state.pages.render("admin_error.html", page))
}

/// `POST /admin/errors/{id}/resolve` (`csrf_token`): marks the group resolved, then shows it.
async fn resolve_group(
    State(state): State<AppState>,
    session: Session,
    ApiPath(group_id): ApiPath<String>,
    request_id: Option<axum::Extension<RequestId>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !Form::parse(&body).is_some_and(|form| session.accepts(&state, &form)) {
        return Ok(refused(&state, &session, request_id));
    }
    let id = parse_group_id(&group_id)?;
    state.boxoffice.resolve_error_group(&Caller::Operator, &id).await?;
    Ok(Redirect::to(&format!("/admin/errors/{id}")).into_response())
}

#[derive(Serialize)]
struct WebhooksPage {
    #[serde(flatten)]
    layout: Layout,
    events: Vec<WebhookView>,
    more: bool,
}

/// `GET /admin/webhooks`: received webhook events, newest first.
async fn webhook_events(State(state): State<AppState>, session: Session) -> Result<Response, ApiError> {
    let events = state
        .boxoffice
        .list_webhook_events(&Caller::Operator, LIST_ROWS + 1)
        .await?;
    let (events, more) = truncate(events, LIST_ROWS);
    let page = WebhooksPage {
        layout: session.layout("webhooks"),
        events: events.into_iter().map(Into::into).collect(),
        more,
    };
    Ok(state.pages.render("admin_webhooks.html", page))
}

#[derive(Serialize)]
struct OrdersPage {
    #[serde(flatten)]
    layout: Layout,
    orders: Vec<OrderView>,
    more: bool,
}

/// `GET /admin/orders`: recent orders, newest first.
async fn recent_orders(State(state): State<AppState>, session: Session) -> Result<Response, ApiError> {
    let orders = state
        .boxoffice
        .list_recent_orders(&Caller::Operator, LIST_ROWS + 1)
        .await?;
    let (orders, more) = truncate(orders, LIST_ROWS);
    let page = OrdersPage {
        layout: session.layout("orders"),
        orders: orders.into_iter().map(Into::into).collect(),
        more,
    };
    Ok(state.pages.render("admin_orders.html", page))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn sessions_verify_until_they_expire() {
        let session = new_session(&KEY, 1_000);
        assert!(session_is_valid(&KEY, &session, 1_000));
        assert!(session_is_valid(&KEY, &session, 1_000 + 12 * 3600 - 1));
        assert!(!session_is_valid(&KEY, &session, 1_000 + 12 * 3600));
        assert!(!session_is_valid(&[8; 32], &session, 1_000), "another key");
        let (expires, tag) = session.split_once('.').unwrap_or_default();
        let later = expires.parse::<i64>().unwrap_or_default() + 3600;
        assert!(
            !session_is_valid(&KEY, &format!("{later}.{tag}"), 1_000),
            "moved expiry"
        );
        for forged in ["", ".", "abc", "1.2", "99999999999.00", "+5.ab", "5"] {
            assert!(!session_is_valid(&KEY, forged, 0), "{forged:?}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let a = new_session(&KEY, 1_000);
        let b = new_session(&KEY, 2_000);
        assert_eq!(csrf_token(&KEY, &a), csrf_token(&KEY, &a));
        assert_ne!(csrf_token(&KEY, &a), csrf_token(&KEY, &b));
        assert!(verify(&KEY, &format!("csrf|{a}"), &csrf_token(&KEY, &a)));
        assert!(!verify(&KEY, &format!("csrf|{a}"), &csrf_token(&KEY, &b)));
        assert!(!verify(&KEY, &format!("csrf|{a}"), "zz"));
    }

    #[test]
    fn login_tokens_must_match_their_cookie_and_be_ours() {
        let token = new_login_token(&KEY, 1_000);
        assert!(login_token_is_valid(&KEY, &token, &token, 1_000));
        assert!(!login_token_is_valid(&KEY, &token, "", 1_000));
        assert!(!login_token_is_valid(&KEY, &token, &token, 1_000 + 3600), "expired");
        let other = new_login_token(&KEY, 1_000);
        assert!(!login_token_is_valid(&KEY, &token, &other, 1_000));
        let planted = "9999999999.00000000000000000000000000000000.00";
        assert!(!login_token_is_valid(&KEY, planted, planted, 1_000), "unsigned");
    }

    #[test]
    fn money_is_shown_in_major_units() {
        assert_eq!(money(1234, "EUR"), "12.34 EUR");
        assert_eq!(money(5, "USD"), "0.05 USD");
        assert_eq!(money(500, "JPY"), "500 JPY");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; bo_admin=x.y"));
        headers.append(header::COOKIE, HeaderValue::from_static("bo_admin=z"));
        assert_eq!(cookies(&headers, SESSION_COOKIE).collect::<Vec<_>>(), ["x.y", "z"]);
    }
}
