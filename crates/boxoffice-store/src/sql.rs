//! The one way the shared store code talks to either engine.
//!
//! Most of boxoffice's SQL is the same on PostgreSQL and SQLite: both take `$1`-style
//! placeholders (sqlx binds SQLite's `$NNN` by number), `RETURNING`, `ON CONFLICT` and
//! `CAST(… AS …)`. What differs is a handful of clauses (row locks, `SKIP LOCKED`) and the
//! Rust types sqlx uses for each engine. This module hides the second behind [`Conn`], an
//! object-safe connection that runs a [`Query`] (SQL text plus owned [`Value`]s) and
//! answers engine-neutral [`Row`]s, and names the first in [`Dialect`]. Shared code is then
//! written once against `&mut dyn Conn`; the engines' modules keep only what truly differs
//! (batched hold placement, the sweeper, bulk statements).
//!
//! The cost is one small allocation per bound value and a boxed future per statement:
//! nothing beside a database round trip, and the hot hold path does not go through here.

use async_trait::async_trait;
use boxoffice_core::StoreError;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{PgConnection, SqliteConnection};

use crate::rows::StoredRow;
use crate::{postgres, sqlite};

/// The SQL dialect of a connection: the clauses that differ between the engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// Row lock for a read that a write of the same transaction depends on. SQLite needs
    /// none: every write transaction holds the database's one write lock from its start.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }

    /// A join that the planner must take in the order written. SQLite reorders a plain
    /// join by its own estimate, which for a busy ticket type starts from all its items;
    /// `CROSS JOIN` fixes the order there. PostgreSQL plans well and rejects `CROSS JOIN … ON`.
    pub(crate) fn join_in_order(self) -> &'static str {
        match self {
            Dialect::Postgres => "JOIN",
            Dialect::Sqlite => "CROSS JOIN",
        }
    }

    /// Row lock for claiming work that another instance may be claiming at once: rows it
    /// has locked are passed over instead of waited for.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(Option<String>),
    Integer(Option<i64>),
    Boolean(Option<bool>),
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(Some(value.to_owned()))
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(Some(value))
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(Some(value.clone()))
    }
}

impl From<Option<&str>> for Value {
    fn from(value: Option<&str>) -> Self {
        Value::Text(value.map(str::to_owned))
    }
}

impl From<Option<String>> for Value {
    fn from(value: Option<String>) -> Self {
        Value::Text(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Integer(Some(value))
    }
}

impl From<&i64> for Value {
    fn from(value: &i64) -> Self {
        Value::Integer(Some(*value))
    }
}

impl From<Option<i64>> for Value {
    fn from(value: Option<i64>) -> Self {
        Value::Integer(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Boolean(Some(value))
    }
}

impl From<Option<bool>> for Value {
    fn from(value: Option<bool>) -> Self {
        Value::Boolean(value)
    }
}

/// A statement and its bound values, built like sqlx's `query(…).bind(…)`.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    sql: String,
    values: Vec<Value>,
}

/// A statement with `$1`-style placeholders.
pub(crate) fn query(sql: impl Into<String>) -> Query {
    Query {
        sql: sql.into(),
        values: Vec::new(),
    }
}

impl Query {
    /// Binds the next placeholder.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Appends `$n, $n+1, …` placeholders for `values` (an `IN (…)` list), binding them.
    /// The caller keeps lists short enough for SQLite's bound-parameter limit.
    pub(crate) fn push_list<V: Into<Value>>(mut self, values: impl IntoIterator<Item = V>) -> Self {
        let mut first = true;
        for value in values {
            self.values.push(value.into());
            if !first {
                self.sql.push_str(", ");
            }
            first = false;
            self.sql.push('$');
            self.sql.push_str(&self.values.len().to_string());
        }
        self
    }

    /// Appends SQL text.
    pub(crate) fn push(mut self, sql: &str) -> Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `value` and binds it.
    pub(crate) fn push_bind(mut self, value: impl Into<Value>) -> Self {
        self.values.push(value.into());
        self.sql.push('$');
        self.sql.push_str(&self.values.len().to_string());
        self
    }

    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    pub(crate) fn values(&self) -> &[Value] {
        &self.values
    }

    /// Runs the statement; answers how many rows it changed.
    pub(crate) async fn execute(self, conn: &mut dyn Conn) -> Result<u64, StoreError> {
        conn.execute(self).await
    }

    /// Runs the statement; answers every row.
    pub(crate) async fn fetch_all(self, conn: &mut dyn Conn) -> Result<Vec<Row>, StoreError> {
        conn.fetch_all(self).await
    }

    /// Runs the statement; answers its first row, if any.
    pub(crate) async fn fetch_optional(self, conn: &mut dyn Conn) -> Result<Option<Row>, StoreError> {
        conn.fetch_optional(self).await
    }

    /// Runs the statement; answers its first row, `NotFound(what)` when there is none.
    pub(crate) async fn fetch_one(self, conn: &mut dyn Conn, what: &'static str) -> Result<Row, StoreError> {
        conn.fetch_optional(self).await?.ok_or(StoreError::NotFound(what))
    }
}

/// The sqlx statement for a [`Query`], on engine `DB`: the SQL text and its values bound
/// in order. Generic, so both engines bind alike.
pub(crate) fn bind<'q, DB>(query: &'q Query) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<bool>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut bound = sqlx::query::<DB>(query.sql());
    for value in query.values() {
        bound = match value {
            Value::Text(text) => bound.bind(text.as_deref()),
            Value::Integer(integer) => bound.bind(*integer),
            Value::Boolean(boolean) => bound.bind(*boolean),
        };
    }
    bound
}

/// A connection (or transaction) of either engine.
#[async_trait]
pub(crate) trait Conn: Send {
    /// Which clauses this engine needs.
    fn dialect(&self) -> Dialect;
    /// The engine's own connection, for the few statements written per engine.
    fn engine(&mut self) -> EngineConn<'_>;
    /// Runs a statement; answers how many rows it changed.
    async fn execute(&mut self, query: Query) -> Result<u64, StoreError>;
    /// Runs a statement; answers every row.
    async fn fetch_all(&mut self, query: Query) -> Result<Vec<Row>, StoreError>;
    /// Runs a statement; answers its first row, if any.
    async fn fetch_optional(&mut self, query: Query) -> Result<Option<Row>, StoreError>;
}

/// The engine's own connection behind a [`Conn`].
pub(crate) enum EngineConn<'a> {
    Postgres(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// A row of either engine, read by column name through [`StoredRow`].
pub(crate) enum Row {
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

impl StoredRow for Row {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        match self {
            Row::Postgres(row) => postgres::get(row, column),
            Row::Sqlite(row) => sqlite::get(row, column),
        }
    }

    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        match self {
            Row::Postgres(row) => postgres::get(row, column),
            Row::Sqlite(row) => sqlite::get(row, column),
        }
    }

    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        match self {
            Row::Postgres(row) => postgres::integer(row, column),
            Row::Sqlite(row) => sqlite::get(row, column),
        }
    }

    fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Row::Postgres(row) => postgres::optional_integer(row, column),
            Row::Sqlite(row) => sqlite::get(row, column),
        }
    }

    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        match self {
            Row::Postgres(row) => postgres::get(row, column),
            Row::Sqlite(row) => sqlite::get(row, column),
        }
    }
}

#[async_trait]
impl Conn for PgConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn engine(&mut self) -> EngineConn<'_> {
        EngineConn::Postgres(self)
    }

    async fn execute(&mut self, query: Query) -> Result<u64, StoreError> {
        postgres::execute(self, &query).await
    }

    async fn fetch_all(&mut self, query: Query) -> Result<Vec<Row>, StoreError> {
        Ok(postgres::fetch_all(self, &query)
            .await?
            .into_iter()
            .map(Row::Postgres)
            .collect())
    }

    async fn fetch_optional(&mut self, query: Query) -> Result<Option<Row>, StoreError> {
        Ok(postgres::fetch_optional(self, &query).await?.map(Row::Postgres))
    }
}

#[async_trait]
impl Conn for SqliteConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn engine(&mut self) -> EngineConn<'_> {
        EngineConn::Sqlite(self)
    }

    async fn execute(&mut self, query: Query) -> Result<u64, StoreError> {
        sqlite::execute(self, &query).await
    }

    async fn fetch_all(&mut self, query: Query) -> Result<Vec<Row>, StoreError> {
        Ok(sqlite::fetch_all(self, &query)
            .await?
            .into_iter()
            .map(Row::Sqlite)
            .collect())
    }

    async fn fetch_optional(&mut self, query: Query) -> Result<Option<Row>, StoreError> {
        Ok(sqlite::fetch_optional(self, &query).await?.map(Row::Sqlite))
    }
}
