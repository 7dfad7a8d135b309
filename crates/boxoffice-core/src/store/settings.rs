//! Installation-wide settings (the generated operator token's hash, the dashboard's session
//! key) and whether the database answers at all.

use async_trait::async_trait;

use crate::store::StoreError;

/// Installation-wide settings and the database's health.
#[async_trait]
pub trait SettingsStore: Send + Sync + 'static {
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Reads an installation-wide setting.
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Writes a setting unless it exists; returns whether it was written. Several
    /// instances starting at once agree on one value.
    async fn insert_setting_if_absent(&self, key: &str, value: &str) -> Result<bool, StoreError>;
}
