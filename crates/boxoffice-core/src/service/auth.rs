//! Who is calling: the operator token, API keys of organizations, and the key that signs
//! the dashboard's sessions. Tokens and keys are secrets: only their hashes are stored.

use super::{BoxOffice, Error, require_operator};
use crate::auth::{self, Caller, MintedApiKey, SecretToken, StoredApiKey, TokenHash};
use crate::ids::OrganizationId;

/// The setting under which the operator token's hash is kept.
const OPERATOR_TOKEN_SETTING: &str = "operator_token_sha256";

/// The setting under which the dashboard's session key is kept (hex).
const SESSION_KEY_SETTING: &str = "admin_session_key";

impl BoxOffice {
    /// Makes sure an operator token exists. With `configured`, that token is the one;
    /// otherwise a token is generated and its hash stored at first start, and returned
    /// (to print once); later starts return `None`. Returns the hash to check against.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn ensure_operator_token(
        &self,
        configured: Option<&SecretToken>,
    ) -> Result<(TokenHash, Option<SecretToken>), Error> {
        if let Some(token) = configured {
            return Ok((token.hash(), None));
        }
        if let Some(stored) = self.settings_store().get_setting(OPERATOR_TOKEN_SETTING).await? {
            return TokenHash::from_hex(&stored)
                .map(|hash| (hash, None))
                .ok_or_else(|| Error::Invalid("the stored operator token hash is corrupt".into()));
        }
        let token = auth::generate_operator_token();
        let hash = token.hash();
        if self
            .store
            .insert_setting_if_absent(OPERATOR_TOKEN_SETTING, &hash.to_hex())
            .await?
        {
            return Ok((hash, Some(token)));
        }
        // Another instance won the race to generate it; use theirs.
        let stored = self.settings_store().get_setting(OPERATOR_TOKEN_SETTING).await?;
        stored
            .as_deref()
            .and_then(TokenHash::from_hex)
            .map(|hash| (hash, None))
            .ok_or_else(|| Error::Invalid("the stored operator token hash is corrupt".into()))
    }

    /// The key that signs the operator's dashboard sessions and their CSRF tokens: 32
    /// random bytes generated at first start and shared by every instance through the
    /// database (a session made on one instance is valid on all).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn session_key(&self) -> Result<[u8; 32], Error> {
        let parse = |stored: &str| -> Option<[u8; 32]> { hex::decode(stored).ok()?.try_into().ok() };
        if let Some(stored) = self.settings_store().get_setting(SESSION_KEY_SETTING).await? {
            return parse(&stored).ok_or_else(|| Error::Invalid("the stored session key is corrupt".into()));
        }
        let fresh = hex::encode(crate::ids::random_bytes::<32>());
        self.settings_store()
            .insert_setting_if_absent(SESSION_KEY_SETTING, &fresh)
            .await?;
        // Whoever won the race to store it, the stored key is the one.
        let stored = self
            .settings_store()
            .get_setting(SESSION_KEY_SETTING)
            .await?
            .unwrap_or(fresh);
        parse(&stored).ok_or_else(|| Error::Invalid("the stored session key is corrupt".into()))
    }

    /// Identifies the caller of a bearer token; `None` for an unknown or malformed token.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate(
        &self,
        operator_hash: &TokenHash,
        presented: &SecretToken,
    ) -> Result<Option<Caller>, Error> {
        if let Some((key_id, secret)) = auth::split_api_key(presented) {
            let Some(stored) = self.catalog_store().find_api_key(&key_id).await? else {
                return Ok(None);
            };
            return Ok(stored.secret_hash.matches(&secret).then_some(Caller::Organization {
                organization_id: stored.organization_id,
                api_key_id: stored.id,
            }));
        }
        Ok(operator_hash.matches(presented).then_some(Caller::Operator))
    }

    /// Mints an API key for an organization (operator only); the key is shown once.
    #[tracing::instrument(level = "debug", skip_all, fields(organization_id = %organization))]
    pub async fn create_api_key(&self, caller: &Caller, organization: &OrganizationId) -> Result<MintedApiKey, Error> {
        require_operator(caller)?;
        let minted = auth::mint_api_key();
        let stored = StoredApiKey {
            id: minted.id.clone(),
            organization_id: organization.clone(),
            secret_hash: minted.secret_hash.clone(),
        };
        self.catalog_store().create_api_key(&stored, self.now()).await?;
        Ok(minted)
    }
}
