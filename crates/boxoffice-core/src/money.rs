//! Money: integer minor units and ISO 4217 currency codes.

use std::fmt;

/// A price or amount in minor units (cents). Never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Cents(i64);

/// The largest price we accept for one ticket: 10 million in major units. Anything above is
/// a typo, and keeping amounts small keeps every sum far from overflow.
pub const MAX_PRICE_CENTS: i64 = 1_000_000_000;

/// The amount is negative or absurdly large.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an amount must be between 0 and {MAX_PRICE_CENTS} minor units")]
pub struct InvalidAmount;

impl Cents {
    /// Parses a price received from outside.
    pub fn parse_price(raw: i64) -> Result<Self, InvalidAmount> {
        if (0..=MAX_PRICE_CENTS).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(InvalidAmount)
        }
    }

    /// Rebuilds an amount read back from our own database.
    pub const fn from_trusted(raw: i64) -> Self {
        Self(raw)
    }

    /// The amount in minor units.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// `self * quantity`, saturating (bounded prices and quantities never get near).
    pub fn times(self, quantity: u32) -> Self {
        Self(self.0.saturating_mul(i64::from(quantity)))
    }

    /// `self + other`, saturating.
    pub fn plus(self, other: Cents) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

/// An ISO 4217 currency code, upper case (`EUR`, `USD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

/// The text is not a three-letter currency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("currency must be a three-letter ISO 4217 code such as EUR or USD")]
pub struct InvalidCurrency;

impl Currency {
    /// Parses a code; lower case is accepted and normalized, since Stripe itself uses it.
    pub fn parse(raw: &str) -> Result<Self, InvalidCurrency> {
        let bytes = raw.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(InvalidCurrency);
        }
        let mut code = [0u8; 3];
        for (slot, b) in code.iter_mut().zip(bytes) {
            *slot = b.to_ascii_uppercase();
        }
        Ok(Self(code))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_three_letters_normalized_to_upper_case() {
        assert_eq!(Currency::parse("eur").map(|c| c.to_string()), Ok("EUR".into()));
        for bad in ["", "EU", "EURO", "E1R", "€UR"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prices_are_bounded() {
        assert!(Cents::parse_price(-1).is_err());
        assert!(Cents::parse_price(MAX_PRICE_CENTS + 1).is_err());
        assert_eq!(Cents::parse_price(0).map(Cents::get), Ok(0));
        assert_eq!(Cents::from_trusted(1250).times(3).get(), 3750);
    }
}
