//! Addresses in free text: e-mail addresses (also `%40`-encoded), IPv6 and IPv4
//! addresses. Each scanner is bounded (an address has a longest form), so hostile text
//! costs linear time.

use std::net::Ipv6Addr;

use super::{EMAIL, IP, Rewrite, byte, glued, is_word};

/// The longest local part and domain of an e-mail address (RFC 5321); longer runs are cut,
/// which keeps the backward scan bounded.
const MAX_LOCAL_LEN: usize = 64;
const MAX_DOMAIN_LEN: usize = 255;

fn is_local_part_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') || b >= 0x80
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80
}

/// `local@domain.tld`, also with the `@` percent-encoded (`%40`) as in query strings.
/// Non-ASCII letters count as letters (internationalized addresses).
pub(super) fn scrub_emails(text: &str) -> Option<String> {
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
pub(super) fn scrub_ipv6(text: &str) -> Option<String> {
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
pub(super) fn scrub_ipv4(text: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::super::testing::{check, kept};

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
}
