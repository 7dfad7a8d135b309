//! Installation-wide settings and the database's health.

use async_trait::async_trait;
use boxoffice_core::StoreError;
use boxoffice_core::store::SettingsStore;

use crate::rows::StoredRow;
use crate::sql::query;
use crate::{SqlStore, with_connection};

#[async_trait]
impl SettingsStore for SqlStore {
    #[tracing::instrument(name = "store.ping", skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        with_connection!(self, |conn| query("SELECT 1 AS one").fetch_all(conn).await?);
        Ok(())
    }

    #[tracing::instrument(name = "store.get_setting", skip(self))]
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = with_connection!(self, |conn| query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(conn)
            .await?);
        row.map(|row| row.text("value")).transpose()
    }

    #[tracing::instrument(name = "store.insert_setting_if_absent", skip(self, value))]
    async fn insert_setting_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let inserted = with_connection!(self, |conn| query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
        )
        .bind(key)
        .bind(value)
        .execute(conn)
        .await?);
        Ok(inserted == 1)
    }
}
