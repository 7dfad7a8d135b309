//! Idempotency keys (SPEC §5, after Stripe and the IETF Idempotency-Key draft).
//!
//! A key is what a client sends in the `Idempotency-Key` header: 1–255 visible ASCII
//! characters, bare or in the draft's quoted form (`"…"`, a structured-field string). Keys
//! are scoped per caller, so two API keys (or the anonymous buyers and an API key) may use
//! the same text without meeting.

use std::fmt;

use crate::auth::Caller;

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A parsed idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a header value is not an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdempotencyKey {
    /// Empty, or `""`.
    #[error("the Idempotency-Key header is empty")]
    Empty,
    /// Over [`MAX_KEY_LEN`] characters.
    #[error("the Idempotency-Key header is longer than {MAX_KEY_LEN} characters")]
    TooLong,
    /// A character outside visible ASCII, or a malformed quoted form.
    #[error("the Idempotency-Key header may contain only visible ASCII characters")]
    BadCharacter,
}

impl IdempotencyKey {
    /// Parses a header value. The quoted form is unwrapped, with the structured-field
    /// escapes `\"` and `\\`, so `"abc"` and `abc` are the same key.
    pub fn parse(raw: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        let key = match raw {
            [b'"', inner @ .., b'"'] if raw.len() >= 2 => unquote(inner)?,
            // Starting with a quote means the quoted form; an unterminated one is malformed.
            [b'"', ..] => return Err(InvalidIdempotencyKey::BadCharacter),
            _ => {
                if raw.iter().any(|b| !b.is_ascii_graphic()) {
                    return Err(InvalidIdempotencyKey::BadCharacter);
                }
                // Only ASCII passed the check above.
                String::from_utf8_lossy(raw).into_owned()
            }
        };
        if key.is_empty() {
            return Err(InvalidIdempotencyKey::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(InvalidIdempotencyKey::TooLong);
        }
        Ok(Self(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn unquote(inner: &[u8]) -> Result<String, InvalidIdempotencyKey> {
    let mut key = String::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        let c = match b {
            b'\\' => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => escaped,
                _ => return Err(InvalidIdempotencyKey::BadCharacter),
            },
            b'"' => return Err(InvalidIdempotencyKey::BadCharacter),
            b if b.is_ascii_graphic() => b,
            _ => return Err(InvalidIdempotencyKey::BadCharacter),
        };
        if key.len() == MAX_KEY_LEN {
            return Err(InvalidIdempotencyKey::TooLong);
        }
        key.push(char::from(c));
    }
    Ok(key)
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose keys a key belongs to: one scope per API key, one for the operator, one shared
/// by every anonymous caller (the public buyer endpoints).
pub fn scope_of(caller: Option<&Caller>) -> String {
    match caller {
        None => "anonymous".to_owned(),
        Some(Caller::Operator) => "operator".to_owned(),
        Some(Caller::Organization { api_key_id, .. }) => format!("api_key:{api_key_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ApiKeyId, OrganizationId};

    #[test]
    fn bare_and_quoted_forms_are_the_same_key() {
        let bare = IdempotencyKey::parse(b"order-42_retry.1").expect("valid");
        let quoted = IdempotencyKey::parse(b"\"order-42_retry.1\"").expect("valid");
        assert_eq!(bare, quoted);
        assert_eq!(
            IdempotencyKey::parse(br#""a\"b\\c""#).map(|k| k.0),
            Ok(r#"a"b\c"#.to_owned())
        );
        assert_eq!(
            IdempotencyKey::parse(b"\""),
            Err(InvalidIdempotencyKey::BadCharacter),
            "an unterminated quote"
        );
    }

    #[test]
    fn lengths_are_one_to_255() {
        assert_eq!(IdempotencyKey::parse(b""), Err(InvalidIdempotencyKey::Empty));
        assert_eq!(IdempotencyKey::parse(b"\"\""), Err(InvalidIdempotencyKey::Empty));
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        assert_eq!(IdempotencyKey::parse(&[b'k'; 256]), Err(InvalidIdempotencyKey::TooLong));
        assert_eq!(IdempotencyKey::parse(&[b'k'; 300]), Err(InvalidIdempotencyKey::TooLong));
        let mut quoted = vec![b'"'];
        quoted.extend([b'k'; 256]);
        quoted.push(b'"');
        assert_eq!(IdempotencyKey::parse(&quoted), Err(InvalidIdempotencyKey::TooLong));
    }

    #[test]
    fn only_visible_ascii_is_accepted() {
        for bad in [
            &b"has space"[..],
            b"tab\there",
            "caf\u{e9}".as_bytes(),
            b"nul\0",
            b"\"open",
            b"\"a\"b\"",
            b"\"bad\\x\"",
        ] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_separate_callers() {
        let key = Caller::Organization {
            organization_id: OrganizationId::generate(),
            api_key_id: ApiKeyId::generate(),
        };
        let scopes = [scope_of(None), scope_of(Some(&Caller::Operator)), scope_of(Some(&key))];
        assert_eq!(scopes.iter().collect::<std::collections::HashSet<_>>().len(), 3);
    }
}
