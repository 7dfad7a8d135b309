//! Request bodies of `POST /api/{project_id}/envelope/`: decompression and envelope parsing.
//!
//! The body is untrusted and may be hostile, so both steps are bounded by the caller's limits
//! and never panic: decompression stops one byte past `max_decoded` (a gzip bomb costs at most
//! that much memory, not the gigabyte it expands to), and parsing borrows item payloads from
//! the decoded body instead of copying them, never allocating from a declared `length`.
//!
//! Envelope format (develop.sentry.dev, "Envelopes"): one JSON header line, then items, each
//! a JSON item-header line and a payload. With `length` the payload is exactly that many
//! bytes followed by `\n` or the end; without it the payload runs to the next `\n` or the end.
//! Deliberate leniencies, because they cost nothing and cannot be ambiguous (the next item
//! header always starts with `{`): blank lines between items are skipped, `\r\n` after a
//! length-delimited payload is accepted like `\n`, and an item header at the very end of the
//! body is an item with an empty payload. A `\r` before the `\n` ending a payload without
//! `length` stays in the payload, as the format says; JSON parsing ignores it anyway.
//!
//! Error messages name positions and categories only, never content: they may be logged, and
//! envelope content is unscrubbed personal data until the scrubber has seen it.

use std::io::{self, Read};

use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use serde::Deserialize;
use serde_json::Value;

/// The item type that boxoffice stores; every other type is accepted and dropped (SPEC §7).
pub const EVENT_ITEM_TYPE: &str = "event";

/// Item types the Sentry SDKs send, as metric labels; anything else counts as `unknown`
/// so a client cannot grow the label set.
const KNOWN_ITEM_TYPES: &[&str] = &[
    "attachment",
    "check_in",
    "client_report",
    "event",
    "feedback",
    "log",
    "profile",
    "profile_chunk",
    "replay_event",
    "replay_recording",
    "replay_video",
    "session",
    "sessions",
    "span",
    "statsd",
    "trace_metric",
    "transaction",
    "user_report",
];

/// Output buffer the decoder starts with; it grows by doubling up to the limit, so a small
/// body stays small and a large one is never over-allocated beyond the limit.
const INITIAL_DECODE_CAPACITY: usize = 64 * 1024;

/// Brotli's internal input buffer.
const BROTLI_BUFFER_SIZE: usize = 8 * 1024;

/// Longest `Content-Encoding` value quoted back in an error.
const MAX_QUOTED_ENCODING: usize = 40;

/// Why a request body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A `Content-Encoding` other than identity, gzip, deflate or br (the caller answers 415
    /// or 400).
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The decoded body would exceed the limit (the caller answers 413).
    #[error("request body exceeds {limit} bytes once decoded")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The body is not valid data of its declared encoding (the caller answers 400).
    #[error("request body is not valid {encoding} data")]
    Corrupt {
        /// The encoding that failed.
        encoding: &'static str,
    },
}

/// Decodes a request body by its `Content-Encoding`, refusing to produce more than
/// `max_decoded` bytes.
///
/// Supports identity (no header, empty, or `identity`), `gzip` (also `x-gzip`, and
/// concatenated members), `deflate` (zlib-wrapped as HTTP says, or raw as some clients send)
/// and `br`. Output is read through a limit of `max_decoded + 1` bytes, so a decompression
/// bomb is refused with [`DecodeError::TooLarge`] after decoding just past the limit, with
/// memory bounded by about `max_decoded` (plus the decoder's own window: 32 KiB for deflate,
/// at most 16 MiB for brotli).
pub fn decode_body(content_encoding: Option<&str>, body: &[u8], max_decoded: usize) -> Result<Vec<u8>, DecodeError> {
    let encoding = content_encoding.map(str::trim).unwrap_or("");
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        if body.len() > max_decoded {
            return Err(DecodeError::TooLarge { limit: max_decoded });
        }
        return Ok(body.to_vec());
    }
    if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
        read_limited(MultiGzDecoder::new(body), max_decoded, "gzip")
    } else if encoding.eq_ignore_ascii_case("deflate") {
        decode_deflate(body, max_decoded)
    } else if encoding.eq_ignore_ascii_case("br") {
        read_limited(
            brotli_decompressor::Decompressor::new(body, BROTLI_BUFFER_SIZE),
            max_decoded,
            "br",
        )
    } else {
        // Lists such as "gzip, br" are refused too: no Sentry SDK stacks encodings.
        let quoted: String = encoding.chars().take(MAX_QUOTED_ENCODING).collect();
        Err(DecodeError::UnsupportedEncoding(quoted))
    }
}

/// HTTP's `deflate` means zlib-wrapped, but some clients send raw deflate. A zlib header is
/// recognisable (method 8, window ≤ 32 KiB, header checksum), so it is tried first; a raw
/// stream that merely looks like one fails zlib's checksums and is then read raw.
fn decode_deflate(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, DecodeError> {
    if looks_like_zlib(body) {
        match read_limited(ZlibDecoder::new(body), max_decoded, "deflate") {
            Err(DecodeError::Corrupt { .. }) => {}
            decoded => return decoded,
        }
    }
    read_limited(DeflateDecoder::new(body), max_decoded, "deflate")
}

/// RFC 1950: CMF (compression method 8, window size ≤ 2^15) and FLG, with CMF·256 + FLG
/// a multiple of 31.
fn looks_like_zlib(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Reads `reader` to its end, failing with `TooLarge` as soon as it yields more than `max`
/// bytes.
fn read_limited(reader: impl Read, max: usize, encoding: &'static str) -> Result<Vec<u8>, DecodeError> {
    let out = read_up_to(reader, max.saturating_add(1)).map_err(|_| DecodeError::Corrupt { encoding })?;
    if out.len() > max {
        return Err(DecodeError::TooLarge { limit: max });
    }
    Ok(out)
}

/// Reads at most `limit` bytes. The buffer's capacity never exceeds `limit`: it grows by
/// doubling, clamped to the limit, rather than by `read_to_end`'s unclamped doubling.
fn read_up_to(mut reader: impl Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(limit.min(INITIAL_DECODE_CAPACITY));
    let mut chunk = [0u8; 16 * 1024];
    while out.len() < limit {
        let want = (limit - out.len()).min(chunk.len());
        let n = match reader.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let needed = out.len() + n;
        if needed > out.capacity() {
            let target = out.capacity().saturating_mul(2).max(needed).min(limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// Bounds on one envelope, checked while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeLimits {
    /// Most items one envelope may carry.
    pub max_items: usize,
    /// Largest payload of an `event` item, the only one that is stored.
    pub max_event_bytes: usize,
    /// Largest payload of any other item; those are dropped, but still bounded.
    pub max_item_bytes: usize,
    /// Largest decoded envelope.
    pub max_total_bytes: usize,
}

impl Default for EnvelopeLimits {
    /// Sentry's own ingestion limits where they exist (1 MB events, 100 sessions per
    /// envelope), tighter elsewhere: boxoffice drops attachments and replays, so it has no
    /// reason to accept Sentry's 50 MB of them.
    fn default() -> Self {
        Self {
            max_items: 100,
            max_event_bytes: 1024 * 1024,
            max_item_bytes: 10 * 1024 * 1024,
            max_total_bytes: 20 * 1024 * 1024,
        }
    }
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not a well-formed envelope (the caller answers 400).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// Over one of the [`EnvelopeLimits`] (the caller answers 413).
    #[error("envelope too large: {0}")]
    TooLarge(String),
}

/// The SDK that sent an envelope, from its header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SdkInfo {
    /// For example `sentry.javascript.browser`.
    pub name: Option<String>,
    /// For example `11.12.0`.
    pub version: Option<String>,
}

/// The envelope header line. Unknown attributes (`trace`, …) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The event id, normalized to 32 lowercase hex digits; `None` when absent or nil.
    pub event_id: Option<String>,
    /// The full DSN, which Sentry accepts as authentication in place of `X-Sentry-Auth`.
    pub dsn: Option<String>,
    /// When the SDK sent the envelope (RFC 3339), for clock-drift correction.
    pub sent_at: Option<String>,
    /// The sending SDK.
    pub sdk: Option<SdkInfo>,
}

/// The header line as it is on the wire, before `event_id` is validated.
#[derive(Deserialize)]
struct RawEnvelopeHeader {
    event_id: Option<String>,
    dsn: Option<String>,
    sent_at: Option<String>,
    sdk: Option<SdkInfo>,
}

/// An item header as it is on the wire. `type` is required; `length` is optional.
#[derive(Deserialize)]
struct RawItemHeader {
    #[serde(rename = "type")]
    item_type: String,
    length: Option<u64>,
    content_type: Option<String>,
    filename: Option<String>,
}

/// One item; its payload borrows from the decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    /// The `type` item header: `event`, `session`, `attachment`, … or anything a future SDK
    /// invents.
    pub item_type: String,
    /// The `content_type` item header, if any.
    pub content_type: Option<String>,
    /// The `filename` item header (attachments), if any.
    pub filename: Option<String>,
    /// The payload bytes, without the newline that ends them.
    pub payload: &'a [u8],
}

impl Item<'_> {
    /// Whether this item is an event, the only item type that is stored.
    pub fn is_event(&self) -> bool {
        self.item_type == EVENT_ITEM_TYPE
    }

    /// The item type as a bounded metric label: the type when it is one the SDKs are known
    /// to send, else `unknown`.
    pub fn type_label(&self) -> &'static str {
        KNOWN_ITEM_TYPES
            .iter()
            .find(|known| **known == self.item_type)
            .copied()
            .unwrap_or("unknown")
    }
}

/// A parsed envelope, borrowing from the decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The header line.
    pub header: EnvelopeHeader,
    /// Every item, in order, of whatever type.
    pub items: Vec<Item<'a>>,
}

/// An `event` item's payload, parsed, with its event id.
#[derive(Debug, Clone, PartialEq)]
pub struct EventItem {
    /// 32 lowercase hex digits, or `None` when neither the envelope nor the payload carries
    /// a valid one: the caller then generates an id. The payload's own `event_id` field is
    /// left as sent; the caller should overwrite it with this id.
    pub event_id: Option<String>,
    /// The event, always a JSON object.
    pub payload: Value,
}

impl Envelope<'_> {
    /// The `event` items, parsed as JSON objects, with their event ids.
    ///
    /// The id follows Sentry's rule (Envelope Items → Event: "if the identifier mismatches
    /// between the Envelope and payload, the Envelope header takes precedence"): the
    /// envelope header's id, else the payload's `event_id`. The format allows one event per
    /// envelope; should a client send several, the header's id goes to the first only, so
    /// two stored events never share an id.
    pub fn events(&self) -> Result<Vec<EventItem>, EnvelopeError> {
        let mut header_id = self.header.event_id.clone();
        let mut events = Vec::new();
        for (index, item) in self.items.iter().enumerate().filter(|(_, item)| item.is_event()) {
            let payload: Value = serde_json::from_slice(item.payload).map_err(|e| {
                EnvelopeError::Malformed(format!(
                    "event item {index} is not valid JSON ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ))
            })?;
            if !payload.is_object() {
                return Err(EnvelopeError::Malformed(format!(
                    "event item {index} is not a JSON object"
                )));
            }
            let payload_id = payload
                .get("event_id")
                .and_then(Value::as_str)
                .and_then(normalize_event_id);
            let event_id = header_id.take().or(payload_id);
            events.push(EventItem { event_id, payload });
        }
        Ok(events)
    }
}

/// Normalizes an event id to 32 lowercase hex digits. Accepts the 32-digit form and the
/// 36-character UUID form with dashes, in either case; the nil UUID counts as no id (SDKs
/// use it to mean "no event").
pub fn normalize_event_id(raw: &str) -> Option<String> {
    uuid_hex(raw).filter(|hex| hex != NIL_UUID_HEX)
}

/// The nil UUID, normalized.
const NIL_UUID_HEX: &str = "00000000000000000000000000000000";

/// A UUID in either accepted form as 32 lowercase hex digits, the nil UUID included.
fn uuid_hex(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let hex: String = match bytes.len() {
        32 => raw.to_owned(),
        36 if [8, 13, 18, 23].iter().all(|&i| bytes.get(i) == Some(&b'-')) => {
            raw.chars().filter(|c| *c != '-').collect()
        }
        _ => return None,
    };
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

/// Parses a decoded envelope body.
///
/// Returns [`EnvelopeError::TooLarge`] when the body, an item or the item count exceeds
/// `limits`, and [`EnvelopeError::Malformed`] for anything that is not an envelope: an empty
/// body, a header or item header that is not a JSON object, an item without `type`, a
/// `length` running past the end, or anything but a newline after a length-delimited
/// payload. Items of every type are returned; [`Envelope::events`] picks the stored ones.
pub fn parse_envelope<'a>(data: &'a [u8], limits: &EnvelopeLimits) -> Result<Envelope<'a>, EnvelopeError> {
    if data.len() > limits.max_total_bytes {
        return Err(EnvelopeError::TooLarge(format!(
            "{} bytes, over the {}-byte limit",
            data.len(),
            limits.max_total_bytes
        )));
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(EnvelopeError::Malformed("empty body".into()));
    }

    let (header_line, mut pos) = split_line(data, 0);
    let raw: RawEnvelopeHeader = parse_json_object(header_line, "envelope header", 0)?;
    let event_id = match raw.event_id.as_deref() {
        None => None,
        Some(id) => {
            let hex = uuid_hex(id)
                .ok_or_else(|| EnvelopeError::Malformed("envelope header event_id is not a UUID".into()))?;
            // The nil UUID is a valid id that means "none".
            (hex != NIL_UUID_HEX).then_some(hex)
        }
    };
    let header = EnvelopeHeader {
        event_id,
        dsn: raw.dsn,
        sent_at: raw.sent_at,
        sdk: raw.sdk,
    };

    let mut items = Vec::new();
    while pos < data.len() {
        // Blank lines between items (or trailing ones) carry nothing.
        match &data[pos..] {
            [b'\n', ..] => {
                pos += 1;
                continue;
            }
            [b'\r', b'\n', ..] => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        if items.len() >= limits.max_items {
            return Err(EnvelopeError::TooLarge(format!("more than {} items", limits.max_items)));
        }
        let header_start = pos;
        let (line, next) = split_line(data, pos);
        let raw: RawItemHeader = parse_json_object(line, "item header", header_start)?;
        pos = next;

        let payload = match raw.length {
            Some(length) => {
                let available = data.len() - pos;
                let length = usize::try_from(length)
                    .ok()
                    .filter(|l| *l <= available)
                    .ok_or_else(|| {
                        EnvelopeError::Malformed(format!(
                            "item at byte {header_start} declares {length} bytes but only {available} remain"
                        ))
                    })?;
                let payload = &data[pos..pos + length];
                pos += length;
                pos += match &data[pos..] {
                    [] => 0,
                    [b'\n', ..] => 1,
                    [b'\r', b'\n', ..] => 2,
                    _ => {
                        return Err(EnvelopeError::Malformed(format!(
                            "item at byte {header_start}: no newline after its {length}-byte payload"
                        )));
                    }
                };
                payload
            }
            // At the end of the body (no newline after the item header) this is empty.
            None => {
                let (payload, next) = split_line(data, pos);
                pos = next;
                payload
            }
        };

        let item_limit = if raw.item_type == EVENT_ITEM_TYPE {
            limits.max_event_bytes
        } else {
            limits.max_item_bytes
        };
        if payload.len() > item_limit {
            return Err(EnvelopeError::TooLarge(format!(
                "item at byte {header_start} has {} bytes, over the {item_limit}-byte limit for its type",
                payload.len()
            )));
        }
        items.push(Item {
            item_type: raw.item_type,
            content_type: raw.content_type,
            filename: raw.filename,
            payload,
        });
    }
    Ok(Envelope { header, items })
}

/// The line starting at `start` (without its `\n`) and the position after that `\n`, or the
/// rest of `data` and its end when there is no further newline.
fn split_line(data: &[u8], start: usize) -> (&[u8], usize) {
    let rest = &data[start..];
    match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], start + i + 1),
        None => (rest, data.len()),
    }
}

/// Parses one header line, which must be a JSON object (serde would otherwise also accept an
/// array for a struct). Trailing whitespace, a `\r` included, is allowed.
fn parse_json_object<T: serde::de::DeserializeOwned>(
    line: &[u8],
    what: &str,
    offset: usize,
) -> Result<T, EnvelopeError> {
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(EnvelopeError::Malformed(format!(
            "{what} at byte {offset} is not a JSON object"
        )));
    }
    serde_json::from_slice(line).map_err(|e| {
        EnvelopeError::Malformed(format!(
            "{what} at byte {offset} is invalid ({:?} error at column {})",
            e.classify(),
            e.column()
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    use super::*;

    // The bodies of the requests captured from the official SDKs
    // (../shared/sentry-sample-envelopes.txt), decoded. The capture rewrote local paths in
    // the Python stack frames after the fact without updating the item's `length` (3091 on
    // the wire); the fixture's `length` is the rewritten payload's, 3085, so the body is
    // consistent again. The Python request was gzip-compressed: tests compress it back.
    const PYTHON_EVENT: &[u8] = include_bytes!("../../tests/fixtures/sentry/python-event.envelope");
    const BROWSER_SESSION_INIT: &[u8] = include_bytes!("../../tests/fixtures/sentry/browser-session-init.envelope");
    const BROWSER_EVENT: &[u8] = include_bytes!("../../tests/fixtures/sentry/browser-event.envelope");
    const BROWSER_SESSION_UPDATE: &[u8] = include_bytes!("../../tests/fixtures/sentry/browser-session-update.envelope");
    const RUST_EVENT: &[u8] = include_bytes!("../../tests/fixtures/sentry/rust-event.envelope");

    const MIB: usize = 1024 * 1024;

    fn limits() -> EnvelopeLimits {
        EnvelopeLimits::default()
    }

    fn parse(data: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
        parse_envelope(data, &limits())
    }

    fn malformed(data: &[u8]) -> String {
        match parse(data) {
            Err(EnvelopeError::Malformed(reason)) => reason,
            other => panic!(
                "expected Malformed for {:?}, got {other:?}",
                String::from_utf8_lossy(data)
            ),
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn brotli(data: &[u8], quality: u32) -> Vec<u8> {
        let mut encoder = ::brotli::CompressorWriter::new(Vec::new(), 4096, quality, 22);
        encoder.write_all(data).unwrap();
        encoder.into_inner()
    }

    // --- the official SDKs' requests ---

    #[test]
    fn python_sdk_gzip_event() {
        let body = gzip(PYTHON_EVENT);
        let decoded = decode_body(Some("gzip"), &body, MIB).unwrap();
        assert_eq!(decoded, PYTHON_EVENT);
        let envelope = parse(&decoded).unwrap();
        assert_eq!(
            envelope.header.event_id.as_deref(),
            Some("1f8fe342500647838aae632658958965")
        );
        assert_eq!(envelope.header.sent_at.as_deref(), Some("2026-11-27T10:56:05.325032Z"));
        assert_eq!(envelope.items.len(), 1);
        let item = &envelope.items[0];
        assert!(item.is_event());
        assert_eq!(item.content_type.as_deref(), Some("application/json"));
        assert_eq!(item.payload.len(), 3085);
        let events = envelope.events().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_id.as_deref(), Some("1f8fe342500647838aae632658958965"));
        assert_eq!(events[0].payload["exception"]["values"][0]["type"], "ValueError");
        assert_eq!(events[0].payload["platform"], "python");
    }

    #[test]
    fn python_sample_with_its_stale_length_is_truncated() {
        let stale = String::from_utf8(PYTHON_EVENT.to_vec())
            .unwrap()
            .replace("\"length\":3085", "\"length\":3091");
        assert!(malformed(stale.as_bytes()).contains("declares 3091 bytes"));
    }

    #[test]
    fn browser_sdk_sessions_are_items_without_events() {
        for body in [BROWSER_SESSION_INIT, BROWSER_SESSION_UPDATE] {
            assert_eq!(body.last(), Some(&b'}'), "the browser SDK sends no final newline");
            let envelope = parse(body).unwrap();
            assert_eq!(envelope.header.event_id, None);
            let sdk = envelope.header.sdk.as_ref().unwrap();
            assert_eq!(sdk.name.as_deref(), Some("sentry.javascript.browser"));
            assert_eq!(sdk.version.as_deref(), Some("11.12.0"));
            assert_eq!(envelope.items.len(), 1);
            assert_eq!(envelope.items[0].item_type, "session");
            assert_eq!(envelope.items[0].type_label(), "session");
            assert!(envelope.items[0].payload.starts_with(b"{\"sid\""));
            assert!(envelope.items[0].payload.ends_with(b"}}"));
            assert!(envelope.events().unwrap().is_empty());
        }
    }

    #[test]
    fn browser_sdk_event_without_length() {
        let envelope = parse(BROWSER_EVENT).unwrap();
        assert_eq!(envelope.items.len(), 1);
        assert!(envelope.items[0].is_event());
        assert_eq!(envelope.items[0].content_type, None);
        let events = envelope.events().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_id.as_deref(), Some("89ada979d2af4f4380bd79e458285158"));
        assert_eq!(events[0].payload["exception"]["values"][0]["type"], "TypeError");
        assert_eq!(events[0].payload["platform"], "javascript");
    }

    #[test]
    fn rust_sdk_event_with_dashed_header_id() {
        let envelope = parse(RUST_EVENT).unwrap();
        // Sent as "031e8820-1ca2-4ca0-8464-a5440c030ead"; the payload has the undashed form.
        assert_eq!(
            envelope.header.event_id.as_deref(),
            Some("031e88201ca24ca08464a5440c030ead")
        );
        assert_eq!(envelope.header.sdk, None);
        assert_eq!(envelope.items.len(), 1);
        assert_eq!(envelope.items[0].payload.len(), 832);
        let events = envelope.events().unwrap();
        assert_eq!(events[0].event_id.as_deref(), Some("031e88201ca24ca08464a5440c030ead"));
        assert_eq!(events[0].payload["exception"]["values"][0]["type"], "PaymentDeclined");
        assert_eq!(events[0].payload.get("level"), None);
    }

    #[test]
    fn every_sample_survives_every_encoding() {
        for sample in [
            PYTHON_EVENT,
            BROWSER_SESSION_INIT,
            BROWSER_EVENT,
            BROWSER_SESSION_UPDATE,
            RUST_EVENT,
        ] {
            for (encoding, body) in [
                (None, sample.to_vec()),
                (Some("gzip"), gzip(sample)),
                (Some("deflate"), zlib(sample)),
                (Some("deflate"), raw_deflate(sample)),
                (Some("br"), brotli(sample, 5)),
            ] {
                let decoded = decode_body(encoding, &body, MIB).unwrap();
                assert_eq!(decoded, sample, "{encoding:?}");
                assert_eq!(parse(&decoded).unwrap(), parse(sample).unwrap());
            }
        }
    }

    // --- the format, with the examples of develop.sentry.dev "Envelopes" ---

    #[test]
    fn spec_example_two_items_with_and_without_final_newline() {
        let head = concat!(
            r#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","#,
            r#""dsn":"https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42"}"#,
            "\n",
            r#"{"type":"attachment","length":10,"content_type":"text/plain","filename":"hello.txt"}"#,
            "\n\u{feff}Hello\r\n\n",
            r#"{"type":"event","length":41,"content_type":"application/json","filename":"application.log"}"#,
            "\n",
            r#"{"message":"hello world","level":"error"}"#,
        )
        .as_bytes();
        for body in [head.to_vec(), [head, b"\n"].concat()] {
            let envelope = parse(&body).unwrap();
            assert_eq!(
                envelope.header.dsn.as_deref(),
                Some("https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42")
            );
            assert_eq!(envelope.items.len(), 2);
            assert_eq!(envelope.items[0].payload, b"\xef\xbb\xbfHello\r\n");
            assert_eq!(envelope.items[0].filename.as_deref(), Some("hello.txt"));
            assert_eq!(envelope.items[0].type_label(), "attachment");
            assert_eq!(
                envelope.items[1].payload,
                b"{\"message\":\"hello world\",\"level\":\"error\"}"
            );
            let events = envelope.events().unwrap();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].event_id.as_deref(), Some("9ec79c33ec9942ab8353589fcb2e04dc"));
            assert_eq!(events[0].payload["message"], "hello world");
        }
    }

    #[test]
    fn spec_example_empty_attachments() {
        let id = "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n";
        let item = "{\"type\":\"attachment\",\"length\":0}\n";
        for body in [format!("{id}{item}\n{item}\n"), format!("{id}{item}\n{item}")] {
            let envelope = parse(body.as_bytes()).unwrap();
            assert_eq!(envelope.items.len(), 2, "{body:?}");
            assert!(envelope.items.iter().all(|item| item.payload.is_empty()));
        }
    }

    #[test]
    fn spec_example_implicit_length() {
        for body in [
            "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\"}\nhelloworld\n",
            "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\"}\nhelloworld",
        ] {
            let envelope = parse(body.as_bytes()).unwrap();
            assert_eq!(envelope.items.len(), 1);
            assert_eq!(envelope.items[0].payload, b"helloworld");
        }
        let body = concat!(
            "{}\n",
            r#"{"type":"session"}"#,
            "\n",
            r#"{"started": "2020-02-07T14:16:00Z","attrs":{"release":"sentry-test@1.0.0"}}"#,
        )
        .as_bytes();
        let envelope = parse(body).unwrap();
        assert_eq!(envelope.header, EnvelopeHeader::default());
        assert_eq!(envelope.items[0].item_type, "session");
    }

    #[test]
    fn header_only_envelopes() {
        for body in [
            "{}",
            "{}\n",
            "{\"event_id\":\"12c2d058-d584-4270-9aa2-eca08bf20986\"}",
            "{}\n\n\n",
        ] {
            let envelope = parse(body.as_bytes()).unwrap();
            assert!(envelope.items.is_empty(), "{body:?}");
            assert!(envelope.events().unwrap().is_empty());
        }
    }

    #[test]
    fn all_item_types_with_and_without_length() {
        let types = [
            "event",
            "transaction",
            "session",
            "sessions",
            "attachment",
            "client_report",
            "user_report",
            "check_in",
            "replay_event",
            "replay_recording",
            "profile",
            "statsd",
            "span",
            "log",
            "something_new",
        ];
        let mut body = String::from("{\"event_id\":\"12c2d058d58442709aa2eca08bf20986\"}\n");
        for (i, item_type) in types.iter().enumerate() {
            let payload = if *item_type == "event" {
                "{\"message\":\"boom\"}".to_owned()
            } else {
                format!("{{\"n\":{i}}}")
            };
            if i % 2 == 0 {
                body.push_str(&format!(
                    "{{\"type\":\"{item_type}\",\"length\":{}}}\n{payload}\n",
                    payload.len()
                ));
            } else {
                body.push_str(&format!("{{\"type\":\"{item_type}\"}}\n{payload}\n"));
            }
        }
        let envelope = parse(body.as_bytes()).unwrap();
        assert_eq!(envelope.items.len(), types.len());
        for (item, item_type) in envelope.items.iter().zip(types) {
            assert_eq!(item.item_type, item_type);
        }
        assert_eq!(envelope.items.iter().filter(|item| item.is_event()).count(), 1);
        assert_eq!(envelope.items[14].type_label(), "unknown");
        assert_eq!(envelope.items[1].type_label(), "transaction");
        let events = envelope.events().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].payload, json!({"message": "boom"}));
    }

    #[test]
    fn length_payloads_may_hold_newlines_and_be_empty() {
        let body = concat!(
            "{}\n",
            "{\"type\":\"attachment\",\"length\":5}\na\nb\nc\n",
            "{\"type\":\"event\",\"length\":0}\n\n",
            "{\"type\":\"log\"}\n",
        )
        .as_bytes();
        let envelope = parse(body).unwrap();
        assert_eq!(envelope.items.len(), 3);
        assert_eq!(envelope.items[0].payload, b"a\nb\nc");
        assert_eq!(envelope.items[1].payload, b"");
        assert_eq!(envelope.items[2].payload, b"");
        // An empty event payload is an event that is not JSON.
        assert!(matches!(envelope.events(), Err(EnvelopeError::Malformed(_))));
    }

    #[test]
    fn item_header_at_the_very_end() {
        let envelope = parse(b"{}\n{\"type\":\"client_report\"}").unwrap();
        assert_eq!(envelope.items.len(), 1);
        assert_eq!(envelope.items[0].payload, b"");
        assert!(parse(b"{}\n{\"type\":\"client_report\",\"length\":0}").is_ok());
        assert!(malformed(b"{}\n{\"type\":\"client_report\",\"length\":1}").contains("declares 1 bytes"));
    }

    #[test]
    fn crlf_line_endings() {
        let body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\r\n\
                     {\"type\":\"event\"}\r\n{\"message\":\"a\"}\r\n\
                     {\"type\":\"attachment\",\"length\":2}\r\nab\r\n\
                     {\"type\":\"attachment\"}\r\nxy\r\n";
        let envelope = parse(body).unwrap();
        assert_eq!(envelope.items.len(), 3);
        // Without `length`, `\r` belongs to the payload (the format says so) …
        assert_eq!(envelope.items[0].payload, b"{\"message\":\"a\"}\r");
        assert_eq!(envelope.items[2].payload, b"xy\r");
        // … which JSON ignores.
        assert_eq!(envelope.events().unwrap()[0].payload["message"], "a");
        assert_eq!(envelope.items[1].payload, b"ab");
    }

    #[test]
    fn blank_lines_between_items_are_skipped() {
        let body = b"{}\n\n{\"type\":\"event\"}\n{}\n\r\n\n{\"type\":\"session\"}\n{}\n\n\n";
        assert_eq!(parse(body).unwrap().items.len(), 2);
    }

    #[test]
    fn unknown_header_attributes_are_ignored() {
        let body = br#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","trace":{"x":[1,2]},"extra":null}
{"type":"event","length":2,"attachment_type":"event.attachment","whatever":{"a":1}}
{}
"#;
        let envelope = parse(body).unwrap();
        assert_eq!(envelope.items.len(), 1);
        assert_eq!(envelope.events().unwrap()[0].payload, json!({}));
    }

    // --- event ids ---

    #[test]
    fn event_id_forms() {
        let hex = "12c2d058d58442709aa2eca08bf20986";
        for raw in [
            "12c2d058d58442709aa2eca08bf20986",
            "12c2d058-d584-4270-9aa2-eca08bf20986",
            "12C2D058D58442709AA2ECA08BF20986",
            "12C2D058-D584-4270-9AA2-ECA08BF20986",
        ] {
            assert_eq!(normalize_event_id(raw).as_deref(), Some(hex), "{raw}");
            let body = format!("{{\"event_id\":\"{raw}\"}}\n{{\"type\":\"event\"}}\n{{}}\n");
            let envelope = parse(body.as_bytes()).unwrap();
            assert_eq!(envelope.header.event_id.as_deref(), Some(hex));
            assert_eq!(envelope.events().unwrap()[0].event_id.as_deref(), Some(hex));
        }
        for raw in [
            "",
            "abc123",
            "12c2d058d58442709aa2eca08bf2098",
            "12c2d058d58442709aa2eca08bf209866",
            "12c2d058d58442709aa2eca08bf2098g",
            "12c2d058-d584-4270-9aa2eca08bf20986",
            "12c2d058d-584-4270-9aa2-eca08bf20986",
            "{12c2d058-d584-4270-9aa2-eca08bf20986}",
            "12c2d058-d584-4270-9aa2-eca08bf2098é",
            "00000000000000000000000000000000",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(normalize_event_id(raw), None, "{raw}");
        }
    }

    #[test]
    fn invalid_header_event_id_is_malformed_but_nil_is_none() {
        assert!(malformed(b"{\"event_id\":\"abc123\"}\n").contains("event_id"));
        assert!(malformed(b"{\"event_id\":42}\n").contains("envelope header"));
        for nil in [
            "00000000000000000000000000000000",
            "00000000-0000-0000-0000-000000000000",
        ] {
            let body = format!("{{\"event_id\":\"{nil}\"}}\n");
            assert_eq!(parse(body.as_bytes()).unwrap().header.event_id, None);
        }
        assert_eq!(parse(b"{\"event_id\":null}").unwrap().header.event_id, None);
    }

    #[test]
    fn event_id_precedence() {
        let a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let b = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";
        let ids = |body: String| -> Vec<Option<String>> {
            parse(body.as_bytes())
                .unwrap()
                .events()
                .unwrap()
                .into_iter()
                .map(|e| e.event_id)
                .collect()
        };
        // The envelope header's id wins over the payload's (Sentry's rule) …
        assert_eq!(
            ids(format!(
                "{{\"event_id\":\"{a}\"}}\n{{\"type\":\"event\"}}\n{{\"event_id\":\"{b}\"}}\n"
            )),
            [Some(a.to_owned())]
        );
        // … the payload's is used without one …
        assert_eq!(
            ids(format!("{{}}\n{{\"type\":\"event\"}}\n{{\"event_id\":\"{b}\"}}\n")),
            [Some("b".repeat(32))]
        );
        // … an invalid payload id counts as none …
        assert_eq!(
            ids("{}\n{\"type\":\"event\"}\n{\"event_id\":\"nope\"}\n".into()),
            [None]
        );
        assert_eq!(ids("{}\n{\"type\":\"event\"}\n{\"event_id\":7}\n".into()), [None]);
        assert_eq!(ids("{}\n{\"type\":\"event\"}\n{}\n".into()), [None]);
        // … and a second event never reuses the header's id.
        assert_eq!(
            ids(format!(
                "{{\"event_id\":\"{a}\"}}\n\
                 {{\"type\":\"event\"}}\n{{}}\n\
                 {{\"type\":\"event\"}}\n{{\"event_id\":\"{b}\"}}\n\
                 {{\"type\":\"event\"}}\n{{}}\n"
            )),
            [Some(a.to_owned()), Some("b".repeat(32)), None]
        );
    }

    #[test]
    fn event_payloads_must_be_json_objects() {
        for payload in ["not json", "[1,2]", "\"text\"", "null", "{\"a\":"] {
            let body = format!("{{}}\n{{\"type\":\"event\"}}\n{payload}\n");
            let envelope = parse(body.as_bytes()).unwrap();
            assert!(
                matches!(envelope.events(), Err(EnvelopeError::Malformed(_))),
                "{payload}"
            );
        }
        // Dropped items are never parsed, whatever they hold.
        let envelope = parse(b"{}\n{\"type\":\"session\"}\nnot json\n").unwrap();
        assert!(envelope.events().unwrap().is_empty());
    }

    // --- limits ---

    #[test]
    fn item_count_limit() {
        let small = EnvelopeLimits {
            max_items: 3,
            ..limits()
        };
        let body = |n: usize| format!("{{}}\n{}", "{\"type\":\"session\"}\n{}\n".repeat(n));
        assert_eq!(parse_envelope(body(3).as_bytes(), &small).unwrap().items.len(), 3);
        assert!(matches!(
            parse_envelope(body(4).as_bytes(), &small),
            Err(EnvelopeError::TooLarge(_))
        ));
        // The default allows 100.
        assert_eq!(parse(body(100).as_bytes()).unwrap().items.len(), 100);
        assert!(matches!(parse(body(101).as_bytes()), Err(EnvelopeError::TooLarge(_))));
    }

    #[test]
    fn item_size_limits() {
        let small = EnvelopeLimits {
            max_items: 10,
            max_event_bytes: 10,
            max_item_bytes: 20,
            max_total_bytes: 1000,
        };
        let item = |item_type: &str, len: usize, with_length: bool| {
            let payload = "x".repeat(len);
            if with_length {
                format!("{{}}\n{{\"type\":\"{item_type}\",\"length\":{len}}}\n{payload}\n")
            } else {
                format!("{{}}\n{{\"type\":\"{item_type}\"}}\n{payload}\n")
            }
        };
        for with_length in [true, false] {
            assert!(parse_envelope(item("event", 10, with_length).as_bytes(), &small).is_ok());
            assert!(matches!(
                parse_envelope(item("event", 11, with_length).as_bytes(), &small),
                Err(EnvelopeError::TooLarge(_))
            ));
            // Other items have their own, larger limit.
            assert!(parse_envelope(item("attachment", 20, with_length).as_bytes(), &small).is_ok());
            assert!(matches!(
                parse_envelope(item("attachment", 21, with_length).as_bytes(), &small),
                Err(EnvelopeError::TooLarge(_))
            ));
        }
    }

    #[test]
    fn total_size_limit() {
        let body = b"{}\n{\"type\":\"session\"}\n{\"abcdefghijklmn\":1}\n";
        let small = EnvelopeLimits {
            max_total_bytes: body.len() - 1,
            ..limits()
        };
        assert!(matches!(parse_envelope(body, &small), Err(EnvelopeError::TooLarge(_))));
        assert!(parse_envelope(&body[..body.len() - 1], &small).is_ok());
    }

    #[test]
    fn huge_declared_lengths_are_malformed_not_allocated() {
        for length in [
            "1048577",
            "18446744073709551615",
            "99999999999999999999999",
            "1e30",
            "-1",
            "1.5",
            "\"3\"",
        ] {
            let body = format!("{{}}\n{{\"type\":\"event\",\"length\":{length}}}\n{{}}\n");
            assert!(
                matches!(parse(body.as_bytes()), Err(EnvelopeError::Malformed(_))),
                "{length}"
            );
        }
    }

    // --- malformed input ---

    #[test]
    fn malformed_envelopes() {
        for body in [
            &b""[..],
            b"\n",
            b"  \n\n",
            b"garbage",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
            b"[]\n",
            b"\"event\"\n",
            b"{\n",
            b"{}}\n",
            b"{\"sdk\":\"python\"}\n",
            b"{}\n{\"length\":2}\n{}\n",
            b"{}\n{\"type\":5}\n{}\n",
            b"{}\n{\"type\":null}\n{}\n",
            b"{}\n[\"event\"]\n{}\n",
            b"{}\nnot an item header\n",
            b"{}\n{\"type\":\"event\",\"length\":3}\n{}",
            b"{}\n{\"type\":\"event\",\"length\":2}\n{}x\n",
            b"{}\n{\"type\":\"event\",\"length\":2}\n{} \n",
            b"{}\n{\"type\":\"event\",\"length\":2}\n{}\r",
            b"{}\n{\"type\":\"event\"}\n{}\n}\n",
        ] {
            malformed(body);
        }
    }

    #[test]
    fn error_messages_never_quote_content() {
        for body in [
            &b"{\"event_id\":\"alice@example.com\"}\n"[..],
            b"{\"dsn\":[\"alice@example.com\"]}\n",
            b"{}\n{\"type\":\"event\",\"length\":\"alice@example.com\"}\n",
            b"{}\n{\"type\":[\"alice@example.com\"]}\n",
        ] {
            let reason = malformed(body);
            assert!(!reason.contains("alice"), "{reason}");
        }
        let envelope = parse(b"{}\n{\"type\":\"event\"}\n[\"alice@example.com\"\n").unwrap();
        let reason = envelope.events().unwrap_err().to_string();
        assert!(!reason.contains("alice"), "{reason}");
    }

    // --- decompression ---

    #[test]
    fn identity_bodies() {
        for encoding in [None, Some(""), Some("identity"), Some(" IDENTITY ")] {
            assert_eq!(decode_body(encoding, b"abc", 3).unwrap(), b"abc");
            assert_eq!(
                decode_body(encoding, b"abcd", 3),
                Err(DecodeError::TooLarge { limit: 3 })
            );
        }
    }

    #[test]
    fn compressed_round_trips() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for (encoding, body) in [
            ("gzip", gzip(&data)),
            ("x-gzip", gzip(&data)),
            ("GZIP", gzip(&data)),
            ("deflate", zlib(&data)),
            ("deflate", raw_deflate(&data)),
            ("Deflate", raw_deflate(&data)),
            ("br", brotli(&data, 5)),
            (" br ", brotli(&data, 11)),
        ] {
            assert_eq!(
                decode_body(Some(encoding), &body, data.len()).unwrap(),
                data,
                "{encoding}"
            );
            assert_eq!(
                decode_body(Some(encoding), &body, data.len() - 1),
                Err(DecodeError::TooLarge { limit: data.len() - 1 }),
                "{encoding}"
            );
        }
    }

    #[test]
    fn concatenated_gzip_members() {
        let body = [gzip(b"{}\n{\"type\":"), gzip(b"\"session\"}\n{}")].concat();
        let decoded = decode_body(Some("gzip"), &body, MIB).unwrap();
        assert_eq!(decoded, b"{}\n{\"type\":\"session\"}\n{}");
    }

    #[test]
    fn empty_compressed_bodies() {
        assert_eq!(decode_body(Some("gzip"), &gzip(b""), 10).unwrap(), b"");
        assert_eq!(decode_body(Some("deflate"), &zlib(b""), 10).unwrap(), b"");
        assert_eq!(decode_body(Some("br"), &brotli(b"", 5), 10).unwrap(), b"");
    }

    #[test]
    fn unsupported_encodings() {
        for encoding in ["compress", "zstd", "gzip, br", "br;q=1", "identity, gzip"] {
            assert!(
                matches!(
                    decode_body(Some(encoding), b"x", 10),
                    Err(DecodeError::UnsupportedEncoding(_))
                ),
                "{encoding}"
            );
        }
        let long = "z".repeat(1000);
        match decode_body(Some(&long), b"x", 10) {
            Err(DecodeError::UnsupportedEncoding(quoted)) => assert_eq!(quoted.len(), MAX_QUOTED_ENCODING),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn corrupt_and_fake_compressed_bodies() {
        let plain = RUST_EVENT;
        for encoding in ["gzip", "deflate", "br"] {
            // A plain envelope labelled compressed, garbage, and nothing at all.
            for body in [plain, b"\x00\x01\x02\x03garbage", b"\x1f\x8b"] {
                assert_eq!(
                    decode_body(Some(encoding), body, MIB),
                    Err(DecodeError::Corrupt {
                        encoding: if encoding == "br" { "br" } else { encoding }
                    }),
                    "{encoding} {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(8)])
                );
            }
        }
    }

    #[test]
    fn truncated_compressed_bodies() {
        let data = [RUST_EVENT, PYTHON_EVENT, BROWSER_EVENT].concat();
        for (encoding, body) in [
            ("gzip", gzip(&data)),
            ("deflate", zlib(&data)),
            ("deflate", raw_deflate(&data)),
            ("br", brotli(&data, 5)),
        ] {
            for cut in [1, 2, body.len() / 2, body.len() - 1] {
                let truncated = &body[..body.len() - cut];
                let result = decode_body(Some(encoding), truncated, MIB);
                assert!(
                    matches!(result, Err(DecodeError::Corrupt { .. })),
                    "{encoding} cut {cut}: {result:?}"
                );
            }
        }
    }

    /// A deflate stream of `chunks` MiB of zeros, built by repeating one self-contained,
    /// byte-aligned compressed MiB instead of compressing a gigabyte in a debug build.
    fn raw_deflate_bomb(chunks: usize) -> Vec<u8> {
        let mut compress = flate2::Compress::new(Compression::best(), false);
        let mut chunk = Vec::with_capacity(64 * 1024);
        compress
            .compress_vec(&vec![0u8; MIB], &mut chunk, flate2::FlushCompress::Full)
            .unwrap();
        assert_eq!(compress.total_in(), MIB as u64, "the output buffer was too small");
        let mut stream = Vec::with_capacity(chunk.len() * chunks + 2);
        for _ in 0..chunks {
            stream.extend_from_slice(&chunk);
        }
        // An empty final block with fixed Huffman codes.
        stream.extend_from_slice(&[0x03, 0x00]);
        stream
    }

    fn gzip_bomb(chunks: usize) -> Vec<u8> {
        let mut crc_chunk = flate2::Crc::new();
        crc_chunk.update(&vec![0u8; MIB]);
        let mut crc = flate2::Crc::new();
        for _ in 0..chunks {
            crc.combine(&crc_chunk);
        }
        let mut body = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff];
        body.extend(raw_deflate_bomb(chunks));
        body.extend(crc.sum().to_le_bytes());
        body.extend(((chunks * MIB) as u32).to_le_bytes());
        body
    }

    fn zlib_bomb(chunks: usize) -> Vec<u8> {
        // Adler-32 of n zeros: a = 1, b = n mod 65521.
        let adler = (((chunks * MIB) % 65521) as u32) << 16 | 1;
        let mut body = vec![0x78, 0xda];
        body.extend(raw_deflate_bomb(chunks));
        body.extend(adler.to_be_bytes());
        body
    }

    #[test]
    fn bomb_construction_is_valid() {
        for (encoding, body) in [
            ("gzip", gzip_bomb(3)),
            ("deflate", zlib_bomb(3)),
            ("deflate", raw_deflate_bomb(3)),
        ] {
            let decoded = decode_body(Some(encoding), &body, 3 * MIB).unwrap();
            assert_eq!(decoded.len(), 3 * MIB, "{encoding}");
            assert!(decoded.iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn gigabyte_bombs_are_refused_quickly() {
        let limit = 10 * MIB;
        for (encoding, body) in [
            ("gzip", gzip_bomb(1024)),
            ("deflate", zlib_bomb(1024)),
            ("deflate", raw_deflate_bomb(1024)),
        ] {
            // 1 GiB of zeros in about a megabyte.
            assert!(body.len() < 2 * MIB, "{encoding}: {} bytes", body.len());
            let started = Instant::now();
            assert_eq!(
                decode_body(Some(encoding), &body, limit),
                Err(DecodeError::TooLarge { limit })
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{encoding}: {:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn brotli_bomb_is_refused() {
        let body = brotli(&vec![0u8; 64 * MIB], 1);
        assert!(body.len() < 64 * 1024, "{} bytes", body.len());
        assert_eq!(
            decode_body(Some("br"), &body, MIB),
            Err(DecodeError::TooLarge { limit: MIB })
        );
    }

    #[test]
    fn output_buffer_never_outgrows_the_limit() {
        for limit in [0, 1, 1000, INITIAL_DECODE_CAPACITY + 1, 3 * MIB + 7] {
            let out = read_up_to(io::repeat(0), limit).unwrap();
            assert_eq!(out.len(), limit);
            assert!(out.capacity() <= limit.max(1), "{limit}: capacity {}", out.capacity());
        }
        assert_eq!(
            read_limited(io::repeat(7), 5, "gzip"),
            Err(DecodeError::TooLarge { limit: 5 })
        );
        assert_eq!(read_limited(&b"12345"[..], 5, "gzip").unwrap(), b"12345");
    }

    // --- no panics, whatever the input ---

    /// Envelope-shaped fragments, so random inputs reach the parser's deeper branches.
    const FRAGMENTS: &[&[u8]] = &[
        b"{}",
        b"{",
        b"}",
        b"\n",
        b"\r\n",
        b"\"type\":\"event\"",
        b"\"type\":\"session\"",
        b"{\"type\":\"event\",\"length\":",
        b"{\"type\":\"attachment\"}",
        b"\"length\":",
        b"0",
        b"7",
        b"18446744073709551616",
        b",",
        b"\"event_id\":\"12c2d058-d584-4270-9aa2-eca08bf20986\"",
        b"\"event_id\":",
        b"null",
        b"[",
        b"\xff\xfe",
        b"\xc3",
    ];

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = StdRng::seed_from_u64(0x5e_17_e4);
        let small = EnvelopeLimits {
            max_items: 8,
            max_event_bytes: 64,
            max_item_bytes: 128,
            max_total_bytes: 4096,
        };
        for round in 0..2000 {
            let data: Vec<u8> = if round % 2 == 0 {
                let mut bytes = vec![0u8; rng.random_range(0..512)];
                rng.fill(&mut bytes[..]);
                bytes
            } else {
                (0..rng.random_range(0..40))
                    .flat_map(|_| FRAGMENTS[rng.random_range(0..FRAGMENTS.len())].iter().copied())
                    .collect()
            };
            for limits in [&limits(), &small] {
                if let Ok(envelope) = parse_envelope(&data, limits) {
                    let _ = envelope.events();
                }
            }
            for encoding in ["gzip", "deflate", "br"] {
                let _ = decode_body(Some(encoding), &data, 4096);
            }
        }
    }

    #[test]
    fn mutated_samples_never_panic() {
        let mut rng = StdRng::seed_from_u64(42);
        let samples = [
            PYTHON_EVENT,
            BROWSER_SESSION_INIT,
            BROWSER_EVENT,
            BROWSER_SESSION_UPDATE,
            RUST_EVENT,
        ];
        let compressed: Vec<(&str, Vec<u8>)> = vec![
            ("gzip", gzip(RUST_EVENT)),
            ("deflate", zlib(RUST_EVENT)),
            ("br", brotli(RUST_EVENT, 5)),
        ];
        for round in 0..2000 {
            let mut data = samples[round % samples.len()].to_vec();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..data.len());
                match rng.random_range(0..3) {
                    0 => data[at] = rng.random(),
                    1 => data.truncate(at),
                    _ => data.insert(at, b"\n{}\"0"[rng.random_range(0..5)]),
                }
                if data.is_empty() {
                    break;
                }
            }
            if let Ok(envelope) = parse(&data) {
                let _ = envelope.events();
            }
            let (encoding, body) = &compressed[round % compressed.len()];
            let mut body = body.clone();
            let at = rng.random_range(0..body.len());
            body[at] ^= 1 << rng.random_range(0..8);
            if let Ok(decoded) = decode_body(Some(encoding), &body, MIB) {
                let _ = parse(&decoded).map(|envelope| envelope.events());
            }
        }
    }
}
