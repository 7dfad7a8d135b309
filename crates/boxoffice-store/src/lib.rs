//! The boxoffice [`Store`](boxoffice_core::Store) on SQLite and PostgreSQL.
//!
//! One crate for both engines, because most of the program is the same: the concept
//! modules here (`catalog`, `holds`, `payments`, `webhooks`, `mail`, `error_store`, `jobs`,
//! `settings`) each implement their store trait once for [`SqlStore`], with SQL written
//! once against [`sql::Conn`]. The rules themselves are decided in `boxoffice-core` (pure
//! functions such as `holds::allocate` and `orders::on_payment_succeeded`); a store
//! method only locks and loads what the rule needs, calls it, and writes the plan it
//! returns, in the one transaction it owns. What truly differs between the engines lives
//! in [`postgres`] and [`sqlite`]: connecting and migrating, transactions, error mapping,
//! and the few statements one engine runs better its own way (the batched hold placement,
//! the sweeper, multi-row writes).
//!
//! Engine choice is by URL (`sqlite://…` or `postgres://…`) in [`SqlStore::connect`].

mod catalog;
mod error_store;
mod holds;
mod jobs;
mod mail;
mod payments;
mod postgres;
mod rows;
mod settings;
mod sql;
mod sqlite;
mod webhooks;

use boxoffice_core::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Sqlite, Transaction};

use crate::sql::Conn;

/// How often a use case is retried after a deadlock or serialization failure.
const TRANSIENT_RETRIES: usize = 5;

/// The store, on either engine. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct SqlStore {
    engine: Engine,
}

#[derive(Clone)]
enum Engine {
    Postgres(PgPool),
    Sqlite(sqlite::SqliteEngine),
}

/// A write transaction of either engine.
pub(crate) enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(sqlite::WriteTransaction),
}

impl Tx {
    pub(crate) fn conn(&mut self) -> &mut dyn Conn {
        match self {
            Tx::Postgres(tx) => &mut **tx,
            Tx::Sqlite(tx) => &mut **tx,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await.map_err(postgres::map_error),
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// A pooled connection of either engine, for reads and single statements.
pub(crate) enum Pooled {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Pooled {
    pub(crate) fn conn(&mut self) -> &mut dyn Conn {
        match self {
            Pooled::Postgres(conn) => &mut **conn,
            Pooled::Sqlite(conn) => &mut **conn,
        }
    }
}

impl SqlStore {
    /// Connects to `sqlite://PATH` (creating the file if missing) or `postgres://…`, and
    /// applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url).await
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Self::connect_postgres(url).await
        } else {
            // The URL itself is not repeated: it may carry a password.
            Err(StoreError::Other(
                "unsupported database URL scheme: use sqlite://PATH or postgres://…".into(),
            ))
        }
    }

    /// Connects to PostgreSQL and applies pending migrations. Several instances starting
    /// at once are safe: sqlx serializes migrations with an advisory lock.
    pub async fn connect_postgres(url: &str) -> Result<Self, StoreError> {
        let pool = postgres::connect(url).await?;
        postgres::migrate(&pool).await?;
        Ok(Self {
            engine: Engine::Postgres(pool),
        })
    }

    /// Opens (creating if missing) the SQLite database at a `sqlite://PATH` URL and
    /// applies pending migrations.
    pub async fn connect_sqlite(url: &str) -> Result<Self, StoreError> {
        let engine = sqlite::SqliteEngine::connect(url).await?;
        engine.migrate().await?;
        Ok(Self {
            engine: Engine::Sqlite(engine),
        })
    }

    /// Applies pending migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Postgres(pool) => postgres::migrate(pool).await,
            Engine::Sqlite(engine) => engine.migrate().await,
        }
    }

    /// Which engine this is: `"postgres"` or `"sqlite"`.
    pub fn engine_name(&self) -> &'static str {
        match &self.engine {
            Engine::Postgres(_) => "postgres",
            Engine::Sqlite(_) => "sqlite",
        }
    }

    /// Starts a write transaction.
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        match &self.engine {
            Engine::Postgres(pool) => Ok(Tx::Postgres(pool.begin().await.map_err(postgres::map_error)?)),
            Engine::Sqlite(engine) => Ok(Tx::Sqlite(engine.write().await?)),
        }
    }

    /// A connection from the pool, outside any transaction.
    pub(crate) async fn acquire(&self) -> Result<Pooled, StoreError> {
        match &self.engine {
            Engine::Postgres(pool) => Ok(Pooled::Postgres(pool.acquire().await.map_err(postgres::map_error)?)),
            Engine::Sqlite(engine) => Ok(Pooled::Sqlite(engine.pool.acquire().await.map_err(sqlite::map_error)?)),
        }
    }

    /// Whether the whole use case may be tried again after `err`.
    pub(crate) fn is_transient(&self, err: &StoreError) -> bool {
        match &self.engine {
            Engine::Postgres(_) => postgres::is_transient(err),
            // Writers are serialized by the write lock: no deadlocks to retry.
            Engine::Sqlite(_) => false,
        }
    }
}

/// Whether an error is a unique-constraint violation (either engine).
pub(crate) fn is_unique_violation(err: &StoreError) -> bool {
    database_error(err).is_some_and(|db| db.is_unique_violation())
}

/// Maps a foreign-key violation to `NotFound(what)`: the referenced row does not exist.
pub(crate) fn missing_parent(what: &'static str) -> impl FnOnce(StoreError) -> StoreError {
    move |err| {
        if database_error(&err).is_some_and(|db| db.is_foreign_key_violation()) {
            StoreError::NotFound(what)
        } else {
            err
        }
    }
}

fn database_error(err: &StoreError) -> Option<&dyn sqlx::error::DatabaseError> {
    let StoreError::Other(source) = err else { return None };
    source
        .downcast_ref::<sqlx::Error>()
        .and_then(|err| err.as_database_error())
}

/// Runs a use case in one write transaction, committed at the end; the whole of it is
/// retried after a deadlock or serialization failure (PostgreSQL), which is safe because
/// nothing of a failed attempt was committed. `|conn|` names the `&mut dyn Conn` the body
/// uses; `?` inside the body aborts the attempt.
macro_rules! in_transaction {
    ($store:expr, |$conn:ident| $body:expr) => {
        in_transaction!($store, retry_if = |_err| false, |$conn| $body)
    };
    ($store:expr, retry_if = |$err:ident| $retry:expr, |$conn:ident| $body:expr) => {{
        let store: &$crate::SqlStore = $store;
        let mut attempt = 0;
        loop {
            let result: Result<_, boxoffice_core::StoreError> = async {
                let mut tx = store.begin().await?;
                let value = {
                    let $conn: &mut dyn $crate::sql::Conn = tx.conn();
                    $body
                };
                tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err($err) if attempt < $crate::TRANSIENT_RETRIES && (store.is_transient(&$err) || $retry) => {
                    attempt += 1
                }
                other => break other,
            }
        }
    }};
}

/// Runs reads (or single self-contained statements) on a pooled connection.
macro_rules! with_connection {
    ($store:expr, |$conn:ident| $body:expr) => {{
        let mut pooled = $store.acquire().await?;
        let $conn: &mut dyn $crate::sql::Conn = pooled.conn();
        $body
    }};
}

pub(crate) use {in_transaction, with_connection};
