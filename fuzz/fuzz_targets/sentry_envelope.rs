//! Sentry envelope ingestion, everything `POST /api/{project_id}/envelope/` runs on the body
//! before storing: `decode_body` (gzip, deflate, br, under the 20 MiB decoded limit),
//! `parse_envelope`, `Envelope::events`, the DSN and `X-Sentry-Auth` parsers, and
//! `prepare_sentry_event` (depth bounding, client-address removal, scrubbing).
//!
//! Input: a mode byte, then the body.
//! - mode % 8 < 5: the body is sent as is with Content-Encoding identity, gzip, deflate, br
//!   or x-gzip (hostile compressed data, bombs);
//! - mode % 8 in 5..8: the body is compressed here with gzip, zlib-deflate or br first, so
//!   the envelope parser behind the decoders sees structured input, and the decoder must
//!   give back exactly the body.
//!
//! Checks: never panics; decoding never returns more than its limit (tried with the real
//! 20 MiB and with a small limit taken from the mode byte); memory stays bounded (run with
//! `-rss_limit_mb` and `-malloc_limit_mb`, see scripts/fuzz.sh); every parsed event is a
//! JSON object and its id 32 lowercase hex digits.
#![no_main]

use std::io::Write;

use boxoffice_core::Timestamp;
use boxoffice_core::error_store::sentry_event::prepare_sentry_event;
use boxoffice_fuzz::selector;
use boxoffice_server::http::envelopes::MAX_ENVELOPE_BODY_BYTES;
use boxoffice_server::sentry::{DecodeError, EnvelopeLimits, decode_body, parse_dsn, parse_envelope, sentry_key};
use libfuzzer_sys::fuzz_target;

const ENCODINGS: [&str; 5] = ["identity", "gzip", "deflate", "br", "x-gzip"];

fn compress(mode: u8, body: &[u8]) -> (&'static str, Vec<u8>) {
    use flate2::Compression;
    match mode {
        5 => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(body).expect("writes to a Vec");
            ("gzip", encoder.finish().expect("writes to a Vec"))
        }
        6 => {
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(body).expect("writes to a Vec");
            ("deflate", encoder.finish().expect("writes to a Vec"))
        }
        _ => {
            let mut out = Vec::new();
            {
                let mut encoder = brotli::CompressorWriter::new(&mut out, 4096, 1, 16);
                encoder.write_all(body).expect("writes to a Vec");
            }
            ("br", out)
        }
    }
}

fn ingest(decoded: &[u8]) {
    let limits = EnvelopeLimits::default();
    // The key lookups the handler does before the body, fed with the body's first line.
    let first_line = decoded.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = String::from_utf8_lossy(first_line);
    let _ = sentry_key(Some(&first_line), Some(&first_line));
    let _ = parse_dsn(&first_line);
    let Ok(envelope) = parse_envelope(decoded, &limits) else {
        return;
    };
    assert!(envelope.items.len() <= limits.max_items);
    if let Some(dsn) = envelope.header.dsn.as_deref() {
        let _ = parse_dsn(dsn);
    }
    for item in &envelope.items {
        let _ = item.type_label();
    }
    let Ok(events) = envelope.events() else {
        return;
    };
    for event in events {
        assert!(event.payload.is_object());
        if let Some(id) = &event.event_id {
            assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        let id = event.event_id.unwrap_or_else(|| "0".repeat(32));
        let _ = prepare_sentry_event(
            "org:fuzz".to_owned(),
            id,
            event.payload,
            Timestamp::from_millis(1_700_000_000_000),
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let (mode, body) = selector(data);
    let max = EnvelopeLimits::default().max_total_bytes;
    assert!(max <= MAX_ENVELOPE_BODY_BYTES);
    match mode % 8 {
        m @ 0..5 => {
            let encoding = ENCODINGS[usize::from(m)];
            // A small limit first: the limit is exact whatever the data.
            let small = usize::from(mode) * 16;
            match decode_body(Some(encoding), body, small) {
                Ok(out) => assert!(out.len() <= small),
                Err(DecodeError::TooLarge { limit }) => assert_eq!(limit, small),
                Err(_) => {}
            }
            match decode_body(Some(encoding), body, max) {
                Ok(decoded) => {
                    assert!(decoded.len() <= max);
                    ingest(&decoded);
                }
                Err(DecodeError::TooLarge { limit }) => assert_eq!(limit, max),
                Err(_) => {}
            }
        }
        m => {
            let (encoding, compressed) = compress(m, body);
            let decoded = decode_body(Some(encoding), &compressed, max).expect("our own compression decodes");
            assert_eq!(decoded, body, "{encoding} round trip");
            ingest(&decoded);
        }
    }
    // Unknown and stacked encodings are refused, never guessed.
    assert!(matches!(
        decode_body(Some("gzip, br"), body, max),
        Err(DecodeError::UnsupportedEncoding(_))
    ));
});
