//! The dashboard's sessions and CSRF tokens: stateless, and the same on every instance.
//!
//! Signing in with the operator token sets the cookie `bo_admin`, signed by axum-extra's
//! [`SignedCookieJar`] (the cookie crate's HMAC-SHA256, verified in constant time): behind
//! the signature its value is `<expires_unix>.<csrf token>`; HttpOnly, SameSite=Strict,
//! Path=/admin, 12 hours, and `Secure` when the browser came over HTTPS. The expiry is
//! checked on every request by the box office's clock (`Max-Age` only tells the browser).
//! The CSRF token is 32 random bytes chosen at sign-in: every form carries it, and every
//! POST without it is refused with 403 and changes nothing. Being inside the signed cookie,
//! it belongs to that one session and cannot be paired with another.
//!
//! The login form, which has no session yet, uses a signed double-submit token instead:
//! the login page sets the short-lived signed cookie `bo_login_csrf` = `<expires>.<nonce>`
//! and puts the nonce in the form. Signed, so a cookie planted by a sibling domain cannot
//! be paired with a form. SameSite=Strict already keeps other sites' requests
//! cookie-less; the tokens are defense in depth.
//!
//! The keys ([`SessionKeys`]) come from the random key stored in the database and the
//! operator token's hash: changing the token changes them, and every cookie signed before
//! stops verifying, on every instance.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::Uri;
use axum::http::header::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, Key, SameSite, SignedCookieJar};
use boxoffice_core::auth::TokenHash;
use hmac::{Hmac, Mac};
use sha2::Sha512;
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
/// The form field of CSRF tokens (the session's, and the login form's).
pub(super) const CSRF_FIELD: &str = "csrf_token";
/// Hex digits of a CSRF token or login nonce (32 random bytes).
const TOKEN_HEX_LEN: usize = 64;

// ----- keys ----------------------------------------------------------------------------------

/// The keys that sign the dashboard's two cookies.
#[derive(Clone)]
pub struct SessionKeys {
    session: Key,
    login: Key,
}

impl SessionKeys {
    /// Both keys, from the random key stored in the database (shared by all instances) and
    /// the operator token's hash.
    pub fn derive(stored: &[u8; 32], operator_token_hash: &TokenHash) -> Self {
        Self {
            session: derive_key(stored, operator_token_hash, "session"),
            login: derive_key(stored, operator_token_hash, "login"),
        }
    }
}

/// One cookie's key: HMAC-SHA512 keyed with the stored key, over a purpose label and the
/// operator token's hash.
///
/// `Key::from` wants 64 bytes (a signing half, which signed jars use, and an encryption
/// half, unused here), which is exactly HMAC-SHA512's output; keyed with the stored random
/// key it is as hard to guess as that key. The token's hash in the message binds the keys
/// to the operator token, so a new token ends every session. The purpose label separates
/// the two cookies' keys: the cookie crate signs a value without its name, so under one key
/// a login cookie's value could be presented as a session cookie.
fn derive_key(stored: &[u8; 32], operator_token_hash: &TokenHash, purpose: &str) -> Key {
    let Ok(mut mac) = Hmac::<Sha512>::new_from_slice(stored) else {
        // HMAC takes keys of any length (RFC 2104 hashes long ones and pads short ones).
        unreachable!("HMAC-SHA512 accepts a 32-byte key")
    };
    mac.update(b"boxoffice dashboard cookie|");
    mac.update(purpose.as_bytes());
    mac.update(b"|operator|");
    mac.update(operator_token_hash.to_hex().as_bytes());
    let bytes: [u8; 64] = mac.finalize().into_bytes().into();
    Key::from(&bytes)
}

// ----- values and cookies --------------------------------------------------------------------

/// Seconds since the epoch by the box office's clock.
pub(super) fn now_unix(state: &AppState) -> i64 {
    state.boxoffice.now().as_millis().div_euclid(1000)
}

fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}

/// 32 random bytes in hex: a CSRF token or a login nonce.
fn new_token() -> String {
    hex::encode(boxoffice_core::ids::random_bytes::<32>())
}

/// Whether two tokens are the same, in constant time (their length is not secret).
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A verified `<expires_unix>.<token>` value: the token, when it is unexpired at `now`.
fn unexpired_token(value: &str, now: i64) -> Option<&str> {
    let (expires, token) = value.split_once('.')?;
    // 1–12 digits: no sign, no spaces, nothing `parse` would accept beyond digits.
    if expires.is_empty() || expires.len() > 12 || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let expires_at: i64 = expires.parse().ok()?;
    let well_formed = token.len() == TOKEN_HEX_LEN && token.bytes().all(|b| b.is_ascii_hexdigit());
    (well_formed && expires_at > now).then_some(token)
}

/// A dashboard cookie: HttpOnly, SameSite=Strict, Path=/admin, `Secure` over HTTPS.
fn cookie(name: &'static str, value: String, max_age: Duration, https: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .max_age(time::Duration::seconds(ttl_seconds(max_age)))
        .path("/admin")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(https)
        .build()
}

/// Clears a cookie: empty, with the same attributes, expired at once. Not through the
/// signed jar (nothing to sign), and set whether or not the request carried the cookie.
fn cleared(name: &'static str, https: bool) -> Cookie<'static> {
    let mut cleared = cookie(name, String::new(), Duration::ZERO, https);
    cleared.set_expires(time::OffsetDateTime::UNIX_EPOCH);
    cleared
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

// ----- sessions ------------------------------------------------------------------------------

/// A signed-in operator. Extracting it without a valid session redirects to the login page
/// (303), so no dashboard handler runs, and nothing changes, without one.
pub struct Session {
    /// The CSRF token of the forms this operator is shown.
    csrf_token: String,
}

impl Session {
    /// The session of the request's signed, unexpired session cookie, if it has one. Of
    /// several cookies of that name, only those that verify are considered.
    fn from_headers(headers: &HeaderMap, keys: &SessionKeys, now: i64) -> Option<Self> {
        let jar = SignedCookieJar::from_headers(headers, keys.session.clone());
        let cookie = jar.get(SESSION_COOKIE)?;
        let csrf_token = unexpired_token(cookie.value(), now)?;
        Some(Self {
            csrf_token: csrf_token.to_owned(),
        })
    }

    /// Whether the request is signed in already.
    pub(super) fn exists(headers: &HeaderMap, state: &AppState) -> bool {
        Self::from_headers(headers, &state.session_keys, now_unix(state)).is_some()
    }

    /// Whether a submitted form carries this session's CSRF token (constant time).
    pub(super) fn accepts(&self, form: &Form) -> bool {
        form.get(CSRF_FIELD)
            .is_some_and(|token| same_token(token, &self.csrf_token))
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
        Self::from_headers(&parts.headers, &state.session_keys, now_unix(state))
            .ok_or_else(|| Redirect::to("/admin/login").into_response())
    }
}

/// Signing in: a new session's cookie, valid for [`SESSION_TTL`] from `now`, and the login
/// form's cookie cleared.
pub(super) fn sign_in(keys: &SessionKeys, now: i64, https: bool) -> (SignedCookieJar, CookieJar) {
    let expires = now.saturating_add(ttl_seconds(SESSION_TTL));
    let session = cookie(SESSION_COOKIE, format!("{expires}.{}", new_token()), SESSION_TTL, https);
    (
        SignedCookieJar::new(keys.session.clone()).add(session),
        CookieJar::new().add(cleared(LOGIN_CSRF_COOKIE, https)),
    )
}

/// Signing out: the session cookie cleared.
pub(super) fn sign_out(https: bool) -> CookieJar {
    CookieJar::new().add(cleared(SESSION_COOKIE, https))
}

// ----- the login form's token ----------------------------------------------------------------

/// A fresh login-form token: the nonce for the form, and the signed cookie carrying it with
/// its expiry, valid for [`LOGIN_CSRF_TTL`] from `now`.
pub(super) fn new_login_token(keys: &SessionKeys, now: i64, https: bool) -> (String, SignedCookieJar) {
    let expires = now.saturating_add(ttl_seconds(LOGIN_CSRF_TTL));
    let nonce = new_token();
    let jar = SignedCookieJar::new(keys.login.clone()).add(cookie(
        LOGIN_CSRF_COOKIE,
        format!("{expires}.{nonce}"),
        LOGIN_CSRF_TTL,
        https,
    ));
    (nonce, jar)
}

/// The login form's token, when the request's signed, unexpired login cookie carries the
/// `submitted` one.
pub(super) fn login_token(headers: &HeaderMap, keys: &SessionKeys, submitted: &str, now: i64) -> Option<String> {
    let jar = SignedCookieJar::from_headers(headers, keys.login.clone());
    let cookie = jar.get(LOGIN_CSRF_COOKIE)?;
    let nonce = unexpired_token(cookie.value(), now)?;
    same_token(nonce, submitted).then(|| nonce.to_owned())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use axum::http::header::{COOKIE, SET_COOKIE};
    use boxoffice_core::auth::SecretToken;

    use super::*;

    const STORED: [u8; 32] = [7; 32];

    fn keys(operator_token: &str) -> SessionKeys {
        SessionKeys::derive(&STORED, &SecretToken::new(operator_token).hash())
    }

    /// The `Set-Cookie` headers an answer carrying `parts` would have.
    fn set_cookies(parts: impl axum::response::IntoResponseParts) -> Vec<String> {
        (parts, ())
            .into_response()
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// A request sending back the cookies of those `Set-Cookie` headers.
    fn request_with(set_cookies: &[String]) -> HeaderMap {
        let pairs: Vec<&str> = set_cookies
            .iter()
            .filter_map(|set_cookie| set_cookie.split(';').next())
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&pairs.join("; ")).expect("cookie pairs are header-safe"),
        );
        headers
    }

    /// The signed value of a `Set-Cookie` header, decoded: the cookie crate's base64 tag
    /// (44 characters), then the value.
    fn signed_value(set_cookie: &str) -> String {
        Cookie::parse_encoded(set_cookie.to_owned())
            .expect("a cookie")
            .value()
            .to_owned()
    }

    fn request_with_value(name: &str, value: &str) -> HeaderMap {
        request_with(&[Cookie::new(name.to_owned(), value.to_owned()).encoded().to_string()])
    }

    fn session_headers(keys: &SessionKeys, now: i64) -> Vec<String> {
        let (session, _) = sign_in(keys, now, false);
        set_cookies(session)
    }

    #[test]
    fn sessions_verify_until_they_expire() {
        let keys = keys("bo_admin_one");
        let request = request_with(&session_headers(&keys, 1_000));
        assert!(Session::from_headers(&request, &keys, 1_000).is_some());
        assert!(Session::from_headers(&request, &keys, 1_000 + 12 * 3600 - 1).is_some());
        assert!(Session::from_headers(&request, &keys, 1_000 + 12 * 3600).is_none());

        // A moved expiry no longer matches its signature.
        let signed = signed_value(&session_headers(&keys, 1_000)[0]);
        let (tag, value) = signed.split_at(44);
        let (expires, token) = value.split_once('.').unwrap_or_default();
        let later = expires.parse::<i64>().unwrap_or_default() + 3600;
        let moved = request_with_value(SESSION_COOKIE, &format!("{tag}{later}.{token}"));
        assert!(Session::from_headers(&moved, &keys, 1_000).is_none(), "moved expiry");
        for forged in ["", ".", "abc", value, &format!("{}{value}", "A".repeat(44))] {
            let request = request_with_value(SESSION_COOKIE, forged);
            assert!(Session::from_headers(&request, &keys, 0).is_none(), "{forged:?}");
        }
    }

    #[test]
    fn a_new_operator_token_ends_every_session() {
        let before = keys("bo_admin_before");
        let request = request_with(&session_headers(&before, 1_000));
        // Another instance derives the same keys from the same stored key and token.
        assert!(Session::from_headers(&request, &keys("bo_admin_before"), 1_000).is_some());
        assert!(Session::from_headers(&request, &keys("bo_admin_after"), 1_000).is_none());
        let other_store = SessionKeys::derive(&[8; 32], &SecretToken::new("bo_admin_before").hash());
        assert!(Session::from_headers(&request, &other_store, 1_000).is_none());
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let keys = keys("bo_admin_one");
        let session = |now| Session::from_headers(&request_with(&session_headers(&keys, now)), &keys, now);
        let (Some(a), Some(b)) = (session(1_000), session(1_000)) else {
            panic!("fresh sessions verify")
        };
        assert_ne!(a.csrf_token, b.csrf_token);
        let form = |token: &str| Form(vec![(CSRF_FIELD.to_owned(), token.to_owned())]);
        assert!(a.accepts(&form(&a.csrf_token)));
        assert!(!a.accepts(&form(&b.csrf_token)));
        assert!(!a.accepts(&form("")));
        assert!(!a.accepts(&form(&"0".repeat(64))));
        assert!(!a.accepts(&Form(vec![("other".to_owned(), a.csrf_token.clone())])));
    }

    #[test]
    fn login_tokens_must_match_their_cookie_and_be_ours() {
        let keys = keys("bo_admin_one");
        let (nonce, jar) = new_login_token(&keys, 1_000, false);
        let request = request_with(&set_cookies(jar));
        assert_eq!(login_token(&request, &keys, &nonce, 1_000), Some(nonce.clone()));
        assert_eq!(login_token(&request, &keys, "", 1_000), None);
        assert_eq!(login_token(&request, &keys, &nonce, 1_000 + 3600), None, "expired");
        let (other, _) = new_login_token(&keys, 1_000, false);
        assert_eq!(login_token(&request, &keys, &other, 1_000), None);
        let planted = format!("9999999999.{nonce}");
        let unsigned = request_with_value(LOGIN_CSRF_COOKIE, &planted);
        assert_eq!(login_token(&unsigned, &keys, &nonce, 1_000), None, "unsigned");
    }

    #[test]
    fn one_cookie_cannot_pass_for_the_other() {
        let keys = keys("bo_admin_one");
        let (nonce, jar) = new_login_token(&keys, 1_000, false);
        let login_value = signed_value(&set_cookies(jar)[0]);
        let as_session = request_with_value(SESSION_COOKIE, &login_value);
        assert!(Session::from_headers(&as_session, &keys, 1_000).is_none());
        let session_value = signed_value(&session_headers(&keys, 1_000)[0]);
        let as_login = request_with_value(LOGIN_CSRF_COOKIE, &session_value);
        let token = session_value
            .split_once('.')
            .map(|(_, token)| token)
            .unwrap_or_default();
        assert_eq!(login_token(&as_login, &keys, token, 1_000), None);
        assert_eq!(login_token(&as_login, &keys, &nonce, 1_000), None);
    }

    #[test]
    fn cookies_are_strict_http_only_and_scoped_to_the_dashboard() {
        let keys = keys("bo_admin_one");
        let (session, cleared_login) = sign_in(&keys, 1_000, false);
        let session = set_cookies(session);
        let cleared_login = set_cookies(cleared_login);
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=43200"] {
            assert!(session[0].contains(flag), "{flag} missing: {session:?}");
        }
        assert!(!session[0].contains("Secure"), "{session:?}");
        let (_, over_https) = new_login_token(&keys, 1_000, true);
        let over_https = set_cookies(over_https);
        assert!(over_https[0].contains("Secure") && over_https[0].contains("Max-Age=3600"));
        for cleared in [&cleared_login[0], &set_cookies(sign_out(false))[0]] {
            for flag in [
                "=;",
                "Max-Age=0",
                "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "Path=/admin",
                "HttpOnly",
                "SameSite=Strict",
            ] {
                assert!(cleared.contains(flag), "{flag} missing: {cleared}");
            }
        }
    }
}
