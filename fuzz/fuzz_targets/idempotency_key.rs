//! The `Idempotency-Key` header (`boxoffice_core::idempotency::IdempotencyKey::parse`).
//!
//! Input: the raw header value. Checks: never panics; an accepted key is 1–255 visible ASCII
//! characters; the draft's quoted form of an accepted key parses to the same key; a bare
//! key not starting with a quote parses to itself.
#![no_main]

use boxoffice_core::idempotency::{IdempotencyKey, MAX_KEY_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = IdempotencyKey::parse(data) else {
        return;
    };
    let text = key.as_str();
    assert!((1..=MAX_KEY_LEN).contains(&text.len()), "length {}", text.len());
    assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
    let mut quoted = Vec::with_capacity(text.len() + 2);
    quoted.push(b'"');
    for b in text.bytes() {
        if b == b'"' || b == b'\\' {
            quoted.push(b'\\');
        }
        quoted.push(b);
    }
    quoted.push(b'"');
    assert_eq!(IdempotencyKey::parse(&quoted).as_ref(), Ok(&key));
    if !text.starts_with('"') {
        assert_eq!(IdempotencyKey::parse(text.as_bytes()).as_ref(), Ok(&key));
    }
});
