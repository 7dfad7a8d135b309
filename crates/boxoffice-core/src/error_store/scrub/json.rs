//! The walk of an event's JSON: keys decide first (see [`super::keys`]), every other
//! string is scrubbed as text, and nesting is cut at [`MAX_DEPTH`].

use std::borrow::Cow;

use serde_json::Value;

use super::cards::is_plausible_card;
use super::keys::{KeyKind, key_kind};
use super::{CARD, EMAIL, FILTERED, IP, MAX_DEPTH, TOO_DEEP, scrub_text};

/// Scrubs an event (or any JSON) in place; see the module documentation for the rules.
///
/// Decisions worth knowing:
/// - a value under a secret key is replaced whatever its type (an object under `auth`
///   becomes one `"[filtered]"`), except `null`, which hides nothing and tells an operator
///   that no credential was sent;
/// - a value under a client-address key (`ip`, `ip_address`, `REMOTE_ADDR`,
///   `X-Forwarded-For`, …) becomes `"[ip]"` rather than disappearing, so that the shape of
///   the event stays readable and nothing downstream re-infers an address for a missing
///   field; `null` stays `null`;
/// - a string under an e-mail key (`email`, `user_email`, …) becomes `"[email]"` even if
///   it does not look like an address;
/// - `[key, value]` pairs (Sentry's list form of headers, cookies and query strings) get
///   the same rules as object entries;
/// - object keys are scrubbed as text too (a map keyed by e-mail address); two keys that
///   scrub to the same text keep the last value;
/// - an integer that would be a card number becomes `"[card]"`.
pub fn scrub_value(value: &mut Value) {
    scrub_at(value, 0);
}

fn scrub_at(value: &mut Value, depth: usize) {
    match value {
        Value::Null | Value::Bool(_) => {}
        Value::String(text) => {
            if let Cow::Owned(scrubbed) = scrub_text(text) {
                *text = scrubbed;
            }
        }
        Value::Number(number) => {
            if number
                .as_u64()
                .is_some_and(|n| is_plausible_card(n.to_string().as_bytes()))
            {
                *value = Value::String(CARD.to_owned());
            }
        }
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => {
            *value = Value::String(TOO_DEEP.to_owned());
        }
        Value::Array(items) => {
            if let [Value::String(key), second] = items.as_mut_slice() {
                let kind = key_kind(key);
                if kind != KeyKind::Plain {
                    apply_key_kind(kind, second, depth + 1);
                    if let Cow::Owned(scrubbed) = scrub_text(key) {
                        *key = scrubbed;
                    }
                    return;
                }
            }
            for item in items {
                scrub_at(item, depth + 1);
            }
        }
        Value::Object(map) => {
            let mut rename = false;
            for (key, item) in map.iter_mut() {
                apply_key_kind(key_kind(key), item, depth + 1);
                rename |= matches!(scrub_text(key), Cow::Owned(_));
            }
            if rename {
                let entries = std::mem::take(map);
                for (key, item) in entries {
                    map.insert(scrub_text(&key).into_owned(), item);
                }
            }
        }
    }
}

fn apply_key_kind(kind: KeyKind, value: &mut Value, depth: usize) {
    match kind {
        _ if value.is_null() => {}
        KeyKind::Secret => *value = Value::String(FILTERED.to_owned()),
        KeyKind::ClientIp => *value = Value::String(IP.to_owned()),
        KeyKind::Email if value.as_str().is_some_and(|s| !s.is_empty()) => {
            *value = Value::String(EMAIL.to_owned());
        }
        KeyKind::Email | KeyKind::Plain => scrub_at(value, depth),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_under_secret_keys_are_filtered_whatever_their_type() {
        let mut event = json!({
            "message": "user jane@example.com paid with 4242 4242 4242 4242 from 192.168.0.1",
            "request": {
                "url": "https://shop.test/checkout?token=abc&step=2",
                "headers": {
                    "Authorization": "Bearer abc.def.ghi",
                    "Cookie": "sid=abc",
                    "X-Forwarded-For": "203.0.113.7",
                    "User-Agent": "Mozilla/5.0",
                },
                "cookies": {"sid": "abc"},
                "data": {"password": "hunter2", "quantity": 2, "card_number": 4242424242424242u64},
                "env": {"REMOTE_ADDR": "10.1.2.3", "HTTP_X_REAL_IP": "10.1.2.4", "SERVER_NAME": "web1"},
            },
            "user": {"id": "42", "email": "jane@example.com", "ip_address": "{{auto}}", "username": "jane"},
            "tags": {"apiKey": {"nested": true}, "release": "1.2.3", "customer": "jane@example.com"},
            "exception": {"values": [{"stacktrace": {"frames": [{
                "function": "checkout",
                "vars": {"self": "<Order>", "secret": null, "ssn": "123-45-6789", "amount": 4242424242424242u64},
            }]}}]},
            "breadcrumbs": [{"message": "login jane@example.com", "data": {"sessionToken": "x"}}],
        });
        scrub_value(&mut event);
        let expected = json!({
            "message": "user [email] paid with [card] from [ip]",
            "request": {
                "url": "https://shop.test/checkout?token=[filtered]&step=2",
                "headers": {
                    "Authorization": "[filtered]",
                    "Cookie": "[filtered]",
                    "X-Forwarded-For": "[ip]",
                    "User-Agent": "Mozilla/5.0",
                },
                "cookies": "[filtered]",
                "data": {"password": "[filtered]", "quantity": 2, "card_number": "[filtered]"},
                "env": {"REMOTE_ADDR": "[ip]", "HTTP_X_REAL_IP": "[ip]", "SERVER_NAME": "web1"},
            },
            "user": {"id": "42", "email": "[email]", "ip_address": "[ip]", "username": "jane"},
            "tags": {"apiKey": "[filtered]", "release": "1.2.3", "customer": "[email]"},
            "exception": {"values": [{"stacktrace": {"frames": [{
                "function": "checkout",
                "vars": {"self": "<Order>", "secret": null, "ssn": "[filtered]", "amount": "[card]"},
            }]}}]},
            "breadcrumbs": [{"message": "login [email]", "data": {"sessionToken": "[filtered]"}}],
        });
        assert_eq!(event, expected);
        let mut again = event.clone();
        scrub_value(&mut again);
        assert_eq!(again, event, "scrubbing twice changes nothing");
    }

    #[test]
    fn header_pairs_and_keys_are_scrubbed_like_objects() {
        let mut headers = json!([
            ["Authorization", "Basic dXNlcjpwYXNz"],
            ["X-Real-IP", "10.0.0.1"],
            ["Accept", "text/html"],
            ["Referer", "https://x.test/?email=jane@example.com"],
        ]);
        scrub_value(&mut headers);
        assert_eq!(
            headers,
            json!([
                ["Authorization", "[filtered]"],
                ["X-Real-IP", "[ip]"],
                ["Accept", "text/html"],
                ["Referer", "https://x.test/?email=[email]"],
            ])
        );
        let mut by_email = json!({"jane@example.com": 3, "total": 3});
        scrub_value(&mut by_email);
        assert_eq!(by_email, json!({"[email]": 3, "total": 3}));
    }

    #[test]
    fn deep_nesting_is_cut_at_the_bound() {
        let mut value = json!("jane@example.com");
        for _ in 0..200 {
            value = json!({ "a": [value] });
        }
        scrub_value(&mut value);
        let mut depth = 0;
        let mut cursor = &value;
        loop {
            match cursor {
                Value::Object(map) => cursor = map.get("a").unwrap_or(&Value::Null),
                Value::Array(items) => cursor = items.first().unwrap_or(&Value::Null),
                _ => break,
            }
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert_eq!(cursor, &json!(TOO_DEEP));
    }
}
