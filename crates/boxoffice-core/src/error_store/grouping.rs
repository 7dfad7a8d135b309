//! Fingerprints that group errors (SPEC §7): one group per bug, not one per occurrence.
//!
//! Two events belong together when they share a fingerprint: the explicit one an SDK sent
//! (Sentry semantics, with `{{ default }}` standing for the derived one), else a hash of the
//! error type, the message with its variable parts normalized, and the top in-app frames.
//! Everything that changes between occurrences of the same bug is left out: ids, numbers,
//! times and quoted values in the message, line numbers and build hashes in frames, so
//! neither a new order nor a deploy splits a group.
//!
//! The hash input is versioned ([`GROUPING_VERSION`]) and stored with each group: a change
//! to these rules bumps the version instead of silently regrouping history.

use std::fmt;

use sha2::{Digest, Sha256};

use super::scrub::scrub_text;

/// The version of the grouping rules; part of every fingerprint's hash input.
pub const GROUPING_VERSION: u32 = 1;

/// The longest normalized message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// The longest group title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// How many in-app frames take part in a derived fingerprint.
pub const GROUPING_FRAMES: usize = 3;

/// The longest quoted string recognized as one value; a longer one is left as text, which
/// keeps the search for its closing quote bounded.
const MAX_QUOTED_LEN: usize = 1024;

/// The marker in an explicit fingerprint that stands for the derived one.
const DEFAULT_MARKER: &str = "default";

/// A group's identity: the lower-case hex SHA-256 of the grouping input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Rebuilds a fingerprint read back from our own database, where it was written computed.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The fingerprint as text (64 hex digits).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stack frame as far as grouping cares. Line and column numbers are deliberately absent:
/// they move with every deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The module (`boxoffice_core::holds`, `app.views`), preferred over the file name.
    pub module: Option<String>,
    /// The function name.
    pub function: Option<String>,
    /// The file name, used when there is no module.
    pub filename: Option<String>,
}

/// Replaces the variable parts of an error message so that occurrences of the same error
/// read the same. The message is scrubbed first ([`scrub_text`]), so this is safe on raw
/// input and gives the same result on raw and scrubbed text.
///
/// - `"…"`, `` `…` `` and `'…'` (a `'` that opens after a non-letter and closes before
///   one, so apostrophes stay) → `"<str>"`, `` `<str>` ``, `'<str>'`. Quoted values are
///   mostly the variable part (`column "email" does not exist`, `KeyError: 'user_7'`); the
///   frames keep unrelated errors of one type apart;
/// - RFC 3339 / ISO 8601 dates and date-times → `<time>`;
/// - UUIDs → `<uuid>`; our prefixed ids (`hold_` + 32 hex) → `<id>`;
/// - `0x…` and hex words of 8 or more with a digit → `<hex>`;
/// - a number starting a word → `<n>` (`5003ms` → `<n>ms`); digits inside a word stay
///   (`utf8`, `sha256`, `user42`), since they are usually part of a name;
/// - runs of whitespace → one space, trimmed; the result is cut to
///   [`MAX_MESSAGE_CHARS`] characters.
pub fn normalize_message(message: &str) -> String {
    let scrubbed = scrub_text(message);
    let text: &str = &scrubbed;
    let bytes = text.as_bytes();
    let mut out = Output::default();
    let mut at = 0;
    // Every character written is at least one byte, so this bound is never hit before the cut.
    let byte_budget = MAX_MESSAGE_CHARS * 4;
    while at < bytes.len() && out.text.len() <= byte_budget {
        let Some(c) = text.get(at..).and_then(|rest| rest.chars().next()) else {
            break;
        };
        if c.is_whitespace() {
            out.pending_space = true;
            at += c.len_utf8();
            continue;
        }
        if matches!(c, '"' | '\'' | '`')
            && let Some(end) = quoted_end(bytes, at)
        {
            out.push(&format!("{c}<str>{c}"));
            at = end;
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            out.push_char(c);
            at += c.len_utf8();
            continue;
        }
        let (placeholder, end) = if let Some(end) = timestamp_end(bytes, at) {
            ("<time>", end)
        } else if let Some(end) = uuid_end(bytes, at) {
            ("<uuid>", end)
        } else if let Some(end) = prefixed_id_end(bytes, at) {
            ("<id>", end)
        } else {
            let end = run_end(bytes, at, u8::is_ascii_alphanumeric);
            let word = bytes.get(at..end).unwrap_or_default();
            match classify_word(word) {
                Word::Hex => ("<hex>", end),
                Word::Number => ("<n>", end),
                Word::Kept => {
                    // Digits starting a word are a number with a unit: `5003ms`.
                    let digits_end = run_end(bytes, at, u8::is_ascii_digit);
                    if digits_end > at {
                        out.push("<n>");
                        at = digits_end;
                    }
                    out.push(text.get(at..end).unwrap_or_default());
                    at = end;
                    continue;
                }
            }
        };
        out.push(placeholder);
        at = end;
    }
    let mut normalized = out.text;
    if let Some((cut, _)) = normalized.char_indices().nth(MAX_MESSAGE_CHARS) {
        normalized.truncate(cut);
    }
    normalized.truncate(normalized.trim_end().len());
    normalized
}

/// The fingerprint of an event.
///
/// An explicit fingerprint (a non-empty list) wins; each `{{ default }}` in it (spaces
/// inside the braces optional) stands for the derived fingerprint, so
/// `["{{ default }}", "eu"]` splits the default group by region. Otherwise the fingerprint
/// is derived from the error type, the [normalized](normalize_message) message and the
/// first [`GROUPING_FRAMES`] in-app frames that name a function or a place.
///
/// `in_app_frames[0]` is the frame where the error was raised. Sentry lists frames oldest
/// first, so a caller reading a Sentry event reverses them.
pub fn fingerprint(
    explicit: Option<&[String]>,
    error_type: Option<&str>,
    message: &str,
    in_app_frames: &[Frame],
) -> Fingerprint {
    let derived = || derived_fingerprint(error_type, message, in_app_frames);
    let Some(explicit) = explicit.filter(|parts| !parts.is_empty()) else {
        return derived();
    };
    let mut default = None;
    let parts: Vec<String> = explicit
        .iter()
        .map(|part| {
            if is_default_marker(part) {
                let default = default.get_or_insert_with(derived);
                format!("default:{default}")
            } else {
                format!("value:{part}")
            }
        })
        .collect();
    digest("explicit", &parts)
}

/// A group's title: `Type: normalized message`, cut to [`MAX_TITLE_CHARS`] characters.
pub fn title(error_type: Option<&str>, message: &str) -> String {
    let message = normalize_message(message);
    let error_type = error_type
        .map(|t| scrub_text(t.trim()).into_owned())
        .filter(|t| !t.is_empty());
    let mut title = match (error_type, message.is_empty()) {
        (Some(error_type), false) => format!("{error_type}: {message}"),
        (Some(error_type), true) => error_type,
        (None, false) => message,
        (None, true) => "(no message)".to_owned(),
    };
    if let Some((cut, _)) = title.char_indices().nth(MAX_TITLE_CHARS) {
        title.truncate(cut);
    }
    title
}

fn derived_fingerprint(error_type: Option<&str>, message: &str, in_app_frames: &[Frame]) -> Fingerprint {
    let mut parts = vec![
        format!("type:{}", error_type.map(str::trim).unwrap_or_default()),
        format!("message:{}", normalize_message(message)),
    ];
    parts.extend(
        in_app_frames
            .iter()
            .filter_map(frame_key)
            .take(GROUPING_FRAMES)
            .map(|key| format!("frame:{key}")),
    );
    digest("derived", &parts)
}

fn is_default_marker(part: &str) -> bool {
    part.trim()
        .strip_prefix("{{")
        .and_then(|rest| rest.strip_suffix("}}"))
        .is_some_and(|inner| inner.trim() == DEFAULT_MARKER)
}

/// What identifies a frame: where (module, else file) and which function, both normalized
/// so that bundle hashes and release directories do not count.
fn frame_key(frame: &Frame) -> Option<String> {
    let place = present(&frame.module)
        .or_else(|| present(&frame.filename))
        .map(normalize_message);
    let function = present(&frame.function).map(|f| normalize_message(strip_rust_hash(f)));
    match (place, function) {
        (None, None) => None,
        (place, function) => Some(format!(
            "{}|{}",
            place.unwrap_or_default(),
            function.unwrap_or_default()
        )),
    }
}

fn present(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Drops the `::h0123456789abcdef` suffix of legacy-mangled Rust symbols, which changes
/// with every build.
fn strip_rust_hash(function: &str) -> &str {
    match function.rsplit_once("::h") {
        Some((path, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => path,
        _ => function,
    }
}

/// SHA-256 over the version, a domain and length-prefixed parts, so that no two different
/// inputs share a hash input (`["a:b"]` is not `["a", "b"]`).
fn digest(domain: &str, parts: &[String]) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(format!("boxoffice-grouping/{GROUPING_VERSION}/{domain}").as_bytes());
    for part in parts {
        hasher.update([0]);
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    Fingerprint(hex::encode(hasher.finalize()))
}

/// The normalized message being built, with whitespace collapsed lazily: a run of blanks
/// becomes one space only when something follows it.
#[derive(Default)]
struct Output {
    text: String,
    pending_space: bool,
}

impl Output {
    fn push(&mut self, s: &str) {
        if std::mem::take(&mut self.pending_space) && !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(s);
    }

    fn push_char(&mut self, c: char) {
        self.push(c.encode_utf8(&mut [0; 4]));
    }
}

enum Word {
    Hex,
    Number,
    Kept,
}

fn classify_word(word: &[u8]) -> Word {
    if let [b'0', b'x' | b'X', rest @ ..] = word
        && !rest.is_empty()
        && rest.iter().all(u8::is_ascii_hexdigit)
    {
        return Word::Hex;
    }
    if word.iter().all(u8::is_ascii_digit) {
        return Word::Number;
    }
    if word.len() >= 8 && word.iter().all(u8::is_ascii_hexdigit) && word.iter().any(u8::is_ascii_digit) {
        return Word::Hex;
    }
    Word::Kept
}

fn run_end(bytes: &[u8], start: usize, class: fn(&u8) -> bool) -> usize {
    let mut end = start;
    while bytes.get(end).is_some_and(class) {
        end += 1;
    }
    end
}

/// Does `bytes[at..]` start with exactly `count` bytes of `class`? Returns the end.
fn exactly(bytes: &[u8], at: usize, count: usize, class: fn(&u8) -> bool) -> Option<usize> {
    let end = at.checked_add(count)?;
    bytes.get(at..end)?.iter().all(class).then_some(end)
}

fn literal(bytes: &[u8], at: usize, expected: u8) -> Option<usize> {
    (bytes.get(at) == Some(&expected)).then_some(at + 1)
}

fn ends_word(bytes: &[u8], at: usize) -> bool {
    !bytes.get(at).is_some_and(u8::is_ascii_alphanumeric)
}

/// The end of the quoted string opening at `start`, if it closes within
/// [`MAX_QUOTED_LEN`] bytes on the same line.
fn quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = *bytes.get(start)?;
    if quote == b'\'' && start > 0 && bytes.get(start - 1).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    let limit = start.saturating_add(MAX_QUOTED_LEN);
    let mut at = start + 1;
    while at < limit {
        match *bytes.get(at)? {
            b'\n' | b'\r' => return None,
            b'\\' => at += 2,
            b if b == quote && (quote != b'\'' || ends_word(bytes, at + 1)) => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

/// `YYYY-MM-DD`, optionally followed by `[T ]hh:mm[:ss[.fraction]]` and a zone
/// (`Z`, `±hh:mm`, `±hhmm`).
fn timestamp_end(bytes: &[u8], start: usize) -> Option<usize> {
    let digit = u8::is_ascii_digit as fn(&u8) -> bool;
    let mut at = exactly(bytes, start, 4, digit)?;
    at = literal(bytes, at, b'-')?;
    at = exactly(bytes, at, 2, digit)?;
    at = literal(bytes, at, b'-')?;
    at = exactly(bytes, at, 2, digit)?;
    let date_end = at;
    let time = |at: usize| -> Option<usize> {
        let at = match bytes.get(at)? {
            b'T' | b't' | b' ' => at + 1,
            _ => return None,
        };
        let at = exactly(bytes, at, 2, digit)?;
        let at = literal(bytes, at, b':')?;
        let mut at = exactly(bytes, at, 2, digit)?;
        if let Some(seconds) = literal(bytes, at, b':').and_then(|at| exactly(bytes, at, 2, digit)) {
            at = seconds;
            if let Some(fraction) = literal(bytes, at, b'.').or_else(|| literal(bytes, at, b','))
                && bytes.get(fraction).is_some_and(u8::is_ascii_digit)
            {
                at = run_end(bytes, fraction, digit);
            }
        }
        let zone = match bytes.get(at) {
            Some(b'Z' | b'z') => Some(at + 1),
            Some(b'+' | b'-') => exactly(bytes, at + 1, 2, digit).and_then(|hours| {
                let minutes = literal(bytes, hours, b':').unwrap_or(hours);
                exactly(bytes, minutes, 2, digit)
            }),
            _ => None,
        };
        Some(zone.unwrap_or(at))
    };
    let end = time(date_end).filter(|&end| ends_word(bytes, end)).unwrap_or(date_end);
    ends_word(bytes, end).then_some(end)
}

/// `8-4-4-4-12` hex digits.
fn uuid_end(bytes: &[u8], start: usize) -> Option<usize> {
    let hex = u8::is_ascii_hexdigit as fn(&u8) -> bool;
    let mut at = start;
    for (index, len) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if index > 0 {
            at = literal(bytes, at, b'-')?;
        }
        at = exactly(bytes, at, len, hex)?;
    }
    ends_word(bytes, at).then_some(at)
}

/// Our ids: lower-case letters, `_`, 32 lower-case hex digits.
fn prefixed_id_end(bytes: &[u8], start: usize) -> Option<usize> {
    let prefix_end = run_end(bytes, start, u8::is_ascii_lowercase);
    if prefix_end == start || prefix_end - start > 32 {
        return None;
    }
    let at = literal(bytes, prefix_end, b'_')?;
    let end = exactly(bytes, at, 32, |b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))?;
    (ends_word(bytes, end) && bytes.get(end) != Some(&b'_')).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(module: &str, function: &str) -> Frame {
        Frame {
            module: Some(module.to_owned()),
            function: Some(function.to_owned()),
            filename: None,
        }
    }

    #[test]
    fn variable_parts_are_normalized() {
        let cases = [
            (
                "hold hold_0123456789abcdef0123456789abcdef expired",
                "hold <id> expired",
            ),
            ("order ord_ffffffffffffffffffffffffffffffff", "order <id>"),
            (
                "event 3f2504e0-4f89-11d3-9a0c-0305e82c3301 missing",
                "event <uuid> missing",
            ),
            (
                "at 2024-05-01T12:30:45.123+02:00 and 2024-05-01",
                "at <time> and <time>",
            ),
            ("at 2024-05-01 12:30:45Z", "at <time>"),
            (
                "timed out after 5003ms (3 retries)",
                "timed out after <n>ms (<n> retries)",
            ),
            ("price -12.50 EUR", "price -<n>.<n> EUR"),
            ("ptr 0x7ffd5e2a, sha deadbeef01", "ptr <hex>, sha <hex>"),
            ("column \"email\" does not exist", "column \"<str>\" does not exist"),
            ("KeyError: 'user_7'", "KeyError: '<str>'"),
            ("can't open `conf.toml`", "can't open `<str>`"),
            ("  many\t\n spaces  ", "many spaces"),
            ("utf8 sha256 user42 v2", "utf8 sha256 user42 v2"),
            ("deadbeef accede", "deadbeef accede"),
            ("user jane@example.com from 10.0.0.1", "user [email] from [ip]"),
            ("", ""),
        ];
        for (message, expected) in cases {
            assert_eq!(normalize_message(message), expected, "{message:?}");
            assert_eq!(normalize_message(expected), expected, "normalizing {expected:?} again");
        }
    }

    #[test]
    fn normalized_messages_are_capped_on_a_character_boundary() {
        let long = "é".repeat(2000);
        assert_eq!(normalize_message(&long).chars().count(), MAX_MESSAGE_CHARS);
        let words = "word ".repeat(2000);
        assert!(normalize_message(&words).chars().count() <= MAX_MESSAGE_CHARS);
        assert_eq!(
            normalize_message(&"\"".repeat(100_000)),
            "\"<str>\"".repeat(100)[..MAX_MESSAGE_CHARS]
        );
        assert!(normalize_message(&"'a".repeat(100_000)).chars().count() <= MAX_MESSAGE_CHARS);
    }

    #[test]
    fn the_same_error_with_other_ids_numbers_and_times_groups_together() {
        let frames = [
            frame("boxoffice_core::holds", "expire"),
            frame("boxoffice_core::service", "sweep"),
        ];
        let a = fingerprint(
            None,
            Some("HoldExpired"),
            "hold hold_0123456789abcdef0123456789abcdef expired at 2024-05-01T12:00:00Z after 3 tries",
            &frames,
        );
        let b = fingerprint(
            None,
            Some("HoldExpired"),
            "hold hold_fedcba9876543210fedcba9876543210 expired at 2025-01-31T23:59:59Z after 17 tries",
            &frames,
        );
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }

    #[test]
    fn different_types_messages_or_frames_group_apart() {
        let frames = [frame("app", "checkout")];
        let base = fingerprint(None, Some("ValueError"), "bad input", &frames);
        assert_ne!(base, fingerprint(None, Some("TypeError"), "bad input", &frames));
        assert_ne!(base, fingerprint(None, Some("ValueError"), "other input", &frames));
        assert_ne!(
            base,
            fingerprint(None, Some("ValueError"), "bad input", &[frame("app", "refund")])
        );
        assert_ne!(base, fingerprint(None, None, "bad input", &frames));
    }

    #[test]
    fn ten_error_types_with_varying_details_make_ten_groups() {
        let mut groups = std::collections::BTreeSet::new();
        for kind in 0..10 {
            for occurrence in 0..5 {
                let message = format!(
                    "failed for user{occurrence}@example.com order {} at 10.0.0.{occurrence}",
                    1000 + occurrence
                );
                groups.insert(fingerprint(None, Some(&format!("Error{kind}")), &message, &[]));
            }
        }
        assert_eq!(groups.len(), 10);
    }

    #[test]
    fn line_numbers_and_build_hashes_do_not_matter_but_frame_order_does() {
        let located = |file: &str, function: &str| Frame {
            module: None,
            function: Some(function.to_owned()),
            filename: Some(file.to_owned()),
        };
        let a = [
            located("static/main.4f3a2b1c.js", "pay"),
            located("static/vendor.0a1b2c3d.js", "fetch"),
        ];
        let b = [
            located("static/main.9e8d7c6b.js", "pay"),
            located("static/vendor.5f6e7d8c.js", "fetch"),
        ];
        assert_eq!(
            fingerprint(None, Some("E"), "m", &a),
            fingerprint(None, Some("E"), "m", &b)
        );

        let rust_a = [frame(
            "boxoffice_core::holds",
            "boxoffice_core::holds::expire::h0123456789abcdef",
        )];
        let rust_b = [frame(
            "boxoffice_core::holds",
            "boxoffice_core::holds::expire::hfedcba9876543210",
        )];
        assert_eq!(
            fingerprint(None, Some("E"), "m", &rust_a),
            fingerprint(None, Some("E"), "m", &rust_b)
        );

        let reversed = [a[1].clone(), a[0].clone()];
        assert_ne!(
            fingerprint(None, Some("E"), "m", &a),
            fingerprint(None, Some("E"), "m", &reversed)
        );
    }

    #[test]
    fn only_the_top_three_frames_that_name_something_count() {
        let top = [
            frame("app", "a"),
            Frame::default(),
            frame("app", "b"),
            frame("app", "c"),
        ];
        let deeper = [
            frame("app", "a"),
            frame("app", "b"),
            frame("app", "c"),
            frame("app", "d"),
        ];
        assert_eq!(
            fingerprint(None, Some("E"), "m", &top),
            fingerprint(None, Some("E"), "m", &deeper)
        );
    }

    #[test]
    fn an_explicit_fingerprint_wins_and_default_expands() {
        let frames = [frame("app", "checkout")];
        let explicit = vec!["payments".to_owned(), "stripe-timeout".to_owned()];
        let a = fingerprint(Some(&explicit), Some("A"), "one", &frames);
        let b = fingerprint(Some(&explicit), Some("B"), "two", &[]);
        assert_eq!(a, b, "explicit fingerprints ignore the event");
        assert_ne!(
            a,
            fingerprint(Some(&["payments".to_owned()]), Some("A"), "one", &frames)
        );

        let derived = fingerprint(None, Some("A"), "one", &frames);
        assert_eq!(
            fingerprint(Some(&[]), Some("A"), "one", &frames),
            derived,
            "an empty list is no fingerprint"
        );

        let with_default = vec!["{{ default }}".to_owned(), "eu".to_owned()];
        let eu = fingerprint(Some(&with_default), Some("A"), "one", &frames);
        assert_ne!(eu, derived);
        let spaced = vec!["{{default}}".to_owned(), "eu".to_owned()];
        assert_eq!(fingerprint(Some(&spaced), Some("A"), "one", &frames), eu);
        assert_ne!(
            fingerprint(Some(&with_default), Some("B"), "one", &frames),
            eu,
            "the default part still varies"
        );
        let us = vec!["{{ default }}".to_owned(), "us".to_owned()];
        assert_ne!(fingerprint(Some(&us), Some("A"), "one", &frames), eu);
        let literal = vec!["{{ default }} eu".to_owned()];
        assert_ne!(fingerprint(Some(&literal), Some("A"), "one", &frames), eu);
    }

    #[test]
    fn parts_cannot_run_into_each_other() {
        let joined = vec!["a:b".to_owned()];
        let split = vec!["a".to_owned(), "b".to_owned()];
        assert_ne!(
            fingerprint(Some(&joined), None, "", &[]),
            fingerprint(Some(&split), None, "", &[])
        );
    }

    #[test]
    fn titles_are_type_and_normalized_message_capped() {
        assert_eq!(title(Some("ValueError"), "bad id 42"), "ValueError: bad id <n>");
        assert_eq!(title(None, "bad id 42"), "bad id <n>");
        assert_eq!(title(Some(" Panic "), "  "), "Panic");
        assert_eq!(title(None, ""), "(no message)");
        assert_eq!(title(Some("E"), &"x ".repeat(500)).chars().count(), MAX_TITLE_CHARS);
    }
}
