//! How the buyer's pages (and the buyer's e-mail) show amounts, instants and countdowns.

use boxoffice_core::Timestamp;
use boxoffice_core::money::{Cents, Currency};

/// Digits after the decimal point of a currency's minor unit (ISO 4217, as Stripe uses).
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "MGA" | "PYG" | "RWF" | "UGX" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount for people: `€25.00`, `$9.50`, `1,000 JPY`-style (`1000 JPY`).
pub(crate) fn money(amount: Cents, currency: Currency) -> String {
    let code = currency.as_str();
    let digits = minor_digits(code);
    let cents = amount.get();
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let number = if digits == 0 {
        cents.to_string()
    } else {
        let scale = 10u64.pow(digits);
        format!("{}.{:0width$}", cents / scale, cents % scale, width = digits as usize)
    };
    match code {
        "EUR" => format!("{sign}€{number}"),
        "USD" => format!("{sign}${number}"),
        "GBP" => format!("{sign}£{number}"),
        _ => format!("{sign}{number} {code}"),
    }
}

/// An instant for people, in UTC: `Sat 1 June 2030, 19:30 UTC`.
pub(crate) fn display_time(at: Timestamp) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short] [day padding:none] [month repr:long] [year], [hour]:[minute] UTC"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.as_millis()) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_else(|| at.to_rfc3339())
}

/// A message from the use cases as a sentence.
pub(super) fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `m:ss` for a countdown.
pub(super) fn minutes_seconds(seconds: i64) -> String {
    let seconds = seconds.max(0);
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_uses_the_currency_minor_unit() {
        let eur = Currency::parse("EUR").expect("valid");
        let jpy = Currency::parse("JPY").expect("valid");
        let chf = Currency::parse("CHF").expect("valid");
        assert_eq!(money(Cents::from_trusted(2_505), eur), "€25.05");
        assert_eq!(money(Cents::from_trusted(1_000), jpy), "1000 JPY");
        assert_eq!(money(Cents::from_trusted(7), chf), "0.07 CHF");
    }

    #[test]
    fn countdowns_read_minutes_and_seconds() {
        assert_eq!(minutes_seconds(0), "0:00");
        assert_eq!(minutes_seconds(65), "1:05");
        assert_eq!(minutes_seconds(900), "15:00");
        assert_eq!(minutes_seconds(-3), "0:00");
    }
}
