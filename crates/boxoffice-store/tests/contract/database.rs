//! A fresh, empty database per test on either engine, opened as a [`SqlStore`], and
//! `both_engines!`, which runs one test body on each: the contract holds for SQLite and
//! PostgreSQL alike or it does not hold.
//!
//! PostgreSQL tests use `BOXOFFICE_TEST_POSTGRES_URL` (set by `scripts/test.sh`, which
//! finds or starts a server), falling back to the local server on 127.0.0.1:5432. They
//! fail loudly when no server is reachable; they never skip. Their databases are named
//! `boxoffice_test_…` and left for `scripts/test.sh` to drop, as the server's suites do.

use std::sync::Arc;

use boxoffice_core::Store;
use boxoffice_core::ids::random_hex;
use boxoffice_store::SqlStore;
use sqlx::Connection;

/// The two storage engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh, empty database: a file in a temporary directory removed with it (SQLite), or a
/// database of its own on the test server (PostgreSQL).
pub struct TestDatabase {
    engine: Engine,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

fn postgres_admin_url() -> String {
    std::env::var("BOXOFFICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl TestDatabase {
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("boxoffice.db").display());
                Self {
                    engine,
                    url,
                    _dir: Some(dir),
                }
            }
            Engine::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|err| {
                    panic!(
                        "PostgreSQL tests need a server: run scripts/test.sh, or set BOXOFFICE_TEST_POSTGRES_URL \
                         (tried {admin}): {err}"
                    )
                });
                let name = format!("boxoffice_test_{}", random_hex());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                Self {
                    engine,
                    url: format!("{base}/{name}"),
                    _dir: None,
                }
            }
        }
    }

    /// The store on this database, migrated, behind the trait the contract is about.
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = match self.engine {
            Engine::Sqlite => SqlStore::connect_sqlite(&self.url).await,
            Engine::Postgres => SqlStore::connect_postgres(&self.url).await,
        };
        Arc::new(store.unwrap())
    }
}

/// Declares one async test per engine: `both_engines!(name, |engine| async { … })`
/// expands to `name::sqlite` and `name::postgres`.
macro_rules! both_engines {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                ($body)($crate::database::Engine::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                ($body)($crate::database::Engine::Postgres).await
            }
        }
    };
}
