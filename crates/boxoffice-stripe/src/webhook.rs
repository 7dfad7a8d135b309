//! Stripe webhook signatures (SPEC §6), both ends: [`verify`] for the server's
//! `POST /webhooks/stripe`, [`sign`] for the test double's deliveries, so the two can never
//! drift apart.
//!
//! Stripe's scheme: the header `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]…`
//! carries HMAC-SHA256 over `"{t}.{raw body}"`, keyed with the whole endpoint secret string
//! (`whsec_…` prefix included — Stripe does not decode it). Several `v1` entries appear while
//! Stripe rolls a secret; several configured secrets cover our own rotation. Other schemes
//! (`v0`, the test-mode scheme) are ignored, never accepted.
//!
//! The header comes from the network and will be fuzzed: parsing works on borrowed slices,
//! allocates nothing, refuses oversized headers up front and never panics.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header Stripe puts the signature in.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";

/// How far (in seconds) a signature's timestamp may be from now. Stripe's default.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Longer headers are refused before parsing. A real one is ~150 bytes with one secret;
/// this leaves room for dozens of `v1` entries while bounding the work per request.
pub const MAX_HEADER_LEN: usize = 4096;

/// At most this many `v1` entries are compared; more is not a legitimate header, and the
/// bound keeps the HMAC work per request fixed whatever an attacker sends.
const MAX_V1_ENTRIES: usize = 32;

/// Why a webhook signature was refused. Every variant maps to the same 400
/// `invalid_signature` at the HTTP layer; the distinction is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("Stripe-Signature header is malformed")]
    Malformed,
    #[error("Stripe-Signature header has no timestamp")]
    MissingTimestamp,
    #[error("Stripe-Signature header has no v1 signature")]
    NoV1Signature,
    #[error("signature timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
    #[error("no signature matches any configured secret")]
    NoMatch,
    #[error("no webhook secret is configured")]
    NoSecrets,
}

/// Checks a delivery against every configured secret with the default 300 s tolerance.
///
/// `payload` must be the raw request body exactly as received: re-serialised JSON does not
/// match. The tolerance applies in both directions — see [`verify_with_tolerance`].
pub fn verify(payload: &[u8], header: &str, secrets: &[impl AsRef<str>], now_unix: i64) -> Result<(), SignatureError> {
    verify_with_tolerance(payload, header, secrets, now_unix, DEFAULT_TOLERANCE_SECS)
}

/// [`verify`] with an explicit tolerance in seconds.
///
/// Stripe's own libraries reject only timestamps older than the tolerance. We also reject
/// timestamps more than `tolerance` seconds in the future: a correct sender's clock is not
/// minutes ahead of ours, and a future-dated signature would otherwise stay replayable for
/// longer than the window this check exists to bound.
pub fn verify_with_tolerance(
    payload: &[u8],
    header: &str,
    secrets: &[impl AsRef<str>],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecrets);
    }
    let parsed = ParsedHeader::parse(header)?;
    // Saturating: a hostile `t` near i64::MIN/MAX must not overflow.
    if now_unix.saturating_sub(parsed.timestamp).saturating_abs() > tolerance_secs {
        return Err(SignatureError::TimestampOutOfTolerance);
    }
    for secret in secrets {
        let keyed = signed_payload_mac(payload, secret.as_ref(), parsed.timestamp_str);
        for candidate in parsed.v1_signatures() {
            // `verify_slice` compares in constant time.
            if keyed.clone().verify_slice(&candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::NoMatch)
}

/// The `Stripe-Signature` header value for `payload` signed with `secret` at `t`.
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    format!("t={t},v1={}", compute_signature(payload, secret, t))
}

/// The hex `v1` signature of `payload` at `t`.
pub fn compute_signature(payload: &[u8], secret: &str, t: i64) -> String {
    let t = t.to_string();
    hex::encode(signed_payload_mac(payload, secret, &t).finalize().into_bytes())
}

fn signed_payload_mac(payload: &[u8], secret: &str, timestamp: &str) -> HmacSha256 {
    // HMAC takes keys of any length; the error arm exists only for fixed-size MACs.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac_key(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

#[cold]
fn unreachable_hmac_key() -> ! {
    // `Hmac::new_from_slice` never fails (RFC 2104 hashes long keys, pads short ones).
    unreachable!("HMAC-SHA256 accepts keys of any length")
}

/// A parsed header, borrowing from the input.
struct ParsedHeader<'a> {
    header: &'a str,
    timestamp: i64,
    /// Kept as sent: the signed payload uses the timestamp's own digits.
    timestamp_str: &'a str,
}

impl<'a> ParsedHeader<'a> {
    fn parse(header: &'a str) -> Result<Self, SignatureError> {
        if header.len() > MAX_HEADER_LEN {
            return Err(SignatureError::Malformed);
        }
        let mut timestamp = None;
        let mut has_v1 = false;
        for item in header.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(SignatureError::Malformed);
            };
            match key.trim() {
                "t" => {
                    if timestamp.is_some() {
                        // Two timestamps: which one was signed is ambiguous.
                        return Err(SignatureError::Malformed);
                    }
                    let value = value.trim();
                    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(SignatureError::Malformed);
                    }
                    let parsed: i64 = value.parse().map_err(|_| SignatureError::Malformed)?;
                    timestamp = Some((parsed, value));
                }
                "v1" => has_v1 = true,
                _ => {}
            }
        }
        let Some((timestamp, timestamp_str)) = timestamp else {
            return Err(SignatureError::MissingTimestamp);
        };
        if !has_v1 {
            return Err(SignatureError::NoV1Signature);
        }
        Ok(Self {
            header,
            timestamp,
            timestamp_str,
        })
    }

    /// The decodable `v1` signatures, at most [`MAX_V1_ENTRIES`]. An entry that is not 64 hex
    /// digits cannot match any HMAC-SHA256 and is skipped rather than failing the header, as
    /// Stripe's libraries do.
    fn v1_signatures(&self) -> impl Iterator<Item = [u8; 32]> + 'a {
        self.header
            .split(',')
            .filter_map(|item| {
                let (key, value) = item.trim().split_once('=')?;
                (key.trim() == "v1").then_some(value.trim())
            })
            .take(MAX_V1_ENTRIES)
            .filter_map(|value| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(value, &mut out).ok()?;
                Some(out)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    const SECRET: &str = "whsec_abc";
    const T: i64 = 1_700_000_000;
    const EXPECTED: &str = "8e592cdd14d5abcfca2d98925d5b89177aa4331a92facc0e96493db4f54fa0a5";

    #[test]
    fn known_vector() {
        assert_eq!(compute_signature(PAYLOAD, SECRET, T), EXPECTED);
        assert_eq!(sign(PAYLOAD, SECRET, T), format!("t={T},v1={EXPECTED}"));
        assert_eq!(verify(PAYLOAD, &format!("t={T},v1={EXPECTED}"), &[SECRET], T), Ok(()));
    }

    #[test]
    fn tolerance_both_directions() {
        let header = sign(PAYLOAD, SECRET, T);
        assert_eq!(verify(PAYLOAD, &header, &[SECRET], T + 300), Ok(()));
        assert_eq!(verify(PAYLOAD, &header, &[SECRET], T - 300), Ok(()));
        assert_eq!(
            verify(PAYLOAD, &header, &[SECRET], T + 301),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify(PAYLOAD, &header, &[SECRET], T - 301),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify_with_tolerance(PAYLOAD, &header, &[SECRET], T + 1000, 2000),
            Ok(())
        );
    }

    #[test]
    fn wrong_secret_and_tampered_body() {
        let header = sign(PAYLOAD, SECRET, T);
        assert_eq!(
            verify(PAYLOAD, &header, &["whsec_other"], T),
            Err(SignatureError::NoMatch)
        );
        // The key is the whole string: the secret without its prefix is a different key.
        assert_eq!(verify(PAYLOAD, &header, &["abc"], T), Err(SignatureError::NoMatch));
        assert_eq!(
            verify(br#"{"id":"evt_2","object":"event"}"#, &header, &[SECRET], T),
            Err(SignatureError::NoMatch)
        );
        let no_secrets: [&str; 0] = [];
        assert_eq!(verify(PAYLOAD, &header, &no_secrets, T), Err(SignatureError::NoSecrets));
    }

    #[test]
    fn rotated_secret_is_accepted() {
        let header = sign(PAYLOAD, "whsec_new", T);
        assert_eq!(verify(PAYLOAD, &header, &["whsec_old", "whsec_new"], T), Ok(()));
        assert_eq!(verify(PAYLOAD, &header, &[String::from("whsec_new")], T), Ok(()));
    }

    #[test]
    fn any_of_several_v1_entries_may_match() {
        let good = compute_signature(PAYLOAD, SECRET, T);
        let other = compute_signature(PAYLOAD, "whsec_other", T);
        let header = format!("t={T},v1={other},v1=zz,v1={good}");
        assert_eq!(verify(PAYLOAD, &header, &[SECRET], T), Ok(()));
    }

    #[test]
    fn v0_and_unknown_schemes_are_ignored() {
        let good = compute_signature(PAYLOAD, SECRET, T);
        assert_eq!(
            verify(PAYLOAD, &format!("t={T},v0={good}"), &[SECRET], T),
            Err(SignatureError::NoV1Signature)
        );
        assert_eq!(
            verify(PAYLOAD, &format!("t={T},v0={good},v2=abc,v1={good}"), &[SECRET], T),
            Ok(())
        );
    }

    #[test]
    fn signature_over_other_timestamp_does_not_match() {
        let good = compute_signature(PAYLOAD, SECRET, T);
        assert_eq!(
            verify(PAYLOAD, &format!("t={},v1={good}", T + 1), &[SECRET], T),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused_without_panicking() {
        let good = compute_signature(PAYLOAD, SECRET, T);
        let cases: Vec<(String, SignatureError)> = vec![
            (String::new(), SignatureError::MissingTimestamp),
            (",,,".into(), SignatureError::MissingTimestamp),
            ("garbage".into(), SignatureError::Malformed),
            (format!("v1={good}"), SignatureError::MissingTimestamp),
            (format!("t={T}"), SignatureError::NoV1Signature),
            (format!("t=,v1={good}"), SignatureError::Malformed),
            (format!("t=-5,v1={good}"), SignatureError::Malformed),
            (format!("t=12a,v1={good}"), SignatureError::Malformed),
            (format!("t=99999999999999999999,v1={good}"), SignatureError::Malformed),
            (format!("t={T},t={T},v1={good}"), SignatureError::Malformed),
            (format!("t={T},v1="), SignatureError::NoMatch),
            (format!("t={T},v1=é€"), SignatureError::NoMatch),
            (format!("t={T},v1={}", &good[..63]), SignatureError::NoMatch),
            (format!("t={T},v1={good}00"), SignatureError::NoMatch),
            (
                format!("t={T},v1={good},{}", "x".repeat(MAX_HEADER_LEN)),
                SignatureError::Malformed,
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify(PAYLOAD, &header, &[SECRET], T),
                Err(expected),
                "header {header:?}"
            );
        }
        // Whitespace around items, as some proxies reformat headers.
        assert_eq!(verify(PAYLOAD, &format!(" t={T} , v1={good} "), &[SECRET], T), Ok(()));
        // A stale, huge or negative-far timestamp must not overflow.
        assert_eq!(
            verify(PAYLOAD, &format!("t=999999999999,v1={good}"), &[SECRET], i64::MIN),
            Err(SignatureError::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn only_a_bounded_number_of_v1_entries_is_tried() {
        let good = compute_signature(PAYLOAD, SECRET, T);
        let filler = "v1=00,".repeat(MAX_V1_ENTRIES);
        let header = format!("t={T},{filler}v1={good}");
        assert!(header.len() <= MAX_HEADER_LEN);
        assert_eq!(verify(PAYLOAD, &header, &[SECRET], T), Err(SignatureError::NoMatch));
    }
}
