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
//!
//! Layout: this module holds the two entry points and the shared text rewriter; the
//! passes live by what they find: `secrets` (bearer tokens, `secret=value`),
//! `addresses` (e-mail and IP addresses), `cards` (card numbers), `keys` (what a
//! JSON key or an assignment's key says about its value) and `json` (the walk of an
//! event).

use std::borrow::Cow;

mod addresses;
mod cards;
mod json;
mod keys;
mod secrets;

use addresses::{scrub_emails, scrub_ipv4, scrub_ipv6};
pub use cards::is_plausible_card;
use cards::scrub_cards;
pub use json::scrub_value;
pub use keys::is_client_address_key;
use secrets::{scrub_assignments, scrub_bearer};

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

#[cfg(test)]
mod testing {
    //! Assertions the passes' tests share.

    use std::borrow::Cow;

    use super::scrub_text;

    pub(super) fn scrubbed(text: &str) -> String {
        scrub_text(text).into_owned()
    }

    /// Each input must scrub to the expected output, and that output must be stable.
    pub(super) fn check(cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            let once = scrubbed(input);
            assert_eq!(once, *expected, "scrubbing {input:?}");
            assert_eq!(scrubbed(&once), once, "scrubbing {input:?} twice");
        }
    }

    /// Each input must come back unchanged (and borrowed).
    pub(super) fn kept(inputs: &[&str]) {
        for input in inputs {
            assert!(
                matches!(scrub_text(input), Cow::Borrowed(_)),
                "{input:?} became {:?}",
                scrubbed(input)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::scrubbed;
    use super::*;

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
