//! The one port each platform implements for storage: run a batch of SQL statements as one
//! atomic unit and hand back their rows. D1's `batch()` on the edge, SQLite in the core's tests.
//!
//! Everything above it — the SQL itself, the queue's rules, how rows become domain types — is
//! written once, in this crate.

#![allow(async_fn_in_trait)] // The shells are single-threaded (Workers); no `Send` bound is wanted.

/// A value bound to a statement parameter (`?1`, `?2`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// An integer (ids, epoch-ms times, 0/1 flags).
    Integer(i64),
    /// Text.
    Text(String),
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Self::Integer(n)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Integer(i64::from(b))
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Self::Text(s.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// One SQL statement with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text, with numbered parameters.
    pub sql: String,
    /// The parameters, `?1` first.
    pub params: Vec<Value>,
}

impl Statement {
    /// A statement from SQL and its parameters.
    pub fn new(sql: impl Into<String>, params: Vec<Value>) -> Self {
        Self { sql: sql.into(), params }
    }
}

/// Builds a [`Statement`]: `sql!("… ?1 … ?2", a, b)`; each argument becomes a [`Value`].
macro_rules! sql {
    ($sql:expr $(, $arg:expr)* $(,)?) => {
        $crate::store::port::Statement::new($sql, vec![$($crate::store::port::Value::from($arg)),*])
    };
}
pub(crate) use sql;

/// What one statement of a batch produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The rows it returned (a `SELECT`, or a write with `RETURNING`), as a JSON array of
    /// objects (column name → value): D1 hands rows over as JSON anyway, and reading them
    /// straight into their types is the smallest code in the Worker.
    pub rows: String,
    /// How many rows it inserted, updated or deleted.
    pub changes: u64,
}

impl Outcome {
    /// The rows, read as `T`.
    pub fn read<T: FromRow>(self) -> Result<Vec<T>, DatabaseError> {
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Row> = serde_json::from_str(&self.rows).map_err(|e| DatabaseError::Unreadable(e.to_string()))?;
        rows.iter().map(T::from_row).collect()
    }

    /// The first row, read as `T`.
    pub fn first<T: FromRow>(self) -> Result<Option<T>, DatabaseError> {
        Ok(self.read::<T>()?.into_iter().next())
    }
}

/// One row: column name → value.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// A type read from a row by column names; declared with [`row!`](crate::store::port::row).
pub trait FromRow: Sized {
    /// Reads one row.
    fn from_row(row: &Row) -> Result<Self, DatabaseError>;
}

/// Two views of one row (a user's columns and the columns joined to them).
impl<A: FromRow, B: FromRow> FromRow for (A, B) {
    fn from_row(row: &Row) -> Result<Self, DatabaseError> {
        Ok((A::from_row(row)?, B::from_row(row)?))
    }
}

/// A column's value type.
pub trait Column: Sized {
    /// The value of column `name`.
    fn column(row: &Row, name: &str) -> Result<Self, DatabaseError>;
}

fn unreadable(name: &str) -> DatabaseError {
    DatabaseError::Unreadable(format!("column {name}"))
}

impl Column for i64 {
    fn column(row: &Row, name: &str) -> Result<Self, DatabaseError> {
        row.get(name).and_then(serde_json::Value::as_i64).ok_or_else(|| unreadable(name))
    }
}
impl Column for u64 {
    fn column(row: &Row, name: &str) -> Result<Self, DatabaseError> {
        row.get(name).and_then(serde_json::Value::as_u64).ok_or_else(|| unreadable(name))
    }
}
impl Column for u32 {
    fn column(row: &Row, name: &str) -> Result<Self, DatabaseError> {
        u32::try_from(u64::column(row, name)?).map_err(|_| unreadable(name))
    }
}
impl Column for String {
    fn column(row: &Row, name: &str) -> Result<Self, DatabaseError> {
        row.get(name).and_then(serde_json::Value::as_str).map(str::to_owned).ok_or_else(|| unreadable(name))
    }
}
impl<T: Column> Column for Option<T> {
    fn column(row: &Row, name: &str) -> Result<Self, DatabaseError> {
        match row.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(_) => T::column(row, name).map(Some),
        }
    }
}

/// Declares a struct read from a row: each field is the column of its name.
macro_rules! row {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($fvis:vis $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])* $vis struct $name { $($fvis $field: $ty),* }
        impl $crate::store::port::FromRow for $name {
            fn from_row(row: &$crate::store::port::Row) -> Result<Self, $crate::store::port::DatabaseError> {
                Ok(Self { $($field: $crate::store::port::Column::column(row, stringify!($field))?),* })
            }
        }
    };
}
pub(crate) use row;

/// Why a batch failed. Nothing of a failed batch is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseError {
    /// A `UNIQUE` constraint failed; the text is the database's, naming the table and column.
    #[error("unique constraint failed: {0}")]
    Unique(String),
    /// A row could not be read into its type.
    #[error("unreadable row: {0}")]
    Unreadable(String),
    /// Anything else the database reported.
    #[error("database failure: {0}")]
    Backend(String),
}

impl DatabaseError {
    /// Classifies a database's error text: uniqueness violations are told apart, as clients
    /// can act on them.
    pub fn from_message(message: String) -> Self {
        if message.contains("UNIQUE constraint failed") { Self::Unique(message) } else { Self::Backend(message) }
    }
}

/// A SQL database: D1 on the edge, SQLite in tests.
pub trait Database {
    /// Runs `statements` in order as one transaction and one round trip: either all take
    /// effect or, when any fails, none does. One [`Outcome`] per statement.
    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Outcome>, DatabaseError>;
}
