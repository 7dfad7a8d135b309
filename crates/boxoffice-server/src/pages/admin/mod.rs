//! The operator's dashboard, behind the operator token: error groups (with detail and
//! resolve), hold statistics, sweeper and reconciliation runs, webhook events and recent
//! orders, one module per page; signing in and the session in `login` and `session`.
//!
//! This module has what the pages share: the routes, the form decoder, the layout's
//! context, how instants and amounts are shown, and the refusal of a form without its
//! CSRF token.

mod errors;
mod login;
mod orders;
mod overview;
pub mod session;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use boxoffice_core::Timestamp;
use serde::Serialize;

use super::{Asset, Template};
use crate::request_id::RequestId;
use crate::state::AppState;
use session::Session;

/// This module's templates (under `templates/`).
pub const TEMPLATES: &[Template] = &[
    (
        "admin_layout.html",
        include_str!("../../../templates/admin_layout.html"),
    ),
    ("admin_login.html", include_str!("../../../templates/admin_login.html")),
    (
        "admin_overview.html",
        include_str!("../../../templates/admin_overview.html"),
    ),
    (
        "admin_errors.html",
        include_str!("../../../templates/admin_errors.html"),
    ),
    ("admin_error.html", include_str!("../../../templates/admin_error.html")),
    (
        "admin_webhooks.html",
        include_str!("../../../templates/admin_webhooks.html"),
    ),
    (
        "admin_orders.html",
        include_str!("../../../templates/admin_orders.html"),
    ),
    (
        "admin_message.html",
        include_str!("../../../templates/admin_message.html"),
    ),
];

/// This module's static assets (under `static/`).
pub const ASSETS: &[Asset] = &[(
    "admin.css",
    "text/css; charset=utf-8",
    include_bytes!("../../../static/admin.css"),
)];

/// The largest form body the dashboard reads (its forms are a few hundred bytes).
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Rows shown per list page.
const LIST_ROWS: u32 = 100;

/// The dashboard's routes.
pub fn routes(state: AppState) -> Router<AppState> {
    // Signing in is public: the per-address limit of the public API applies.
    let login = Router::new()
        .route("/admin/login", get(login::login_page).post(login::login_submit))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::http::middleware::rate_limit,
        ));
    Router::new()
        .merge(login)
        .route("/admin/logout", post(login::logout))
        .route("/admin", get(overview::overview))
        .route("/admin/errors", get(errors::error_groups))
        .route("/admin/errors/{group_id}", get(errors::error_group))
        .route("/admin/errors/{group_id}/resolve", post(errors::resolve_group))
        .route("/admin/webhooks", get(webhooks::webhook_events))
        .route("/admin/orders", get(orders::recent_orders))
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

/// The request id, for error pages.
fn request_id(parts: Option<axum::Extension<RequestId>>) -> Option<String> {
    parts.map(|axum::Extension(RequestId(id))| id)
}

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

/// Keeps the first `limit` rows of a list fetched with one extra; says whether more exist.
fn truncate<T>(mut rows: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let limit = limit as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_major_units() {
        assert_eq!(money(1234, "EUR"), "12.34 EUR");
        assert_eq!(money(5, "USD"), "0.05 USD");
        assert_eq!(money(500, "JPY"), "500 JPY");
    }
}
