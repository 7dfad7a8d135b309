//! `Stripe-Signature` parsing and verification (`boxoffice_stripe::webhook`), as
//! `POST /webhooks/stripe` runs it on every delivery.
//!
//! Input: the header value, `\n`, the raw body. Checks: never panics, whatever the header,
//! body, clock or tolerance; a header signed by `sign` always verifies (also with the signed
//! secret among others, with whitespace and extra unknown schemes around it); a header never
//! verifies against a secret that did not sign it.
#![no_main]

use boxoffice_fuzz::split_line;
use boxoffice_stripe::webhook::{self, SignatureError};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_fuzz_secret";
const OTHER: &str = "whsec_other_secret";
const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let (header, payload) = split_line(data);
    let header = String::from_utf8_lossy(header);

    // Arbitrary headers against several clocks, secret lists and tolerances.
    let timestamp = header
        .split(',')
        .filter_map(|item| item.trim().strip_prefix("t="))
        .find_map(|t| t.trim().parse::<i64>().ok());
    let nows = [NOW, 0, -1, i64::MIN, i64::MAX, timestamp.unwrap_or(NOW)];
    let no_secrets: [&str; 0] = [];
    for now in nows {
        let _ = webhook::verify(payload, &header, &[SECRET, OTHER], now);
        let _ = webhook::verify_with_tolerance(payload, &header, &[SECRET], now, i64::MAX);
        let _ = webhook::verify_with_tolerance(payload, &header, &[SECRET], now, i64::MIN);
        assert_eq!(
            webhook::verify(payload, &header, &no_secrets, now),
            Err(SignatureError::NoSecrets)
        );
    }

    // The signing side, with the input's own timestamp when it has one.
    let t = timestamp.unwrap_or(NOW).clamp(0, 999_999_999_999);
    let signed = webhook::sign(payload, SECRET, t);
    assert_eq!(webhook::verify(payload, &signed, &[OTHER, SECRET], t), Ok(()));
    assert_eq!(
        webhook::verify(payload, &signed, &[OTHER], t),
        Err(SignatureError::NoMatch)
    );
    let decorated = format!(" v0=00 , {signed} , v1=zz ");
    assert_eq!(webhook::verify(payload, &decorated, &[SECRET], t), Ok(()));
    // The fuzzed header's own `v1` entries, re-keyed under a fresh timestamp, never match a
    // secret they were not computed with (a forged header only passes by breaking HMAC).
    let good = webhook::compute_signature(payload, SECRET, t);
    if let Some(v1) = header
        .split(',')
        .filter_map(|item| item.trim().strip_prefix("v1="))
        .find(|v| !v.trim().eq_ignore_ascii_case(&good))
    {
        let forged = format!("t={t},v1={v1}");
        assert_ne!(webhook::verify(payload, &forged, &[SECRET], t), Ok(()));
    }
});
