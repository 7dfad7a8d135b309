//! What a key says about its value: secret (filtered whatever it holds), a client address
//! (`[ip]`), an e-mail address (`[email]`), or plain (scrubbed as text). Used for JSON
//! object keys, `[key, value]` pairs and the keys of `key=value` assignments in text.

/// Fragments that make a key secret wherever they appear in it, matched against the key
/// lower-cased with `-` and spaces turned into `_` (so `X-Api-Key`, `apiKey` and `API_KEY`
/// all match). Substrings over-match on purpose (`author`, `session_count`): a filtered
/// harmless value is cheaper than a leaked credential.
const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "auth",
    "bearer",
    "api_key",
    "apikey",
    "cookie",
    "credential",
    "private_key",
    "privatekey",
    "access_key",
    "session",
    "csrf",
    "xsrf",
    "card_number",
    "cardnumber",
    "cvv",
    "cvc",
    "jwt",
];

/// Keys that carry a client address, after the normalization of [`SECRET_KEY_PARTS`] and
/// without a CGI `http_` prefix. Matched whole: as a substring, `ip` is in `zip` and
/// `description`.
const IP_KEYS: &[&str] = &[
    "ip",
    "ip_address",
    "ipaddress",
    "client_ip",
    "remote_ip",
    "remote_addr",
    "x_forwarded_for",
    "x_forwarded",
    "forwarded_for",
    "x_real_ip",
    "x_client_ip",
    "x_cluster_client_ip",
    "forwarded",
    "cf_connecting_ip",
    "true_client_ip",
    "fastly_client_ip",
];

/// Whether a key names a client address (`ip_address`, `REMOTE_ADDR`, `X-Forwarded-For`,
/// …): matched whole after lower-casing, `-` and spaces as `_`, a CGI `http_` prefix
/// dropped. Scrubbing replaces such values; the Sentry event reader removes them.
pub fn is_client_address_key(key: &str) -> bool {
    // The longest listed key with an `http_` prefix has 24 characters.
    if key.len() > 32 {
        return false;
    }
    let normalized = normalize_key(key);
    IP_KEYS.contains(&normalized.strip_prefix("http_").unwrap_or(&normalized))
}

/// Keys whose string value is an e-mail address even when it does not look like one.
const EMAIL_KEYS: &[&str] = &["email", "e_mail", "email_address", "user_email"];

/// What a key says about its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyKind {
    Secret,
    ClientIp,
    Email,
    Plain,
}

pub(super) fn key_kind(key: &str) -> KeyKind {
    let normalized = normalize_key(key);
    // A plain window comparison: keys are short, and `str::contains` would build a
    // substring searcher per part, which showed as an eighth of ingestion's CPU time.
    let has_part = |part: &str| {
        normalized
            .as_bytes()
            .windows(part.len())
            .any(|window| window == part.as_bytes())
    };
    if SECRET_KEY_PARTS.iter().any(|part| has_part(part)) || has_segment(key, "ssn") {
        return KeyKind::Secret;
    }
    let bare = normalized.strip_prefix("http_").unwrap_or(&normalized);
    if IP_KEYS.contains(&bare) {
        KeyKind::ClientIp
    } else if EMAIL_KEYS.contains(&bare) {
        KeyKind::Email
    } else {
        KeyKind::Plain
    }
}

pub(super) fn normalize_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Is `segment` one of the words of `key` (split at non-alphanumerics and at camelCase
/// humps)? For fragments too short to match as substrings: `ssn` is in `classname`.
fn has_segment(key: &str, segment: &str) -> bool {
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (c.is_ascii_uppercase() && previous_lower);
        if boundary {
            if current == segment {
                return true;
            }
            current.clear();
        }
        if c.is_ascii_alphanumeric() {
            current.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    current == segment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        for key in [
            "password",
            "X-Api-Key",
            "apiKey",
            "Set-Cookie",
            "client_secret",
            "userSsn",
            "SSN",
            "csrf_token",
        ] {
            assert_eq!(key_kind(key), KeyKind::Secret, "{key}");
        }
        for key in ["ip", "IP_ADDRESS", "remote_addr", "HTTP_X_FORWARDED_FOR", "x-real-ip"] {
            assert_eq!(key_kind(key), KeyKind::ClientIp, "{key}");
        }
        for key in ["zip", "description", "className", "lessons", "ship_to", "quantity"] {
            assert_eq!(key_kind(key), KeyKind::Plain, "{key}");
        }
    }
}
