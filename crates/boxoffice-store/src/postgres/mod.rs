//! PostgreSQL: for production, with any number of instances on one database.
//!
//! Correctness across instances rests on row locks and conditional updates, never on
//! process-local state: capacity is a conditional `UPDATE` of a counter row, the sweeper
//! and every job claim rows with `FOR UPDATE SKIP LOCKED`, and every transaction locks in
//! one order (holds, then orders, then ticket types by id) so instances cannot deadlock each
//! other. Should PostgreSQL still report a deadlock or serialization failure, the whole use
//! case is retried ([`is_transient`]), which is safe because each runs in one transaction.
//!
//! Durability: `synchronous_commit` is forced on for our sessions, whatever the server's
//! default, so a 2xx answer means the change is on disk.
//!
//! This module binds the shared [`Query`] to sqlx's PostgreSQL types and keeps the SQL that
//! only PostgreSQL can run (array parameters, `UNNEST`, data-modifying CTEs) in its
//! submodules.

pub(crate) mod holds;

use std::str::FromStr;
use std::time::Duration;

use boxoffice_core::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Postgres, Row};

use crate::sql::{Query, bind};

/// Opens a pool on a `postgres://` URL.
pub(crate) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|err| StoreError::Other(Box::new(err)))?
        .application_name("boxoffice")
        .options([("synchronous_commit", "on")]);
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(map_error)
}

/// Applies pending migrations (idempotent). Several instances starting at once are safe:
/// sqlx serializes migrations with an advisory lock.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::migrate!("./migrations/postgres")
        .run(pool)
        .await
        .map_err(|err| StoreError::Other(Box::new(err)))
}

/// Whether an error means "try the whole transaction again": a deadlock or a
/// serialization failure.
pub(crate) fn is_transient(err: &StoreError) -> bool {
    database_code(err).is_some_and(|code| code == "40P01" || code == "40001")
}

fn database_code(err: &StoreError) -> Option<String> {
    let StoreError::Other(source) = err else { return None };
    source
        .downcast_ref::<sqlx::Error>()
        .and_then(|err| err.as_database_error())
        .and_then(|db| db.code())
        .map(|code| code.into_owned())
}

/// Maps sqlx errors onto the store's, keeping the cause.
pub(crate) fn map_error(err: sqlx::Error) -> StoreError {
    let unavailable = match &err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        // The server refuses this process's connections, for now: class 08 (connection
        // exceptions), 57P0x (shutting down, restarting, not accepting yet), 53300 (too
        // many connections), 3D000 (the database is gone, e.g. being restored), class 28
        // (credentials being rotated), and 55000, which a new connection gets while the
        // database does not allow connections (`ALTER DATABASE … ALLOW_CONNECTIONS false`,
        // maintenance). boxoffice's own statements never raise 55000.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("28")
                || matches!(code.as_ref(), "53300" | "3D000" | "55000")
        }),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(err))
    } else {
        StoreError::Other(Box::new(err))
    }
}

pub(crate) async fn execute(conn: &mut PgConnection, query: &Query) -> Result<u64, StoreError> {
    Ok(bind::<Postgres>(query)
        .execute(conn)
        .await
        .map_err(map_error)?
        .rows_affected())
}

pub(crate) async fn fetch_all(conn: &mut PgConnection, query: &Query) -> Result<Vec<PgRow>, StoreError> {
    bind::<Postgres>(query).fetch_all(conn).await.map_err(map_error)
}

pub(crate) async fn fetch_optional(conn: &mut PgConnection, query: &Query) -> Result<Option<PgRow>, StoreError> {
    bind::<Postgres>(query).fetch_optional(conn).await.map_err(map_error)
}

/// A column that sqlx decodes as it is.
pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(map_error)
}

/// An integer column of any width: counts are `BIGINT`, literals `INTEGER`.
pub(crate) fn integer(row: &PgRow, column: &str) -> Result<i64, StoreError> {
    match row.try_get::<i64, _>(column) {
        Err(sqlx::Error::ColumnDecode { .. }) => row.try_get::<i32, _>(column).map(i64::from).map_err(map_error),
        other => other.map_err(map_error),
    }
}

/// A nullable integer column of any width.
pub(crate) fn optional_integer(row: &PgRow, column: &str) -> Result<Option<i64>, StoreError> {
    match row.try_get::<Option<i64>, _>(column) {
        Err(sqlx::Error::ColumnDecode { .. }) => row
            .try_get::<Option<i32>, _>(column)
            .map(|value| value.map(i64::from))
            .map_err(map_error),
        other => other.map_err(map_error),
    }
}
