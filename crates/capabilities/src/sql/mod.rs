//! SQL databases for guests (`wedge:sql`, `wit/wedge-sql-0.1.0/sql.wit`).
//!
//! A guest opens a database by name; the name must be in its function's grant
//! ([`SqlGrant`], from `sql_databases` in the function's config), else `open` fails with
//! `access-denied`. Which backend serves a name is the host's choice ([`SqlDatabases`]): a name
//! the runtime config binds to a server goes there, every other granted name to the fallback,
//! the embedded SQLite ([`sqlite::SqliteSql`]).
//!
//! # Injection
//!
//! Statements are parameterised: each `?` in the statement text is bound to the next value of
//! `params` by the backend itself (SQLite's `sqlite3_bind_*`, MySQL's binary prepared-statement
//! protocol), never spliced into the text, so a value can never change what a statement does.
//! Both backends use `?`, so the same guest code runs on either. One call runs exactly one
//! statement: SQLite refuses a text with a second statement after the first, and MySQL's prepared
//! statements take only one.
//!
//! # Values
//!
//! | WIT `value` | SQLite | MySQL / MariaDB |
//! | --- | --- | --- |
//! | `null` | NULL | NULL |
//! | `integer(s64)` | INTEGER | TINYINT .. BIGINT, YEAR, BOOL; a BIGINT UNSIGNED above 2^63-1 comes back as `text` (its decimal digits) |
//! | `real(f64)` | REAL | FLOAT, DOUBLE |
//! | `text(string)` | TEXT | CHAR, VARCHAR, TEXT, ENUM, SET, JSON; DECIMAL as its digits (exact, not rounded through f64); DATE as `YYYY-MM-DD`, DATETIME / TIMESTAMP as `YYYY-MM-DD HH:MM:SS[.ffffff]`, TIME as `[-]HH:MM:SS[.ffffff]` |
//! | `blob(list<u8>)` | BLOB | BINARY, VARBINARY, BLOB, BIT (any column with the binary character set) |
//!
//! A parameter is bound as the same type (a `real` as a DOUBLE, `text` and `blob` as strings).
//!
//! # Transactions
//!
//! `begin` pins one backend connection to the guest's connection until `commit` or `rollback`.
//! A second `begin`, or `commit` / `rollback` without `begin`, fails with `no-transaction`. A
//! transaction statement sent through `execute` (`BEGIN`, `COMMIT`, `SAVEPOINT`, ...) fails
//! with `invalid-statement`: the host must know whether a transaction is open. A transaction still open when the guest
//! drops its connection, or when the request ends, is rolled back. If a call inside a
//! transaction fails with `unavailable` (time out, lost connection, lock wait), the host rolls
//! the transaction back; the following calls fail with `unavailable` until the guest calls
//! `rollback` (which then succeeds), so a guest never commits half of its transaction by
//! accident. (A `commit` that fails with `unavailable` may still have taken effect on the
//! server: the answer was lost, not necessarily the commit; this is so for every database.)
//!
//! # Limits
//!
//! Every backend call is bounded by `min(SqlLimits::timeout, the request's time left - 50 ms)`;
//! a backend that does not answer in time gives `unavailable` and never holds the guest longer.
//! A result larger than [`SqlLimits::max_result_size`] (counting its column names and values)
//! gives `limit-exceeded`, never half a result. A request can hold at most
//! [`MAX_OPEN_CONNECTIONS`] connections at once.
//!
//! # SQLite: sandboxing
//!
//! The guest sends arbitrary SQL, so each SQLite connection is locked down ([`sqlite`] has
//! the details): an authorizer refuses `ATTACH` / `DETACH`, transaction statements, and every
//! `PRAGMA` but a read-only list (also as table-valued functions, `pragma_*`); at most 0
//! databases can be attached (so `VACUUM` and `VACUUM INTO` fail too); extension loading is off; `SQLITE_DBCONFIG_DEFENSIVE` is on. A
//! function's databases live in `<dir>/<scope>/sql/<name>.db`, so two functions (scopes)
//! using the same name never share a file.
//!
//! # MySQL / MariaDB: shared by design
//!
//! A MySQL database in the runtime config is the operator's database (an orders database,
//! say): its URL names one server database, and every function granted that name uses the very
//! same tables. The scope is not used. What a function may do there is what the URL's user may
//! do; give that user only the rights the functions need.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::names::{NameError, Scope, StateName};

mod host;
pub mod mysql;
pub mod sqlite;

pub use host::{Sql, SqlConnectionHandle, SqlCtx, SqlCtxView, SqlView, add_to_linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/wedge-sql-0.1.0",
        world: "wedge:sql/imports",
        imports: { default: async | trappable },
        additional_derives: [PartialEq],
        with: {
            "wedge:sql/sql.connection": super::host::SqlConnectionHandle,
        },
    });
}

/// The generated bindings of `wedge:sql/sql` (Host traits, `Value`, `Error`, `QueryResult`).
pub use bindings::wedge::sql::sql as wit;

/// How long before the request's deadline a backend call must be over, so the guest still has
/// time to answer after a call that timed out.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// How many connections one request may hold open at once.
pub const MAX_OPEN_CONNECTIONS: usize = 32;

/// Limits of one database.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    /// The largest result of one statement, in bytes (column names, text and blob lengths,
    /// 8 per number).
    pub max_result_size: usize,
    /// The longest one call may take (it is cut shorter near the request's deadline).
    pub timeout: Duration,
    /// The largest an embedded (SQLite) database may grow, in bytes: a statement that would
    /// grow it further fails with `limit-exceeded`. A server's databases are sized by the
    /// server.
    pub max_size: u64,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            max_result_size: 16 * 1024 * 1024,
            timeout: Duration::from_secs(5),
            max_size: 1 << 30,
        }
    }
}

/// Why a SQL call failed. Each variant maps to the WIT `error` case of the same name
/// ([`SqlError::InvalidConfig`] is the host's own and reaches a guest as `other`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SqlError {
    #[error("access to database `{0}` is not granted to this function")]
    AccessDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("constraint violation: {0}")]
    ConstraintViolation(String),
    #[error("invalid statement: {0}")]
    InvalidStatement(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("no transaction is open (or one is open already)")]
    NoTransaction,
    #[error("{0}")]
    Other(String),
    /// The host's configuration of a backend is wrong (a bad URL).
    #[error("SQL configuration: {0}")]
    InvalidConfig(String),
    /// A database or scope name that is not plain (the names' one rule, `crate::names`).
    #[error("{0}")]
    InvalidName(#[from] NameError),
}

impl From<SqlError> for wit::Error {
    fn from(error: SqlError) -> Self {
        match error {
            SqlError::AccessDenied(_) => wit::Error::AccessDenied,
            SqlError::Unavailable(m) => wit::Error::Unavailable(m),
            SqlError::ConstraintViolation(m) => wit::Error::ConstraintViolation(m),
            SqlError::InvalidStatement(m) => wit::Error::InvalidStatement(m),
            SqlError::LimitExceeded(m) => wit::Error::LimitExceeded(m),
            SqlError::NoTransaction => wit::Error::NoTransaction,
            SqlError::Other(m) => wit::Error::Other(m),
            SqlError::InvalidConfig(m) => wit::Error::Other(m),
            SqlError::InvalidName(e) => wit::Error::Other(e.to_string()),
        }
    }
}

/// A value in a row or a parameter (the WIT `value`, as the backends see it).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    /// What the value counts towards [`SqlLimits::max_result_size`].
    pub fn size(&self) -> usize {
        match self {
            SqlValue::Null => 1,
            SqlValue::Integer(_) | SqlValue::Real(_) => 8,
            SqlValue::Text(s) => s.len(),
            SqlValue::Blob(b) => b.len(),
        }
    }
}

impl From<wit::Value> for SqlValue {
    fn from(value: wit::Value) -> Self {
        match value {
            wit::Value::Null => SqlValue::Null,
            wit::Value::Integer(i) => SqlValue::Integer(i),
            wit::Value::Real(r) => SqlValue::Real(r),
            wit::Value::Text(t) => SqlValue::Text(t),
            wit::Value::Blob(b) => SqlValue::Blob(b),
        }
    }
}

impl From<SqlValue> for wit::Value {
    fn from(value: SqlValue) -> Self {
        match value {
            SqlValue::Null => wit::Value::Null,
            SqlValue::Integer(i) => wit::Value::Integer(i),
            SqlValue::Real(r) => wit::Value::Real(r),
            SqlValue::Text(t) => wit::Value::Text(t),
            SqlValue::Blob(b) => wit::Value::Blob(b),
        }
    }
}

/// What one statement produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
    pub rows_affected: u64,
    pub last_insert_id: Option<i64>,
}

impl From<QueryResult> for wit::QueryResult {
    fn from(result: QueryResult) -> Self {
        wit::QueryResult {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|values| wit::Row {
                    values: values.into_iter().map(Into::into).collect(),
                })
                .collect(),
            rows_affected: result.rows_affected,
            last_insert_id: result.last_insert_id,
        }
    }
}

/// Counts a result's bytes against [`SqlLimits::max_result_size`] while a backend reads it.
#[derive(Debug)]
pub struct ResultBudget {
    left: usize,
    max: usize,
}

impl ResultBudget {
    pub fn new(max: usize) -> Self {
        ResultBudget { left: max, max }
    }

    /// Takes `bytes` from the budget; `limit-exceeded` once it is spent.
    pub fn take(&mut self, bytes: usize) -> Result<(), SqlError> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(SqlError::LimitExceeded(format!(
                "the result is larger than {} bytes; select fewer rows or columns (LIMIT, OFFSET)",
                self.max
            ))),
        }
    }
}

/// The bounds of one backend call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// When the call must be over.
    pub deadline: Instant,
    /// `deadline - start`, for messages.
    pub timeout: Duration,
    pub max_result_size: usize,
    pub max_size: u64,
}

impl CallLimits {
    /// The time left until the deadline (zero once it has passed).
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// The future a backend method returns.
pub type SqlFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SqlError>> + Send + 'a>>;

/// A backend: one kind of database server. Connections are per (scope, database name).
pub trait SqlBackend: Send + Sync + 'static {
    /// Opens a connection to `database` for the function `scope`. A backend may connect
    /// lazily, at the connection's first call.
    fn connect<'a>(
        &'a self,
        scope: &'a str,
        database: &'a str,
        limits: CallLimits,
    ) -> SqlFuture<'a, Box<dyn SqlConnection>>;
}

/// One guest connection as a backend holds it. Dropping it with a transaction open rolls the
/// transaction back. The capability keeps track of whether a transaction is open, and calls
/// `commit` / `rollback` only after `begin`.
pub trait SqlConnection: Send + 'static {
    /// Runs one statement, binding the `?` in `statement` to `params`.
    fn execute(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
        limits: CallLimits,
    ) -> SqlFuture<'_, QueryResult>;
    fn begin(&mut self, limits: CallLimits) -> SqlFuture<'_, ()>;
    fn commit(&mut self, limits: CallLimits) -> SqlFuture<'_, ()>;
    fn rollback(&mut self, limits: CallLimits) -> SqlFuture<'_, ()>;
    /// Gives up the backend connection (after a call was cut off by its deadline, or after it
    /// failed with `unavailable`): it may be mid-statement, so it is closed, which rolls back
    /// its transaction. The next call uses a new one.
    fn discard(&mut self);
    /// After a call failed inside a transaction: whether the backend still has the
    /// transaction open. SQLite rolls a whole transaction back on its own after some failures
    /// (a file that reached its size limit); a backend that cannot tell says `true`.
    fn still_in_transaction(&self) -> bool {
        true
    }
}

struct Served {
    backend: Arc<dyn SqlBackend>,
    limits: SqlLimits,
}

/// Which backend serves which database name: named ones from the runtime config, every other
/// granted name by the fallback (embedded SQLite).
pub struct SqlDatabases {
    fallback: Served,
    named: HashMap<String, Served>,
}

impl SqlDatabases {
    pub fn new(fallback: Arc<dyn SqlBackend>, fallback_limits: SqlLimits) -> Self {
        SqlDatabases {
            fallback: Served {
                backend: fallback,
                limits: fallback_limits,
            },
            named: HashMap::new(),
        }
    }

    /// Serves `database` by `backend` (replacing an earlier entry of that name).
    pub fn insert(&mut self, database: String, backend: Arc<dyn SqlBackend>, limits: SqlLimits) {
        self.named.insert(database, Served { backend, limits });
    }

    fn served(&self, database: &str) -> &Served {
        self.named.get(database).unwrap_or(&self.fallback)
    }
}

/// What one function may open: its scope (where its SQLite files live) and its databases.
#[derive(Debug, Clone)]
pub struct SqlGrant {
    pub scope: Scope,
    pub databases: Vec<StateName>,
}

/// The first keyword of a statement, upper-cased, after whitespace and comments.
pub(crate) fn first_keyword(statement: &str) -> String {
    let mut rest = statement;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix('#') {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests;
