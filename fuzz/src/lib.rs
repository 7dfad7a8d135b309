//! Helpers shared by the fuzz targets.
//!
//! Inputs are plain bytes in a readable layout (documented per target) rather than
//! `arbitrary` structures, so the seed corpus can be real captured headers, events,
//! envelopes and request bodies, and a crash file can be read with `cat`.

/// Splits `data` at its first `\n`: (first line, rest). No newline: (all, empty).
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The first byte as a selector and the rest. Empty input: (0, empty).
pub fn selector(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (first, rest),
        None => (0, &[]),
    }
}
