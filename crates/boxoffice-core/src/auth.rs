//! Bearer credentials: the operator token and organization API keys.
//!
//! Both are long random secrets, shown once and stored only as SHA-256 hashes. A fast hash
//! is right here (unlike for passwords): the secrets carry 256 random bits, so there is
//! nothing to brute-force. Hashes are compared in constant time.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::{ApiKeyId, OrganizationId};

/// A secret credential in clear text. Its `Debug` never shows the value, so it cannot leak
/// into logs by accident, and `==` compares in constant time (only the length may show).
#[derive(Clone)]
pub struct SecretToken(String);

impl PartialEq for SecretToken {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for SecretToken {}

impl SecretToken {
    /// Wraps a secret received from outside (a flag, a header).
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The clear text; call only to show it once or to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash under which this secret is stored.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(***)")
    }
}

fn random_secret_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The SHA-256 of a secret, as stored. `==` compares in constant time, like
/// [`TokenHash::matches`].
#[derive(Clone)]
pub struct TokenHash([u8; 32]);

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for TokenHash {}

impl TokenHash {
    /// Parses the stored hex form.
    pub fn from_hex(raw: &str) -> Option<Self> {
        let bytes = hex::decode(raw).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The hex form to store.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `candidate` hashes to this, compared in constant time.
    pub fn matches(&self, candidate: &SecretToken) -> bool {
        bool::from(self.0.ct_eq(&candidate.hash().0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A fresh operator token.
pub fn generate_operator_token() -> SecretToken {
    generate_secret("bo_admin_")
}

/// A fresh 256-bit secret after `prefix` (`whsec_`, `sk_test_`, …).
pub fn generate_secret(prefix: &str) -> SecretToken {
    SecretToken(format!("{prefix}{}", random_secret_hex()))
}

/// A freshly minted organization API key: its id and the full key to show once.
#[derive(Debug, Clone)]
pub struct MintedApiKey {
    /// The public id, stored in clear.
    pub id: ApiKeyId,
    /// The full key, `<id>_<secret>`; only its secret part's hash is stored.
    pub key: SecretToken,
    /// The hash of the secret part.
    pub secret_hash: TokenHash,
}

/// Mints a new API key.
pub fn mint_api_key() -> MintedApiKey {
    let id = ApiKeyId::generate();
    let secret = SecretToken(random_secret_hex());
    let secret_hash = secret.hash();
    let key = SecretToken(format!("{id}_{}", secret.expose()));
    MintedApiKey { id, key, secret_hash }
}

/// Splits a presented API key into its id and secret; `None` when it is not one.
pub fn split_api_key(presented: &SecretToken) -> Option<(ApiKeyId, SecretToken)> {
    let raw = presented.expose();
    let id_len = ApiKeyId::PREFIX.len() + 1 + 32;
    let id = ApiKeyId::parse(raw.get(..id_len)?).ok()?;
    let secret = raw.get(id_len..)?.strip_prefix('_')?;
    if secret.len() != 64 {
        return None;
    }
    Some((id, SecretToken(secret.to_owned())))
}

/// A stored API key, as the store returns it for authentication.
#[derive(Debug, Clone)]
pub struct StoredApiKey {
    /// Its id.
    pub id: ApiKeyId,
    /// The organization it acts for.
    pub organization_id: OrganizationId,
    /// The hash of its secret part.
    pub secret_hash: TokenHash,
}

/// Who is calling, once the bearer token has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator: may do everything.
    Operator,
    /// An organization API key: sees and changes only its own organization.
    Organization {
        /// The organization.
        organization_id: OrganizationId,
        /// The key used; idempotency keys are scoped per API key.
        api_key_id: ApiKeyId,
    },
}

impl Caller {
    /// Whether this caller may see resources of `organization`.
    pub fn can_access(&self, organization: &OrganizationId) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Organization { organization_id, .. } => organization_id == organization,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_split_back_and_match_their_hash() {
        let minted = mint_api_key();
        let (id, secret) = split_api_key(&minted.key).expect("a minted key splits");
        assert_eq!(id, minted.id);
        assert!(minted.secret_hash.matches(&secret));
        assert!(!minted.secret_hash.matches(&SecretToken::new("x")));
    }

    #[test]
    fn malformed_keys_do_not_split() {
        for bad in ["", "key_", "bo_admin_abc", "key_0123456789abcdef0123456789abcdef_short"] {
            assert!(split_api_key(&SecretToken::new(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn equality_of_secrets_and_hashes_is_by_value() {
        let token = generate_operator_token();
        assert_eq!(token, SecretToken::new(token.expose()));
        assert_ne!(token, generate_operator_token());
        assert_ne!(SecretToken::new("abc"), SecretToken::new("abcd"));
        assert_eq!(token.hash(), SecretToken::new(token.expose()).hash());
        assert_ne!(token.hash(), SecretToken::new("x").hash());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let token = generate_operator_token();
        assert!(!format!("{token:?}").contains(token.expose()));
        assert!(TokenHash::from_hex(&token.hash().to_hex()).is_some_and(|h| h.matches(&token)));
    }
}
