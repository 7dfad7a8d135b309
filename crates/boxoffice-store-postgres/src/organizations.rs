//! Settings, organizations and API keys.

use boxoffice_core::auth::{StoredApiKey, TokenHash};
use boxoffice_core::ids::{ApiKeyId, OrganizationId};
use boxoffice_core::organizations::{Name, Organization};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{PgPool, Row};

use crate::{corrupt, map_error, missing_parent};

pub(crate) async fn get_setting(pool: &PgPool, key: &str) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(map_error)
}

pub(crate) async fn insert_setting_if_absent(pool: &PgPool, key: &str, value: &str) -> Result<bool, StoreError> {
    let result = sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(pool)
        .await
        .map_err(map_error)?;
    Ok(result.rows_affected() == 1)
}

pub(crate) async fn create(pool: &PgPool, organization: &Organization) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(organization.id.as_str())
        .bind(organization.name.as_str())
        .bind(organization.created_at.as_millis())
        .execute(pool)
        .await
        .map_err(map_error)?;
    Ok(())
}

pub(crate) async fn get(pool: &PgPool, id: &OrganizationId) -> Result<Organization, StoreError> {
    let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(pool)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("organization"))?;
    Ok(Organization {
        id: OrganizationId::from_trusted(row.try_get("id").map_err(map_error)?),
        name: Name::from_trusted(row.try_get("name").map_err(map_error)?),
        created_at: Timestamp::from_millis(row.try_get("created_at").map_err(map_error)?),
    })
}

pub(crate) async fn count(pool: &PgPool) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
        .fetch_one(pool)
        .await
        .map_err(map_error)
}

pub(crate) async fn create_api_key(pool: &PgPool, key: &StoredApiKey, created_at: Timestamp) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO api_keys (id, organization_id, secret_sha256, created_at) VALUES ($1, $2, $3, $4)")
        .bind(key.id.as_str())
        .bind(key.organization_id.as_str())
        .bind(key.secret_hash.to_hex())
        .bind(created_at.as_millis())
        .execute(pool)
        .await
        .map_err(missing_parent("organization"))?;
    Ok(())
}

pub(crate) async fn find_api_key(pool: &PgPool, id: &ApiKeyId) -> Result<Option<StoredApiKey>, StoreError> {
    let Some(row) = sqlx::query("SELECT id, organization_id, secret_sha256 FROM api_keys WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(pool)
        .await
        .map_err(map_error)?
    else {
        return Ok(None);
    };
    let hash: String = row.try_get("secret_sha256").map_err(map_error)?;
    Ok(Some(StoredApiKey {
        id: ApiKeyId::from_trusted(row.try_get("id").map_err(map_error)?),
        organization_id: OrganizationId::from_trusted(row.try_get("organization_id").map_err(map_error)?),
        secret_hash: TokenHash::from_hex(&hash).ok_or_else(|| corrupt("API key hash"))?,
    }))
}
