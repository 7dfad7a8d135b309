//! Settings, organizations with their error projects, and API keys.

use boxoffice_core::auth::StoredApiKey;
use boxoffice_core::error_store::reports::ErrorProject;
use boxoffice_core::ids::{ApiKeyId, OrganizationId};
use boxoffice_core::organizations::Organization;
use boxoffice_core::rows::{self, ERROR_PROJECT_COLUMNS};
use boxoffice_core::{StoreError, Timestamp};
use sqlx::{PgConnection, PgPool};

use crate::rows::Columns;
use crate::{map_error, missing_parent};

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

/// Inserts the organization and its error project (numbered by the database); runs inside
/// a transaction, so both commit or neither.
pub(crate) async fn create(
    conn: &mut PgConnection,
    organization: &Organization,
    error_public_key: &str,
) -> Result<ErrorProject, StoreError> {
    sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(organization.id.as_str())
        .bind(organization.name.as_str())
        .bind(organization.created_at.as_millis())
        .execute(&mut *conn)
        .await
        .map_err(map_error)?;
    let row = sqlx::query(&format!(
        "INSERT INTO error_projects (organization_id, public_key, created_at) VALUES ($1, $2, $3)
         RETURNING {ERROR_PROJECT_COLUMNS}"
    ))
    .bind(organization.id.as_str())
    .bind(error_public_key)
    .bind(organization.created_at.as_millis())
    .fetch_one(&mut *conn)
    .await
    .map_err(map_error)?;
    rows::error_project(&Columns(&row))
}

pub(crate) async fn get_error_project(pool: &PgPool, id: &OrganizationId) -> Result<ErrorProject, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {ERROR_PROJECT_COLUMNS} FROM error_projects WHERE organization_id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(pool)
    .await
    .map_err(map_error)?
    .ok_or(StoreError::NotFound("organization"))?;
    rows::error_project(&Columns(&row))
}

pub(crate) async fn find_error_project(pool: &PgPool, project_id: i64) -> Result<Option<ErrorProject>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {ERROR_PROJECT_COLUMNS} FROM error_projects WHERE project_id = $1"
    ))
    .bind(project_id)
    .fetch_optional(pool)
    .await
    .map_err(map_error)?;
    row.map(|row| rows::error_project(&Columns(&row))).transpose()
}

pub(crate) async fn get(pool: &PgPool, id: &OrganizationId) -> Result<Organization, StoreError> {
    let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(pool)
        .await
        .map_err(map_error)?
        .ok_or(StoreError::NotFound("organization"))?;
    rows::organization(&Columns(&row))
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
    rows::api_key(&Columns(&row)).map(Some)
}
