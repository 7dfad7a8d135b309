//! Scrubbing of personal data and secrets (SPEC §7), applied to every error before it is
//! stored, grouped, alerted on or forwarded.
//!
//! The store keeps errors for weeks and copies them into alerts and to Sentry, so nothing in
//! them may identify a buyer or unlock an account. Two tools do the work:
//!
//! - [`scrub_text`] finds e-mail addresses, IP addresses, card numbers, bearer tokens and
//!   `secret=value` assignments inside free text (messages, stack traces, headers, URLs).
//! - [`scrub_value`] walks an event's JSON: values under secret-looking keys are replaced
//!   wholesale, values under client-address keys become `[ip]` (client IPs are never stored,
//!   even when an SDK asks with `{{auto}}`), and every other string goes through
//!   [`scrub_text`].
//!
//! The scanners are hand-written rather than regular expressions so that their cost stays
//! visibly linear: every look-around is bounded, and the JSON walk stops at [`MAX_DEPTH`].
//! Ingestion feeds them hostile input, so none of them indexes past a bound or panics.
//!
//! When in doubt they scrub: a lost digit in an error message costs a little debugging, a
//! leaked card number costs a breach notification. Both functions are idempotent (scrubbing
//! twice gives the result of scrubbing once), so re-scrubbing stored data is harmless.
//!
//! Known limits: user names, phone numbers and street addresses are not recognized in free
//! text; e-mail addresses need a dotted domain (`root@localhost` stays); `Basic` credentials
//! are only caught after a secret-looking key (`Authorization: Basic …`), since "basic" is an
//! ordinary word.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use serde_json::Value;

/// How deep [`scrub_value`] walks; deeper objects and arrays become [`TOO_DEEP`].
pub const MAX_DEPTH: usize = 64;

/// What a secret value is replaced with.
pub const FILTERED: &str = "[filtered]";
/// What replaces a subtree nested deeper than [`MAX_DEPTH`].
pub const TOO_DEEP: &str = "[too deep]";
/// What replaces an e-mail address.
pub const EMAIL: &str = "[email]";
/// What replaces an IPv4 or IPv6 address.
pub const IP: &str = "[ip]";
/// What replaces a card number.
pub const CARD: &str = "[card]";
/// What replaces the credential after `Bearer`.
pub const TOKEN: &str = "[token]";

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

/// Authorization schemes: after a secret key, `Basic xyz` keeps `Basic` and filters `xyz`.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "digest", "token", "negotiate", "ntlm", "hmac"];

/// The longest local part and domain of an e-mail address (RFC 5321); longer runs are cut,
/// which keeps the backward scan bounded.
const MAX_LOCAL_LEN: usize = 64;
const MAX_DOMAIN_LEN: usize = 255;

/// Replaces the personal data and secrets found in free text; borrows when there are none.
///
/// - e-mail addresses (also `%40`-encoded in URLs) → `[email]`;
/// - IPv6 addresses (compressed, IPv4-mapped, with a `%zone`) and IPv4 addresses (four
///   octets 0–255, not part of a longer dotted number) → `[ip]`;
/// - card numbers → `[card]`: 13–19 digits, bare or in groups of 3–8 separated by single
///   spaces or dashes, that pass Luhn and could be a card (see [`is_plausible_card`]);
/// - `Bearer <token>` (any case) → `Bearer [token]`;
/// - `key=value`, `key: value`, `"key": "value"` and `key => value` where the key looks
///   secret → the key kept, the value `[filtered]` (a `Cookie:` value runs to the end of the
///   line, since it holds many pairs).
pub fn scrub_text(text: &str) -> Cow<'_, str> {
    let mut text = Cow::Borrowed(text);
    // A replacement can expose a match that its text hid: in `::1-4242…` the dash binds the
    // digits to the address, in `[ip]-4242…` they stand alone. Running the passes again
    // until nothing changes makes scrubbing idempotent; real text settles in one or two
    // rounds, and the bound keeps hostile text from looping.
    for _ in 0..MAX_ROUNDS {
        match scrub_round(&text) {
            Some(changed) if changed != *text => text = Cow::Owned(changed),
            _ => break,
        }
    }
    text
}

/// How many times [`scrub_text`] runs its passes at most.
const MAX_ROUNDS: usize = 8;

/// One run of every pass; `None` when none replaced anything.
fn scrub_round(text: &str) -> Option<String> {
    // Order matters: assignments before the pattern passes, so that a secret value becomes
    // `[filtered]` whatever it looks like; IPv6 before IPv4, so that an IPv4-mapped address
    // is one `[ip]`.
    let passes: [(Pass, bool); 6] = {
        // Most text (frame names, file paths, breadcrumb categories) holds nothing to
        // scrub: one scan for what each pass needs skips the passes that cannot match.
        // Replacements only remove such characters, so the scan of the original text
        // stays true for the text each later pass sees.
        let needs = Needs::of(text.as_bytes());
        [
            (scrub_bearer, needs.bearer),
            (scrub_assignments, needs.assignment),
            (scrub_emails, needs.email),
            (scrub_ipv6, needs.colon),
            (scrub_ipv4, needs.ipv4),
            (scrub_cards, needs.card),
        ]
    };
    let mut current: Option<String> = None;
    for (pass, needed) in passes {
        if !needed {
            continue;
        }
        if let Some(changed) = pass(current.as_deref().unwrap_or(text)) {
            current = Some(changed);
        }
    }
    current
}

/// One scrubbing pass: the rewritten text, or `None` when it found nothing.
type Pass = fn(&str) -> Option<String>;

/// Which passes a text could need, from one scan of its bytes.
struct Needs {
    /// `bearer` in any case: [`scrub_bearer`].
    bearer: bool,
    /// `=` or `:`: [`scrub_assignments`].
    assignment: bool,
    /// `@` or `%` (for `%40`): [`scrub_emails`].
    email: bool,
    /// `:`: [`scrub_ipv6`].
    colon: bool,
    /// `.` and four digits: [`scrub_ipv4`].
    ipv4: bool,
    /// 13 digits: [`scrub_cards`].
    card: bool,
}

impl Needs {
    fn of(bytes: &[u8]) -> Self {
        let (mut digits, mut colon, mut equals, mut at, mut percent, mut dot, mut b) =
            (0usize, false, false, false, false, false, false);
        for &byte in bytes {
            match byte {
                b'0'..=b'9' => digits += 1,
                b':' => colon = true,
                b'=' => equals = true,
                b'@' => at = true,
                b'%' => percent = true,
                b'.' => dot = true,
                b'b' | b'B' => b = true,
                _ => {}
            }
        }
        Self {
            bearer: b && bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"bearer")),
            assignment: colon || equals,
            email: at || percent,
            colon,
            ipv4: dot && digits >= 4,
            card: digits >= 13,
        }
    }
}

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

/// Could these digits be a payment card number?
///
/// Luhn-valid, 13–19 digits, and with a start that some card scheme uses: never `0`; 13
/// digits only for old Visa numbers (`4…`); `1…` only for 15-digit UATP cards. The last two
/// rules keep millisecond, microsecond and nanosecond timestamps (13, 16, 19 digits starting
/// with `1`) from being taken for cards, whatever their check digit.
pub fn is_plausible_card(digits: &[u8]) -> bool {
    if !(13..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match digits.first() {
        None | Some(b'0') => return false,
        Some(b'1') if digits.len() != 15 => return false,
        Some(first) if digits.len() == 13 && *first != b'4' => return false,
        _ => {}
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, digit)| {
            let value = u32::from(digit - b'0');
            if position % 2 == 1 {
                let doubled = value * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                value
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// What a key says about its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Secret,
    ClientIp,
    Email,
    Plain,
}

fn key_kind(key: &str) -> KeyKind {
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

fn normalize_key(key: &str) -> String {
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

/// Builds the scrubbed copy of a text lazily: nothing is allocated until the first
/// replacement, and a pass that replaces nothing hands back `None`.
struct Rewrite<'a> {
    src: &'a str,
    out: String,
    /// Source bytes before this offset are already in `out`.
    done: usize,
    changed: bool,
}

impl<'a> Rewrite<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            src,
            out: String::new(),
            done: 0,
            changed: false,
        }
    }

    /// Replaces `src[start..end]`. A span that overlaps an earlier replacement or does not
    /// fall on character boundaries is refused (the scanners only produce spans bounded by
    /// ASCII bytes, so this is a guard, not a path).
    fn replace(&mut self, start: usize, end: usize, with: &str) -> bool {
        if start < self.done || end < start || !self.src.is_char_boundary(end) {
            return false;
        }
        let Some(before) = self.src.get(self.done..start) else {
            return false;
        };
        if !self.changed {
            self.out.reserve(self.src.len());
        }
        self.out.push_str(before);
        self.out.push_str(with);
        self.done = end;
        self.changed = true;
        true
    }

    fn finish(mut self) -> Option<String> {
        if !self.changed {
            return None;
        }
        self.out.push_str(self.src.get(self.done..).unwrap_or_default());
        Some(self.out)
    }
}

fn byte(bytes: &[u8], at: usize) -> Option<u8> {
    bytes.get(at).copied()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Does this byte glue a number or an address to a word? Letters, digits, `_`, and any
/// byte of a non-ASCII character (`é1.2.3.4` is not an address).
fn glued(b: u8) -> bool {
    is_word(b) || b >= 0x80
}

fn skip_blanks(bytes: &[u8], mut at: usize) -> usize {
    while matches!(byte(bytes, at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

/// `Bearer <token>` → `Bearer [token]`. A "token" of letters only and shorter than 8 is
/// taken for prose ("the bearer of this ticket") and kept.
fn scrub_bearer(text: &str) -> Option<String> {
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
fn scrub_assignments(text: &str) -> Option<String> {
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

fn is_local_part_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') || b >= 0x80
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80
}

/// `local@domain.tld`, also with the `@` percent-encoded (`%40`) as in query strings.
/// Non-ASCII letters count as letters (internationalized addresses).
fn scrub_emails(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut rewrite = Rewrite::new(text);
    let mut at = 0;
    while at < bytes.len() {
        let at_len = if byte(bytes, at) == Some(b'@') {
            1
        } else if bytes.get(at..at + 3).is_some_and(|w| w.eq_ignore_ascii_case(b"%40")) {
            3
        } else {
            at += 1;
            continue;
        };
        let floor = rewrite.done.max(at.saturating_sub(MAX_LOCAL_LEN));
        let mut start = at;
        while start > floor && byte(bytes, start - 1).is_some_and(is_local_part_byte) {
            start -= 1;
        }
        while start < at && byte(bytes, start) == Some(b'.') {
            start += 1;
        }
        match domain_end(bytes, at + at_len) {
            Some(end) if start < at && rewrite.replace(start, end, EMAIL) => at = end,
            _ => at += at_len,
        }
    }
    rewrite.finish()
}

/// The end of a domain of at least two labels whose last label (the TLD) has no digits and
/// at least two characters.
fn domain_end(bytes: &[u8], start: usize) -> Option<usize> {
    let limit = start.saturating_add(MAX_DOMAIN_LEN);
    let mut labels = 0;
    let mut at = start;
    let mut last_label = (start, start);
    loop {
        let label_start = at;
        while at < limit && byte(bytes, at).is_some_and(is_label_byte) {
            at += 1;
        }
        if at == label_start {
            break;
        }
        labels += 1;
        last_label = (label_start, at);
        if byte(bytes, at) == Some(b'.') && byte(bytes, at + 1).is_some_and(is_label_byte) {
            at += 1;
        } else {
            break;
        }
    }
    let tld = bytes.get(last_label.0..last_label.1)?;
    // A label neither starts nor ends with `-`; were a trailing one allowed,
    // `a@example.com-4242…` would become an address once the card after it is scrubbed.
    let tld_ok = tld.len() >= 2
        && !tld.iter().any(u8::is_ascii_digit)
        && tld.first() != Some(&b'-')
        && tld.last() != Some(&b'-');
    (labels >= 2 && tld_ok).then_some(last_label.1)
}

/// IPv6 addresses in any textual form std accepts (compressed `::`, IPv4-mapped), with an
/// optional `%zone`. A candidate is a run of hex digits, colons and dots that does not
/// continue a word or a dotted/colon-separated name, so Rust paths (`std::io`) and times
/// (`12:30:45`, only three groups) are left alone.
fn scrub_ipv6(text: &str) -> Option<String> {
    // The longest textual IPv6 address (IPv4-mapped, uncompressed) has 45 characters.
    const MAX_RUN: usize = 45;
    let bytes = text.as_bytes();
    let mut rewrite = Rewrite::new(text);
    let mut at = 0;
    while at < bytes.len() {
        let in_run = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
        // Right after a replacement counts as a fresh start, as it will when scrubbing the
        // result again (it then follows `[ip]`): this keeps the pass idempotent.
        let fresh = at == 0 || (rewrite.changed && at == rewrite.done);
        let starts = byte(bytes, at).is_some_and(|b| b.is_ascii_hexdigit() || b == b':')
            && (fresh || !byte(bytes, at - 1).is_some_and(|b| glued(b) || b == b':' || b == b'.'));
        if !starts {
            at += 1;
            continue;
        }
        let mut run_end = at;
        while byte(bytes, run_end).is_some_and(in_run) {
            run_end += 1;
        }
        // Without a replacement, nothing inside the run can start an address: every
        // position in it follows a run byte.
        let mut next = run_end.max(at + 1);
        if run_end - at <= MAX_RUN && !byte(bytes, run_end).is_some_and(glued) {
            for end in (at + 2..=run_end).rev() {
                // A shorter candidate must stop at a separator, not in the middle of a group.
                if end < run_end && !matches!(byte(bytes, end), Some(b':' | b'.')) {
                    continue;
                }
                let Some(candidate) = text.get(at..end) else { continue };
                let colons = candidate.bytes().filter(|&b| b == b':').count();
                if colons < 2 || !candidate.bytes().any(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                if candidate.parse::<Ipv6Addr>().is_ok() {
                    // Trailing punctuation stays (`2001:db8::1: refused`); anything with
                    // hex digits after the address goes with it, or scrubbing again would
                    // find a second address in the rest.
                    let rest = bytes.get(end..run_end).unwrap_or_default();
                    let mut address_end = if rest.iter().any(u8::is_ascii_hexdigit) {
                        run_end
                    } else {
                        end
                    };
                    if byte(bytes, address_end) == Some(b'%') {
                        let mut zone_end = address_end + 1;
                        while byte(bytes, zone_end).is_some_and(|b| is_word(b) || b == b'-' || b == b'.') {
                            zone_end += 1;
                        }
                        if zone_end > address_end + 1 {
                            address_end = zone_end;
                        }
                    }
                    if rewrite.replace(at, address_end, IP) {
                        next = address_end;
                    }
                    break;
                }
            }
        }
        at = next;
    }
    rewrite.finish()
}

/// Dotted-quad IPv4 addresses, each octet 0–255, not part of a longer dotted number
/// (`1.2.3.4.5`) or a word (`v1.2.3.4`).
fn scrub_ipv4(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut rewrite = Rewrite::new(text);
    let mut at = 0;
    while at < bytes.len() {
        let starts = byte(bytes, at).is_some_and(|b| b.is_ascii_digit())
            && !(at > 0 && byte(bytes, at - 1).is_some_and(|b| glued(b) || b == b'.'));
        if starts
            && let Some(end) = ipv4_end(bytes, at)
            && rewrite.replace(at, end, IP)
        {
            at = end;
        } else {
            at += 1;
        }
    }
    rewrite.finish()
}

fn ipv4_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    for octet in 0..4 {
        if octet > 0 {
            if byte(bytes, at) != Some(b'.') {
                return None;
            }
            at += 1;
        }
        let digits_start = at;
        let mut value: u32 = 0;
        while let Some(b) = byte(bytes, at).filter(u8::is_ascii_digit) {
            if at - digits_start == 3 {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
            at += 1;
        }
        if at == digits_start || value > 255 {
            return None;
        }
    }
    let continues = byte(bytes, at).is_some_and(glued)
        || (byte(bytes, at) == Some(b'.') && byte(bytes, at + 1).is_some_and(|b| b.is_ascii_digit()));
    (!continues).then_some(at)
}

/// Card numbers: runs of digit groups joined by single spaces or dashes. Dashes bind (a
/// dashed number such as a digits-only UUID is taken whole or not at all); spaces do not (a
/// card may be followed by an expiry year in prose), so the longest plausible window of
/// whole space-separated groups is taken.
fn scrub_cards(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut rewrite = Rewrite::new(text);
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut separators: Vec<u8> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let starts = byte(bytes, at).is_some_and(|b| b.is_ascii_digit())
            && !(at > 0 && byte(bytes, at - 1).is_some_and(|b| glued(b) || b == b'.'));
        if !starts {
            at += 1;
            continue;
        }
        groups.clear();
        separators.clear();
        let mut end = at;
        loop {
            let group_start = end;
            while byte(bytes, end).is_some_and(|b| b.is_ascii_digit()) {
                end += 1;
            }
            groups.push((group_start, end));
            match byte(bytes, end) {
                Some(separator @ (b' ' | b'-')) if byte(bytes, end + 1).is_some_and(|b| b.is_ascii_digit()) => {
                    separators.push(separator);
                    end += 1;
                }
                _ => break,
            }
        }
        // A last group glued to letters is part of a word, not of a number.
        let usable = if byte(bytes, end).is_some_and(glued) {
            groups.len() - 1
        } else {
            groups.len()
        };
        let mut first = 0;
        while first < usable {
            if first > 0 && separators.get(first - 1) == Some(&b'-') {
                first += 1;
                continue;
            }
            match longest_card_window(bytes, &groups, &separators, first, usable) {
                Some(last) => {
                    if let (Some(&(start, _)), Some(&(_, stop))) = (groups.get(first), groups.get(last)) {
                        rewrite.replace(start, stop, CARD);
                    }
                    first = last + 1;
                }
                None => first += 1,
            }
        }
        at = end.max(at + 1);
    }
    rewrite.finish()
}

/// The index of the last group of the longest card number starting at group `first`.
fn longest_card_window(
    bytes: &[u8],
    groups: &[(usize, usize)],
    separators: &[u8],
    first: usize,
    usable: usize,
) -> Option<usize> {
    let mut digits = [0u8; 19];
    let mut count = 0;
    let mut found = None;
    for last in first..usable {
        let &(start, end) = groups.get(last)?;
        if count + (end - start) > digits.len() {
            break;
        }
        for (slot, &b) in digits.iter_mut().skip(count).zip(bytes.get(start..end)?) {
            *slot = b;
        }
        count += end - start;
        let glued_to_next = separators.get(last) == Some(&b'-');
        let grouped = last == first
            || groups
                .get(first..=last)?
                .iter()
                .all(|(s, e)| (3..=8).contains(&(e - s)));
        if !glued_to_next && grouped && is_plausible_card(digits.get(..count)?) {
            found = Some(last);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scrubbed(text: &str) -> String {
        scrub_text(text).into_owned()
    }

    /// Each input must scrub to the expected output, and that output must be stable.
    fn check(cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            let once = scrubbed(input);
            assert_eq!(once, *expected, "scrubbing {input:?}");
            assert_eq!(scrubbed(&once), once, "scrubbing {input:?} twice");
        }
    }

    /// Each input must come back unchanged (and borrowed).
    fn kept(inputs: &[&str]) {
        for input in inputs {
            assert!(
                matches!(scrub_text(input), Cow::Borrowed(_)),
                "{input:?} became {:?}",
                scrubbed(input)
            );
        }
    }

    #[test]
    fn emails_are_replaced_wherever_they_appear() {
        check(&[
            (
                "user jane.doe+tickets@example.co.uk not found",
                "user [email] not found",
            ),
            ("From: \"Jane\" <jane@example.com>", "From: \"Jane\" <[email]>"),
            ("'jane@example.com'", "'[email]'"),
            ("\"email\":\"jane@example.com\"", "\"email\":\"[email]\""),
            (
                "https://x.test/u?email=jane%40example.com&x=1",
                "https://x.test/u?email=[email]&x=1",
            ),
            ("mailto:JANE@EXAMPLE.COM.", "mailto:[email]."),
            ("jürgen@exämple.de", "[email]"),
            ("a@b.io,c@d.io", "[email],[email]"),
        ]);
        kept(&[
            "root@localhost",
            "serde@1.0.3",
            "@decorator.name",
            "a@b",
            "no at sign here",
            "@@@",
        ]);
    }

    #[test]
    fn ipv4_addresses_need_four_octets_in_range() {
        check(&[
            ("connect to 192.168.0.1 failed", "connect to [ip] failed"),
            ("from 10.0.0.1:8080.", "from [ip]:8080."),
            (
                "X-Forwarded-For 203.0.113.7, 198.51.100.2",
                "X-Forwarded-For [ip], [ip]",
            ),
            ("255.255.255.255 0.0.0.0", "[ip] [ip]"),
            ("x@1.2.3.4", "x@[ip]"),
        ]);
        kept(&[
            "version 1.2.3",
            "999.1.1.1",
            "1.2.3.256",
            "1.2.3.4.5",
            "v1.2.3.4",
            "12.03.2024",
            "3.14159",
        ]);
    }

    #[test]
    fn ipv6_addresses_in_every_textual_form() {
        check(&[
            ("peer 2001:db8::1 reset", "peer [ip] reset"),
            ("localhost is ::1", "localhost is [ip]"),
            ("link fe80::1%eth0 down", "link [ip] down"),
            ("mapped ::ffff:192.0.2.128 ok", "mapped [ip] ok"),
            ("[2001:db8:0:0:0:0:2:1]:443", "[[ip]]:443"),
            ("2001:DB8:85A3::8A2E:370:7334", "[ip]"),
            ("at 2001:db8::1: refused", "at [ip]: refused"),
        ]);
        kept(&[
            "at 12:30:45 today",
            "12:30",
            "std::io::Error",
            "boxoffice_core::auth::verify",
            "note: see below",
            "ratio 1:2",
            "a :: b",
            "deadbeef",
        ]);
    }

    #[test]
    fn luhn_valid_card_numbers_in_any_grouping_and_nothing_else() {
        check(&[
            ("card 4242424242424242 declined", "card [card] declined"),
            ("card 4242 4242 4242 4242 declined", "card [card] declined"),
            ("card 4242-4242-4242-4242", "card [card]"),
            ("4000-0000-0000-0002", "[card]"),
            ("4000 0000 0000 0002 exp 12 2030", "[card] exp 12 2030"),
            ("amex 3782 822463 10005.", "amex [card]."),
            ("mc 5555555555554444, visa 4111111111111111", "mc [card], visa [card]"),
            ("old visa 4222222222222", "old visa [card]"),
            ("(4242424242424242)", "([card])"),
        ]);
        kept(&[
            "order 4242424242424241",
            "4242 4242 4242 4241",
            "ts 1700000000000",
            "us 1700000000000005",
            "ns 1700000000000000007",
            "0000000000000000",
            "12345678-1234-1234-1234-123456789012",
            "4242424242424242abc",
            "id_4242424242424242",
            "42424242424242424242424242",
            "pi 3.4242424242424242",
        ]);
    }

    #[test]
    fn the_card_rules() {
        assert!(is_plausible_card(b"4242424242424242"));
        assert!(is_plausible_card(b"378282246310005"));
        assert!(!is_plausible_card(b"4242424242424241"));
        assert!(!is_plausible_card(b"424242424242"));
        assert!(!is_plausible_card(b"42424242424242424242"));
        assert!(!is_plausible_card(b"4242x42424242424"));
        assert!(!is_plausible_card(b""));
    }

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

    /// A small deterministic fuzzer: texts built from the fragments the scanners react to
    /// never panic, scrub idempotently and normalize within bounds. (Run with a few million
    /// rounds in release mode after changing a scanner.)
    #[test]
    fn generated_texts_never_panic_and_scrub_idempotently() {
        const FRAGMENTS: &[&str] = &[
            "4242",
            " ",
            "-",
            "4",
            "2",
            "0",
            ".",
            ":",
            "::",
            "1",
            "ff",
            "@",
            "%40",
            "a",
            "example.com",
            "token",
            "=",
            "\"",
            "'",
            "Bearer",
            "\\",
            "\n",
            "é",
            "[",
            "]",
            "filtered",
            "255",
            "%",
            "password",
            "cookie:",
            ";",
            "4000",
            "0002",
            "3782",
            " 4242",
            "-4242",
            "4242 ",
            "fe80",
            "%eth0",
            "192.168.0.1",
            "@x.io",
            "a.b",
            "Basic ",
            "Authorization: ",
            "x-api-key=",
            "2024-01-02",
            "T12:30:45",
            "Z",
            "hold_",
            "0123456789abcdef",
            "`",
            "0x",
            "ab",
            "\t",
            "  ",
            "5",
            "9",
            "3",
            "-1",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20_000u64 {
            let len = next() % (8 + round % 40);
            let mut text = String::new();
            for _ in 0..len {
                let pick = usize::try_from(next() % FRAGMENTS.len() as u64).unwrap_or_default();
                text.push_str(FRAGMENTS.get(pick).copied().unwrap_or_default());
            }
            let once = scrubbed(&text);
            assert_eq!(scrubbed(&once), once, "scrubbing {text:?} twice");
            let normalized = crate::error_store::normalize_message(&text);
            assert!(normalized.chars().count() <= crate::error_store::grouping::MAX_MESSAGE_CHARS);
        }
    }

    #[test]
    fn hostile_input_stays_linear() {
        let long = "a%40".repeat(50_000) + &"1.".repeat(50_000) + &"::".repeat(50_000) + &"4 ".repeat(50_000);
        let started = std::time::Instant::now();
        let _ = scrub_text(&long);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
