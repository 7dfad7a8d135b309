//! Credentials in free text: the token after `Bearer`, and the value assigned to a
//! secret-looking key (`password=…`, `"token": "…"`, `Authorization: Basic …`).

use super::keys::{KeyKind, key_kind, normalize_key};
use super::{FILTERED, Rewrite, byte, is_word, skip_blanks};

/// Authorization schemes: after a secret key, `Basic xyz` keeps `Basic` and filters `xyz`.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "digest", "token", "negotiate", "ntlm", "hmac"];

/// `Bearer <token>` → `Bearer [token]`. A "token" of letters only and shorter than 8 is
/// taken for prose ("the bearer of this ticket") and kept.
pub(super) fn scrub_bearer(text: &str) -> Option<String> {
    const KEYWORD: &[u8] = b"bearer";
    let bytes = text.as_bytes();
    let mut rewrite = Rewrite::new(text);
    let mut at = 0;
    while at < bytes.len() {
        let is_keyword = bytes
            .get(at..at + KEYWORD.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(KEYWORD));
        if !is_keyword || (at > 0 && byte(bytes, at - 1).is_some_and(is_word)) {
            at += 1;
            continue;
        }
        let keyword_end = at + KEYWORD.len();
        let token_start = skip_blanks(bytes, keyword_end);
        let mut token_end = token_start;
        while byte(bytes, token_end).is_some_and(is_token_byte) {
            token_end += 1;
        }
        let token = bytes.get(token_start..token_end).unwrap_or_default();
        let looks_like_token =
            token_start > keyword_end && (token.len() >= 8 || token.iter().any(|b| !b.is_ascii_alphabetic()));
        if !token.is_empty() && looks_like_token && rewrite.replace(keyword_end, token_end, " [token]") {
            at = token_end;
        } else {
            at = keyword_end;
        }
    }
    rewrite.finish()
}

/// The characters of an OAuth bearer token (RFC 6750 `b64token`).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// `password=hunter2`, `api_key: abc`, `"token": "xyz"`, `secret => 'x'`: keeps the key,
/// filters the value.
pub(super) fn scrub_assignments(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut rewrite = Rewrite::new(text);
    let mut at = 0;
    while at < bytes.len() {
        if !byte(bytes, at).is_some_and(is_key_byte) {
            at += 1;
            continue;
        }
        let key_start = at;
        while byte(bytes, at).is_some_and(is_key_byte) {
            at += 1;
        }
        let key = text.get(key_start..at).unwrap_or_default();
        if key_kind(key) != KeyKind::Secret {
            continue;
        }
        let runs_to_end_of_line = normalize_key(key).contains("cookie");
        if let Some((start, end)) = secret_value_span(text, at, runs_to_end_of_line)
            && rewrite.replace(start, end, FILTERED)
        {
            at = end;
        }
    }
    rewrite.finish()
}

/// Where the value assigned after a secret key (ending at `key_end`) lies, if there is one
/// that is not already filtered.
fn secret_value_span(text: &str, key_end: usize, runs_to_end_of_line: bool) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut at = key_end;
    // The closing quote of a quoted key: `"password": …`.
    if matches!(byte(bytes, at), Some(b'"' | b'\'')) {
        at += 1;
    }
    at = skip_blanks(bytes, at);
    match byte(bytes, at)? {
        b'=' => {
            at += 1;
            if byte(bytes, at) == Some(b'>') {
                at += 1;
            }
        }
        // `auth::verify` is a Rust path, not an assignment.
        b':' if byte(bytes, at + 1) != Some(b':') => at += 1,
        _ => return None,
    }
    at = skip_blanks(bytes, at);
    let rest = text.get(at..)?;
    if rest.starts_with(FILTERED) {
        return None;
    }
    let first = byte(bytes, at)?;
    let (start, end) = match first {
        b'"' | b'\'' | b'`' => {
            let start = at + 1;
            let mut end = start;
            loop {
                match byte(bytes, end) {
                    None | Some(b'\n' | b'\r') => break,
                    Some(b'\\') => end += 2,
                    Some(b) if b == first => break,
                    Some(_) => end += 1,
                }
            }
            (start, end.min(bytes.len()))
        }
        // A structure: its own keys decide.
        b'{' | b'[' | b'(' | b'<' => return None,
        _ => {
            let end = value_end(bytes, at, runs_to_end_of_line);
            // `Authorization: Basic xyz` keeps the scheme and filters the credential.
            let word = text.get(at..end).unwrap_or_default();
            if AUTH_SCHEMES.iter().any(|scheme| word.eq_ignore_ascii_case(scheme)) {
                let credential = skip_blanks(bytes, end);
                if credential > end && byte(bytes, credential).is_some_and(|b| !b.is_ascii_whitespace()) {
                    if byte(bytes, credential) == Some(b'[') {
                        // Already `[token]` or `[filtered]`.
                        return None;
                    }
                    return Some((credential, value_end(bytes, credential, false)));
                }
            }
            (at, end)
        }
    };
    let value = text.get(start..end)?;
    (!value.is_empty() && value != FILTERED).then_some((start, end))
}

/// The end of an unquoted value starting at `start`.
fn value_end(bytes: &[u8], start: usize, runs_to_end_of_line: bool) -> usize {
    let mut end = start;
    while let Some(b) = byte(bytes, end) {
        let stop = if runs_to_end_of_line {
            matches!(b, b'\n' | b'\r' | b'"' | b'\'')
        } else {
            b.is_ascii_whitespace() || matches!(b, b'&' | b',' | b';' | b'"' | b'\'' | b')' | b']' | b'}' | b'>')
        };
        if stop {
            break;
        }
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, kept};

    #[test]
    fn bearer_tokens_lose_the_token() {
        check(&[
            (
                "Authorization: Bearer eyJhbGciOi.J9.x-_y",
                "Authorization: Bearer [token]",
            ),
            ("sent bearer   abc123", "sent bearer [token]"),
            ("BEARER sk_live_abcdefghijk", "BEARER [token]"),
            ("bearer abcdefgh", "bearer [token]"),
        ]);
        kept(&[
            "the bearer of this ticket",
            "Bearer [token]",
            "bearer",
            "bearers of news",
            "Bearer",
        ]);
    }

    #[test]
    fn secret_assignments_keep_the_key_and_lose_the_value() {
        check(&[
            ("login failed: password=hunter2", "login failed: password=[filtered]"),
            ("api_key: abc123 rejected", "api_key: [filtered] rejected"),
            ("GET /cb?token=xyz&page=2", "GET /cb?token=[filtered]&page=2"),
            (
                "{\"password\": \"hun\\\"ter2\", \"user\": \"x\"}",
                "{\"password\": \"[filtered]\", \"user\": \"x\"}",
            ),
            ("secret => 'abc def'", "secret => '[filtered]'"),
            ("DB_PASSWORD = s3cr3t", "DB_PASSWORD = [filtered]"),
            ("X-Api-Key: k_123", "X-Api-Key: [filtered]"),
            ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [filtered]"),
            ("Cookie: sid=abc; theme=dark; uid=42\nnext", "Cookie: [filtered]\nnext"),
            (
                "session_id=abc;csrftoken=def",
                "session_id=[filtered];csrftoken=[filtered]",
            ),
            ("password='unterminated", "password='[filtered]"),
            ("token: 10.0.0.1", "token: [filtered]"),
            ("private_key=jane@example.com", "private_key=[filtered]"),
        ]);
        kept(&[
            "password=[filtered]",
            "password=",
            "wrong password",
            "auth::verify failed",
            "token {\"a\": 1}",
            "tokens: {",
            "className: Foo",
        ]);
    }
}
