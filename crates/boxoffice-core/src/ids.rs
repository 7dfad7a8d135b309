//! Prefixed, opaque identifiers.
//!
//! Every id is `<prefix>_<32 hex digits>` built from 128 random bits, so ids of holds and
//! orders are unguessable (the public endpoints trust knowledge of them) and an id of one
//! kind can never be mistaken for another. Parsing checks the prefix and the shape; an id
//! that does not parse cannot exist, which lets handlers answer 404 without a query.

use std::fmt;

use rand::RngCore;

/// The string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct InvalidId {
    /// Which kind of id was expected, for the error message.
    pub kind: &'static str,
}

const RANDOM_HEX_LEN: usize = 32;

/// 128 random bits as 32 lowercase hex digits: the random part of every id, ticket code
/// and stored error event id.
pub fn random_hex() -> String {
    let mut bytes = [0u8; RANDOM_HEX_LEN / 2];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// `N` random bytes from the thread's CSPRNG (keys, nonces).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id with 128 random bits.
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, random_hex()))
            }

            /// Parses an id received from outside; only well-formed ids of this kind pass.
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                let valid = raw
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(|hex| {
                        hex.len() == RANDOM_HEX_LEN
                            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    });
                if valid {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(InvalidId { kind: $kind })
                }
            }

            /// Rebuilds an id read back from our own database, where it was written parsed.
            pub fn from_trusted(raw: String) -> Self {
                Self(raw)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

define_id!(
    /// An organization: the tenant that owns events and API keys.
    OrganizationId, "org", "organization"
);
define_id!(
    /// An organization API key (the public half; the secret is never stored).
    ApiKeyId, "key", "API key"
);
define_id!(
    /// An event (a show, a match, a conference day).
    EventId, "ev", "event"
);
define_id!(
    /// A ticket type of an event, with its own price and capacity.
    TicketTypeId, "tt", "ticket type"
);
define_id!(
    /// A hold (reservation) of tickets. Unguessable: it is the buyer's only credential.
    HoldId, "hold", "reservation"
);
define_id!(
    /// An order. Unguessable: the buyer reads it with nothing but its id.
    OrderId, "ord", "order"
);
define_id!(
    /// A group of occurrences of one error.
    ErrorGroupId, "grp", "error group"
);
define_id!(
    /// A recorded run of a background job.
    JobRunId, "run", "job run"
);
define_id!(
    /// A buyer e-mail in the outbox.
    EmailId, "eml", "email"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_are_distinct() {
        let a = HoldId::generate();
        let b = HoldId::generate();
        assert_ne!(a, b);
        assert_eq!(HoldId::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(a.as_str().len(), "hold_".len() + 32);
    }

    #[test]
    fn ids_of_another_kind_or_shape_are_rejected() {
        let event = EventId::generate();
        assert!(HoldId::parse(event.as_str()).is_err());
        for bad in [
            "",
            "hold_",
            "hold_XYZ",
            "hold_0123",
            "hold-0123456789abcdef0123456789abcdef",
        ] {
            assert!(HoldId::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(HoldId::parse("hold_0123456789ABCDEF0123456789abcdef").is_err());
        assert!(HoldId::parse("hold_0123456789abcdef0123456789abcdef").is_ok());
    }
}
