//! Server-rendered pages (SPEC §8): the buyer's events list, event page, checkout and
//! order confirmation, the operator's dashboard, and friendly error pages.
//!
//! No front-end build step and nothing loaded from elsewhere: templates (minijinja,
//! HTML-escaped by default) and static assets are compiled into the binary. Pages call the
//! same use cases as the JSON API. Every page answer carries the security headers of
//! [`security_headers`]: a CSP without inline script, `frame-ancestors 'none'`, `nosniff`
//! and a strict referrer policy; scripts are files under `/static/`, wired by `data-`
//! attributes, never inline.

pub mod admin;
pub mod browser_errors;
pub mod buyer;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;

use crate::http::api_error::InternalError;
use crate::http::middleware::{panic_response, rate_limit};
use crate::request_id::RequestId;
use crate::state::AppState;

/// A template compiled into the binary: (name, source).
pub type Template = (&'static str, &'static str);

/// A static asset compiled into the binary: (file name, content type, bytes).
pub type Asset = (&'static str, &'static str, &'static [u8]);

/// The shared templates (each page module lists its own).
const TEMPLATES: &[Template] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("error.html", include_str!("../../templates/error.html")),
];

/// The shared assets (each page module lists its own).
const ASSETS: &[Asset] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/app.css"),
    ),
    (
        "report-errors.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/report-errors.js"),
    ),
];

/// The Content-Security-Policy of every page: only this server's own scripts, styles and
/// images (`data:` for inline SVG QR codes), no inline script, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; \
     frame-ancestors 'none'";

/// The page templates.
pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    /// Loads the templates compiled into the binary.
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let mut env = Environment::new();
        // Escape by file name: every template here is HTML.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES.iter().chain(buyer::TEMPLATES).chain(admin::TEMPLATES) {
            env.add_template(name, source)?;
        }
        Ok(Arc::new(Self { env }))
    }

    /// Renders `template` with `context`; a rendering failure (a bug) is a 500 page.
    pub fn render(&self, template: &str, context: impl Serialize) -> Response {
        match self.env.get_template(template).and_then(|t| t.render(context)) {
            Ok(html) => Html(html).into_response(),
            Err(err) => {
                let mut response = error_page_text(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", None);
                response
                    .extensions_mut()
                    .insert(InternalError(format!("rendering {template}: {err:#}")));
                response
            }
        }
    }

    /// A friendly error page with the request id (filled in by the caller's middleware).
    pub fn error_page(&self, status: StatusCode, title: &str, message: &str, request_id: Option<&str>) -> Response {
        let context = minijinja::context! { title, message, request_id, status => status.as_u16() };
        let mut response = self.render("error.html", context);
        *response.status_mut() = status;
        response
    }
}

/// A minimal error page without templates (for when rendering itself failed).
fn error_page_text(status: StatusCode, title: &str, request_id: Option<&str>) -> Response {
    let escaped: String = title
        .chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{escaped}</title>\
         <h1>{escaped}</h1><p>Request id: <code>{}</code></p></html>",
        request_id.unwrap_or("-")
    );
    (status, Html(body)).into_response()
}

/// The pages and the static assets with the security headers on both, and the browser
/// error reports of the pages' script; all of them under [`html_errors`].
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .merge(buyer::routes(state.clone()))
        .merge(admin::routes(state.clone()))
        .route("/static/{file}", get(asset))
        .layer(axum::middleware::from_fn(security_headers));
    // Browser error reports from boxoffice's own pages: public, so rate-limited per
    // address, with a small body limit.
    let browser_errors = Router::new()
        .route("/_errors/browser", post(browser_errors::report))
        .layer(DefaultBodyLimit::max(browser_errors::MAX_BROWSER_REPORT_BYTES))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit));
    Router::new()
        .merge(pages)
        .merge(browser_errors)
        // A panic in a page handler is answered here, inside `html_errors`, so the browser
        // gets the 500 page; the application's own panic layer is outside this router.
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(state, html_errors))
}

/// Serves a compiled-in asset; cached for an hour (they change only with the binary).
async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS
        .iter()
        .chain(buyer::ASSETS)
        .chain(admin::ASSETS)
        .find(|(name, _, _)| *name == file)
    {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Adds the page security headers to every answer of the pages router.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    add_security_headers(response.headers_mut());
    response
}

/// The security headers of a page.
pub fn add_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// Whether a request is from a browser wanting a page (not an API client wanting JSON).
pub fn wants_html(headers: &HeaderMap, path: &str) -> bool {
    let api = path.starts_with("/api/") || path.starts_with("/webhooks/") || path.starts_with("/_fake-stripe");
    !api && headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// Layer of the page routes (outside their panic handler) and of the application's
/// fallbacks (`crate::app`), never of the API's routes: a browser that asked for a page
/// and got a JSON error (a 404 of an unknown order or address, a panic's 500) gets the
/// friendly error page instead, with the same status, the request id, and the original
/// answer's extensions (so the failure is still recorded with its cause).
pub async fn html_errors(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let wants_page = wants_html(request.headers(), request.uri().path());
    let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !wants_page || !is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (title, message) = match status {
        StatusCode::NOT_FOUND => (
            "Page not found",
            "There is no page at this address. It may have moved, or the link may be mistyped.",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("Too many requests", "Please wait a moment and try again."),
        status if status.is_server_error() => (
            "Something went wrong",
            "We could not show this page. The error has been recorded; please try again in a moment.",
        ),
        _ => ("This request could not be completed", "Please go back and try again."),
    };
    let (parts, _) = response.into_parts();
    let mut page = state.pages.error_page(status, title, message, request_id.as_deref());
    // Keep what observation needs (the recorded cause, a panic's backtrace).
    let mut extensions = parts.extensions;
    extensions.extend(std::mem::take(page.extensions_mut()));
    *page.extensions_mut() = extensions;
    add_security_headers(page.headers_mut());
    page
}
