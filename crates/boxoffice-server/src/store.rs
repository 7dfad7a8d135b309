//! Picks the storage engine from the database URL: the one place that knows which runs.

use std::sync::Arc;

use boxoffice_core::{Store, StoreError};
use boxoffice_store::SqlStore;

/// Opens the store named by `url` and applies pending migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqlStore::connect_sqlite(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(SqlStore::connect_postgres(url).await?))
    } else {
        Err(StoreError::Other(
            format!(
                "unsupported database URL scheme in {:?}: use sqlite://PATH or postgres://…",
                redact(url)
            )
            .into(),
        ))
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://bo:s3cret@db:5432/bo"),
            "postgres://bo:***@db:5432/bo"
        );
        assert_eq!(redact("postgres://bo@db/bo"), "postgres://bo@db/bo");
        assert_eq!(redact("sqlite://boxoffice.db"), "sqlite://boxoffice.db");
    }
}
