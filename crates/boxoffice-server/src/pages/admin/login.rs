//! Signing in to the dashboard with the operator token (`GET`/`POST /admin/login`) and
//! signing out (`POST /admin/logout`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::HeaderMap;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use boxoffice_core::auth::SecretToken;
use serde::Serialize;

use super::session::{
    CSRF_FIELD, Session, login_token, new_login_token, now_unix, request_is_https, sign_in, sign_out,
};
use super::{Form, refused};
use crate::request_id::RequestId;
use crate::state::AppState;

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
    let (token, cookie) = new_login_token(&state.session_keys, now_unix(state), https);
    (cookie, login_form(state, status, &token, error)).into_response()
}

/// `GET /admin/login`: the sign-in form (or the dashboard, when signed in already).
pub(super) async fn login_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    if Session::exists(&headers, &state) {
        return Redirect::to("/admin").into_response();
    }
    fresh_login_form(&state, request_is_https(&headers, &uri), StatusCode::OK, None)
}

/// `POST /admin/login` (`token`, `csrf_token`): checks the operator token in constant
/// time; on success sets the session cookie and redirects to the dashboard.
pub(super) async fn login_submit(State(state): State<AppState>, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    let https = request_is_https(&headers, &uri);
    let now = now_unix(&state);
    let form = Form::parse(&body);
    let submitted = form.as_ref().and_then(|form| form.get(CSRF_FIELD)).unwrap_or("");
    let Some(login_token) = login_token(&headers, &state.session_keys, submitted, now) else {
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
            &login_token,
            Some("That is not the operator token. Check it and try again."),
        );
    }
    let (session, cleared_login_cookie) = sign_in(&state.session_keys, now, https);
    (session, cleared_login_cookie, Redirect::to("/admin")).into_response()
}

/// `POST /admin/logout` (`csrf_token`): clears the session cookie (also when the session
/// is no longer valid, so a stale cookie goes away).
pub(super) async fn logout(
    State(state): State<AppState>,
    session: Result<Session, Response>,
    headers: HeaderMap,
    uri: Uri,
    request_id: Option<axum::Extension<RequestId>>,
    body: Bytes,
) -> Response {
    let https = request_is_https(&headers, &uri);
    if let Ok(session) = &session {
        let accepted = Form::parse(&body).is_some_and(|form| session.accepts(&form));
        if !accepted {
            return refused(&state, session, request_id);
        }
    }
    (sign_out(https), Redirect::to("/admin/login")).into_response()
}
