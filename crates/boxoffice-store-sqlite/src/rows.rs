//! Column access for the shared row mappings of `boxoffice_core::rows`.

use boxoffice_core::StoreError;
use boxoffice_core::rows::StoredRow;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::map_error;

/// A row of this engine, readable by the shared mappings.
pub(crate) struct Columns<'a>(pub &'a SqliteRow);

impl StoredRow for Columns<'_> {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.0.try_get(column).map_err(map_error)
    }

    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.0.try_get(column).map_err(map_error)
    }

    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        self.0.try_get(column).map_err(map_error)
    }

    fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.0.try_get(column).map_err(map_error)
    }

    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        self.0.try_get(column).map_err(map_error)
    }
}
