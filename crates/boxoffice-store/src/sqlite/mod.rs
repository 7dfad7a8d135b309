//! SQLite: the embedded default engine, one file, no server.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, taking SQLite's single write lock
//! up front. sqlx's plain `begin()` is deferred: a transaction that reads and then writes
//! can fail with `SQLITE_BUSY_SNAPSHOT`, which no busy timeout retries. With the lock taken
//! first, writers queue on the busy timeout and never fail spuriously or deadlock; and
//! because writers are serialized, the row locks the shared SQL asks for
//! ([`Dialect::for_update`](crate::sql::Dialect::for_update)) are not needed here.
//!
//! Writers of this process also queue on an in-process FIFO gate before `BEGIN IMMEDIATE`.
//! SQLite allows one writer at a time anyway; waiting in SQLite's busy handler means
//! polling with sleeps of up to 100 ms, which under a burst gave p99 latencies above a
//! second and no fairness. The gate hands the lock over at once, in arrival order; the
//! busy timeout still covers other processes that open the same file. (The gate orders
//! this process's writers only; it decides nothing for another instance, and several
//! instances cannot share one SQLite file over a network anyway.)
//!
//! Durability: WAL with `synchronous=FULL`, so a committed transaction survives power loss.

pub(crate) mod holds;

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_core::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::sql::{Query, bind};

/// How long a writer waits for the write lock before giving up. Generous: under a burst,
/// writers queue here rather than fail.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The pool and this process's write gate.
#[derive(Clone)]
pub(crate) struct SqliteEngine {
    pub(crate) pool: SqlitePool,
    write_gate: Arc<Mutex<()>>,
}

/// A write transaction holding this process's write gate until it ends.
pub(crate) struct WriteTransaction {
    tx: Transaction<'static, Sqlite>,
    _gate: OwnedMutexGuard<()>,
}

impl WriteTransaction {
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(map_error)
    }
}

impl Deref for WriteTransaction {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

impl SqliteEngine {
    /// Opens (creating if missing) the database at a `sqlite://PATH` URL.
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| StoreError::Other(Box::new(err)))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(map_error)?;
        Ok(Self {
            pool,
            write_gate: Arc::new(Mutex::new(())),
        })
    }

    /// Applies pending migrations (idempotent).
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|err| StoreError::Other(Box::new(err)))
    }

    /// Starts a write transaction holding the write gate and SQLite's write lock (see
    /// the module docs).
    pub(crate) async fn write(&self) -> Result<WriteTransaction, StoreError> {
        let gate = self.write_gate.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_error)?;
        Ok(WriteTransaction { tx, _gate: gate })
    }
}

/// Maps sqlx errors onto the store's, keeping the cause.
pub(crate) fn map_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound("row"),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(err))
        }
        // SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_BUSY_SNAPSHOT (517): another process
        // holds the database past the busy timeout (a backup, a migration by hand). This
        // process's own writers queue at the write gate and never meet these.
        sqlx::Error::Database(ref db) if db.code().is_some_and(|code| matches!(code.as_ref(), "5" | "6" | "517")) => {
            StoreError::Unavailable(Box::new(err))
        }
        other => StoreError::Other(Box::new(other)),
    }
}

pub(crate) async fn execute(conn: &mut SqliteConnection, query: &Query) -> Result<u64, StoreError> {
    Ok(bind::<Sqlite>(query)
        .execute(conn)
        .await
        .map_err(map_error)?
        .rows_affected())
}

pub(crate) async fn fetch_all(conn: &mut SqliteConnection, query: &Query) -> Result<Vec<SqliteRow>, StoreError> {
    bind::<Sqlite>(query).fetch_all(conn).await.map_err(map_error)
}

pub(crate) async fn fetch_optional(
    conn: &mut SqliteConnection,
    query: &Query,
) -> Result<Option<SqliteRow>, StoreError> {
    bind::<Sqlite>(query).fetch_optional(conn).await.map_err(map_error)
}

/// A column, decoded by sqlx.
pub(crate) fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(map_error)
}
