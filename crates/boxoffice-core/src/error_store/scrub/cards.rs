//! Payment card numbers: in free text (bare or grouped by spaces or dashes) and as JSON
//! integers, recognized by length, Luhn and a plausible start.

use super::{CARD, Rewrite, byte, glued};

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

/// Card numbers: runs of digit groups joined by single spaces or dashes. Dashes bind (a
/// dashed number such as a digits-only UUID is taken whole or not at all); spaces do not (a
/// card may be followed by an expiry year in prose), so the longest plausible window of
/// whole space-separated groups is taken.
pub(super) fn scrub_cards(text: &str) -> Option<String> {
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
    use super::super::testing::{check, kept};
    use super::*;

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
}
