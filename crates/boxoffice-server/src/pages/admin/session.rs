//! The dashboard's sessions and CSRF tokens.
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

use axum::extract::FromRequestParts;
use axum::http::Uri;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Form, Layout};
use crate::state::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "bo_admin";
/// The login form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "bo_login_csrf";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// How long a login form stays usable.
pub const LOGIN_CSRF_TTL: Duration = Duration::from_secs(60 * 60);
/// The form field of CSRF tokens.
pub(super) const CSRF_FIELD: &str = "csrf_token";

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
pub(super) fn now_unix(state: &AppState) -> i64 {
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
pub(super) fn new_login_token(key: &[u8; 32], now: i64) -> String {
    let expires = now.saturating_add(ttl_seconds(LOGIN_CSRF_TTL));
    let nonce = hex::encode(boxoffice_core::ids::random_bytes::<16>());
    let signed = format!("{expires}.{nonce}");
    format!("{signed}.{}", sign(key, &format!("login|{signed}")))
}

/// Whether the login form's token matches its cookie, is ours, and is unexpired.
pub(super) fn login_token_is_valid(key: &[u8; 32], cookie: &str, submitted: &str, now: i64) -> bool {
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

/// The values of every cookie called `name` the request carries.
pub(super) fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
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
pub(super) fn request_is_https(headers: &HeaderMap, uri: &Uri) -> bool {
    uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/admin.
pub(super) fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
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
    pub(super) fn accepts(&self, state: &AppState, form: &Form) -> bool {
        form.get(CSRF_FIELD)
            .is_some_and(|token| verify(&state.session_key, &format!("csrf|{}", self.value), token))
    }

    pub(super) fn layout(&self, active: &'static str) -> Layout {
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
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; bo_admin=x.y"));
        headers.append(header::COOKIE, HeaderValue::from_static("bo_admin=z"));
        assert_eq!(cookies(&headers, SESSION_COOKIE).collect::<Vec<_>>(), ["x.y", "z"]);
    }
}
