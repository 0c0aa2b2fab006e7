//! The embedded SQL backend: one SQLite file per (scope, database name), at
//! `<dir>/<scope>/sql/<database>.db`, created on first open.
//!
//! # Sandboxing
//!
//! A guest sends arbitrary SQL, so every connection is locked down before a guest statement
//! reaches it:
//!
//! - an authorizer (checked when a statement is prepared, for the statement and for the
//!   triggers and views it uses) refuses `ATTACH` and `DETACH`, the `load_extension` function,
//!   virtual tables other than FTS3/4/5 and R*Tree, transaction statements (`BEGIN`, `COMMIT`,
//!   `SAVEPOINT`, ...: the host keeps track of transactions, see the parent module), and every
//!   `PRAGMA` but a read-only list ([`ALLOWED_PRAGMAS`] with any argument,
//!   [`READ_ONLY_PRAGMAS`] only without a value). A refused statement fails with
//!   `invalid-statement` naming what was refused;
//! - `SQLITE_LIMIT_ATTACHED` is 0, so no other file can be attached by any route. `VACUUM`
//!   attaches a database internally, so `VACUUM` and `VACUUM INTO 'file'` are refused too;
//! - extension loading stays off (rusqlite is built without it), `SQLITE_DBCONFIG_DEFENSIVE` is
//!   on (no writable schema, no raw page access) and `SQLITE_DBCONFIG_TRUSTED_SCHEMA` off;
//! - the file may not grow past the database's size limit ([`super::SqlLimits::max_size`],
//!   SQLite's `max_page_count`): a statement that would grow it fails with `limit-exceeded`
//!   and changes nothing; deleting rows makes room again;
//! - no string or blob may be longer than the database's result size limit
//!   (`SQLITE_LIMIT_LENGTH`), so one statement cannot make the host allocate a gigabyte;
//! - the file is opened without URI names, so no file name given by a guest is ever read
//!   (the guest gives a database name, which must be granted and a plain name, see
//!   [`crate::names`]).
//!
//! # Durability and concurrency
//!
//! WAL journal, `synchronous=FULL` (a write that was acknowledged survives a kill -9 or a power
//! cut), `foreign_keys=ON`. Transactions start with `BEGIN IMMEDIATE`: they take the file's
//! write lock at once, so two writers wait for each other (up to the call's time left, the busy
//! timeout) instead of failing half-way with `SQLITE_BUSY`.
//!
//! Writers to one file also take turns on an in-process gate before they touch it: a guest
//! transaction holds its turn from `begin` until `commit` / `rollback` (or its connection is
//! dropped), and a statement outside a transaction that may write (anything but `SELECT`,
//! `VALUES`, `EXPLAIN`) holds it for that statement. SQLite's own busy handler sleeps
//! (1, 2, 5, ... 100 ms) instead of waking when the lock is free, which under concurrent
//! writers turned millisecond transactions into p99 latencies of seconds; queued on the gate,
//! each writer starts when the previous one ends. The gate is only a queue: SQLite's locking
//! and busy timeout still decide correctness (and cover other processes using the file).
//!
//! rusqlite blocks, so every call runs on tokio's blocking pool. Each file keeps up to
//! [`IDLE_PER_FILE`] idle connections for reuse. A guest connection holds one SQLite
//! connection from `open` until it is dropped. Statements are bounded by the call's deadline
//! (a progress handler interrupts them, the busy timeout stops waiting for locks).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, config::DbConfig};

use crate::names::{Scope, StateName};
use crate::sqlite_size::{at_size_limit, limit_size};

use super::{
    CallLimits, QueryResult, ResultBudget, SqlBackend, SqlConnection, SqlError, SqlFuture, SqlValue,
};

/// Idle connections kept per file.
pub const IDLE_PER_FILE: usize = 4;

/// Idle connections kept over all files (each holds a file descriptor and a page cache).
pub const IDLE_TOTAL: usize = 64;

/// PRAGMAs a guest may run, with or without an argument: they only read the schema.
pub const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "collation_list",
];

/// PRAGMAs a guest may read (`PRAGMA user_version`) but not set.
pub const READ_ONLY_PRAGMAS: &[&str] = &[
    "user_version",
    "application_id",
    "schema_version",
    "data_version",
    "page_count",
    "page_size",
    "freelist_count",
    "encoding",
    "foreign_keys",
    "journal_mode",
    "synchronous",
    "quick_check",
    "integrity_check",
];

/// The smallest cap on the length of a string or blob (SQLite's schema statements must fit).
const MIN_VALUE_LIMIT: i32 = 64 * 1024;

/// SQLite's own cap on the length of a string or blob.
const SQLITE_MAX_LENGTH: i32 = 1_000_000_000;

/// Virtual table modules a guest may use.
const ALLOWED_MODULES: &[&str] = &["fts3", "fts4", "fts5", "rtree", "rtree_i32"];

/// The embedded SQLite backend.
pub struct SqliteSql {
    dir: PathBuf,
    files: Mutex<HashMap<PathBuf, Arc<FilePool>>>,
    /// Idle connections over all files.
    idle_total: Arc<AtomicUsize>,
}

impl SqliteSql {
    /// Databases live in `dir/<scope>/sql/<database>.db`; nothing is created before a
    /// database is first opened.
    pub fn new(dir: PathBuf) -> Self {
        SqliteSql {
            dir,
            files: Mutex::new(HashMap::new()),
            idle_total: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The file of `database` in `scope`.
    pub fn path(&self, scope: &str, database: &str) -> Result<PathBuf, SqlError> {
        Scope::new(scope)?;
        StateName::new("database", database)?;
        Ok(self
            .dir
            .join(scope)
            .join("sql")
            .join(format!("{database}.db")))
    }

    fn pool(&self, path: PathBuf, database: &str) -> Arc<FilePool> {
        lock(&self.files)
            .entry(path.clone())
            .or_insert_with(|| {
                Arc::new(FilePool {
                    path,
                    database: database.to_string(),
                    idle: Mutex::new(Vec::new()),
                    idle_total: self.idle_total.clone(),
                    writer: Arc::new(Semaphore::new(1)),
                })
            })
            .clone()
    }
}

impl SqlBackend for SqliteSql {
    fn connect<'a>(
        &'a self,
        scope: &'a str,
        database: &'a str,
        limits: CallLimits,
    ) -> SqlFuture<'a, Box<dyn SqlConnection>> {
        Box::pin(async move {
            let path = self.path(scope, database)?;
            let pool = self.pool(path, database);
            let opener = pool.clone();
            let conn = blocking(database, move || opener.get(limits)).await?;
            Ok(Box::new(SqliteConnection {
                pool,
                conn: Some(conn),
                turn: None,
            }) as Box<dyn SqlConnection>)
        })
    }
}

/// Locks a mutex, also when another thread panicked holding it (the data is still sound:
/// a list of connections, a map of pools).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs blocking SQLite work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    database: &str,
    work: impl FnOnce() -> Result<T, SqlError> + Send + 'static,
) -> Result<T, SqlError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        SqlError::Other(format!(
            "database `{database}`: the SQLite call failed: {e}"
        ))
    })?
}

/// The connections of one file.
struct FilePool {
    path: PathBuf,
    database: String,
    idle: Mutex<Vec<Sandboxed>>,
    idle_total: Arc<AtomicUsize>,
    /// The writers' gate: one permit (see the module docs).
    writer: Arc<Semaphore>,
}

impl FilePool {
    /// Waits for this file's turn to write, at most the call's time left.
    async fn writer_turn(&self, limits: CallLimits) -> Result<OwnedSemaphorePermit, SqlError> {
        let busy = || {
            SqlError::Unavailable(format!(
                "database `{}` is unavailable: another writer held it for the whole call's time",
                self.database
            ))
        };
        match tokio::time::timeout(limits.time_left(), self.writer.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it as busy if it were.
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }

    /// An idle connection, or a new one (blocking).
    fn get(&self, limits: CallLimits) -> Result<Sandboxed, SqlError> {
        if let Some(conn) = lock(&self.idle).pop() {
            self.idle_total.fetch_sub(1, Ordering::SeqCst);
            return Ok(conn);
        }
        Sandboxed::open(&self.path, &self.database, limits).map_err(|e| {
            // Not being able to open the file is the host's problem (disk, permissions);
            // a guest sees `unavailable`, the log says why.
            tracing::error!(path = %self.path.display(), "cannot open SQLite database: {e}");
            SqlError::Unavailable(format!(
                "database `{}` is unavailable: it cannot be opened",
                self.database
            ))
        })
    }

    /// Takes back a connection that is not in a transaction, or closes it (blocking).
    fn put(&self, conn: Sandboxed) {
        if !conn.conn.is_autocommit() {
            return; // closing it rolls the transaction back
        }
        let mut idle = lock(&self.idle);
        if idle.len() < IDLE_PER_FILE && self.idle_total.fetch_add(1, Ordering::SeqCst) < IDLE_TOTAL
        {
            idle.push(conn);
            return;
        }
        if idle.len() < IDLE_PER_FILE {
            self.idle_total.fetch_sub(1, Ordering::SeqCst);
        }
        drop(idle);
        drop(conn);
    }
}

/// What the authorizer shares with the code that runs statements.
#[derive(Default)]
struct AuthState {
    /// Set while the host runs its own statements (`BEGIN IMMEDIATE`, `COMMIT`, ...).
    host: AtomicBool,
    /// Set when a statement being prepared inserts (at the top level).
    inserts: AtomicBool,
    /// Why the authorizer refused the last statement.
    denial: Mutex<Option<String>>,
}

/// A SQLite connection with the guest's sandbox installed.
struct Sandboxed {
    conn: Connection,
    auth: Arc<AuthState>,
}

impl Sandboxed {
    fn open(path: &Path, database: &str, limits: CallLimits) -> Result<Self, rusqlite::Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot create {}: {e}", dir.display())),
                )
            })?;
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(limits.time_left())?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                database,
                "SQLite did not switch to WAL (journal mode {mode})"
            );
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        limit_size(&conn, limits.max_size)?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
        let auth = Arc::new(AuthState::default());
        let shared = auth.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if shared.host.load(Ordering::SeqCst) {
                return Authorization::Allow;
            }
            if ctx.accessor.is_none() && matches!(ctx.action, AuthAction::Insert { .. }) {
                shared.inserts.store(true, Ordering::SeqCst);
            }
            match guest_may(&ctx.action) {
                Ok(()) => Authorization::Allow,
                Err(why) => {
                    *lock(&shared.denial) = Some(why);
                    Authorization::Deny
                }
            }
        }))?;
        Ok(Sandboxed { conn, auth })
    }

    /// Bounds the next statements by `limits`.
    fn bound(&mut self, limits: CallLimits) -> Result<(), rusqlite::Error> {
        self.conn.busy_timeout(limits.time_left())?;
        // No string or blob larger than a result may be: it could not be read back, and
        // SQLite's own limit (1 GB) would let one statement (`randomblob(1e9)`) make the host
        // allocate that much.
        let longest = i32::try_from(limits.max_result_size)
            .unwrap_or(i32::MAX)
            .clamp(MIN_VALUE_LIMIT, SQLITE_MAX_LENGTH);
        self.conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, longest)?;
        let deadline = limits.deadline;
        self.conn
            .progress_handler(1000, Some(move || Instant::now() >= deadline))
    }

    /// Runs one of the host's own statements (transaction control).
    fn host_statement(
        &mut self,
        sql: &str,
        database: &str,
        limits: CallLimits,
    ) -> Result<(), SqlError> {
        self.bound(limits)
            .map_err(|e| map_error(e, database, None))?;
        self.auth.host.store(true, Ordering::SeqCst);
        let result = self.conn.execute_batch(sql);
        self.auth.host.store(false, Ordering::SeqCst);
        result.map_err(|e| self.full_or(e, database, None, limits))
    }

    /// Maps `error` to the guest's error, telling a file that reached its size limit
    /// (`limit-exceeded`) from a disk that is full (`unavailable`, and logged).
    fn full_or(
        &self,
        error: rusqlite::Error,
        database: &str,
        denial: Option<String>,
        limits: CallLimits,
    ) -> SqlError {
        // The check reads two PRAGMAs, which the guest's authorizer would refuse.
        self.auth.host.store(true, Ordering::SeqCst);
        let full = at_size_limit(&self.conn, &error);
        self.auth.host.store(false, Ordering::SeqCst);
        if full {
            return SqlError::LimitExceeded(format!(
                "database `{database}` is full: it has reached its size limit of {} (`max_size` in the runtime config); delete rows to make room, or ask the operator for a larger limit",
                wedge_engine::units::format_size(limits.max_size)
            ));
        }
        map_error(error, database, denial)
    }

    /// Runs one guest statement.
    fn run(
        &mut self,
        statement: &str,
        params: Vec<SqlValue>,
        database: &str,
        limits: CallLimits,
    ) -> Result<QueryResult, SqlError> {
        self.bound(limits)
            .map_err(|e| map_error(e, database, None))?;
        *lock(&self.auth.denial) = None;
        self.auth.inserts.store(false, Ordering::SeqCst);
        let denial = |auth: &AuthState| lock(&auth.denial).take();

        let mut stmt = match self.conn.prepare(statement) {
            Ok(stmt) => stmt,
            Err(e) => return Err(map_error(e, database, denial(&self.auth))),
        };
        let expected = stmt.parameter_count();
        if expected != params.len() {
            return Err(SqlError::InvalidStatement(format!(
                "the statement has {expected} parameter(s) (`?`) but {} value(s) were given",
                params.len()
            )));
        }
        for (i, param) in params.into_iter().enumerate() {
            let value = match param {
                SqlValue::Null => Value::Null,
                SqlValue::Integer(i) => Value::Integer(i),
                SqlValue::Real(r) => Value::Real(r),
                SqlValue::Text(t) => Value::Text(t),
                SqlValue::Blob(b) => Value::Blob(b),
            };
            stmt.raw_bind_parameter(i + 1, value)
                .map_err(|e| map_error(e, database, None))?;
        }

        let mut budget = ResultBudget::new(limits.max_result_size);
        let columns: Vec<String> = stmt.column_names().map(String::from).collect();
        for name in &columns {
            budget.take(name.len())?;
        }
        let width = columns.len();
        let changes_before = self.conn.total_changes();
        let mut rows = Vec::new();
        {
            let mut cursor = stmt.raw_query();
            loop {
                let row = match cursor.next() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(e) => {
                        let denial = denial(&self.auth);
                        drop(cursor);
                        drop(stmt);
                        return Err(self.full_or(e, database, denial, limits));
                    }
                };
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    let value = match row.get_ref(i).map_err(|e| map_error(e, database, None))? {
                        ValueRef::Null => SqlValue::Null,
                        ValueRef::Integer(i) => SqlValue::Integer(i),
                        ValueRef::Real(r) => SqlValue::Real(r),
                        ValueRef::Text(t) => match std::str::from_utf8(t) {
                            Ok(t) => SqlValue::Text(t.to_string()),
                            // SQLite does not check that TEXT is UTF-8; hand over the bytes.
                            Err(_) => SqlValue::Blob(t.to_vec()),
                        },
                        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                    };
                    budget.take(value.size())?;
                    values.push(value);
                }
                rows.push(values);
            }
        }
        drop(stmt);
        let changed = self.conn.total_changes() != changes_before;
        let rows_affected = if changed { self.conn.changes() } else { 0 };
        let inserted = changed && self.auth.inserts.load(Ordering::SeqCst);
        Ok(QueryResult {
            columns,
            rows,
            rows_affected,
            last_insert_id: inserted.then(|| self.conn.last_insert_rowid()),
        })
    }
}

/// Whether a guest's statement may do `action`; if not, why.
fn guest_may(action: &AuthAction<'_>) -> Result<(), String> {
    match action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Err(
            "ATTACH, DETACH and VACUUM (which attaches a database) are not allowed: a function reaches only its own database file".into(),
        ),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Err(
            "transaction statements are not allowed in execute: use the connection's begin, commit and rollback".into(),
        ),
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            if ALLOWED_PRAGMAS.contains(&name.as_str())
                || (pragma_value.is_none() && READ_ONLY_PRAGMAS.contains(&name.as_str()))
            {
                Ok(())
            } else {
                Err(format!(
                    "PRAGMA {pragma_name}{} is not allowed: a function may read the schema (PRAGMA {}) and read (not set) PRAGMA {}",
                    if pragma_value.is_some() { " with a value" } else { "" },
                    ALLOWED_PRAGMAS.join(", "),
                    READ_ONLY_PRAGMAS.join(", "),
                ))
            }
        }
        AuthAction::Function { function_name } => {
            if function_name.eq_ignore_ascii_case("load_extension") {
                Err("load_extension is not allowed".into())
            } else {
                Ok(())
            }
        }
        AuthAction::CreateVtable { module_name, .. } | AuthAction::DropVtable { module_name, .. } => {
            if ALLOWED_MODULES.contains(&module_name.to_ascii_lowercase().as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "virtual table module `{module_name}` is not allowed (allowed: {})",
                    ALLOWED_MODULES.join(", ")
                ))
            }
        }
        AuthAction::AlterTable { database_name, .. }
            if !matches!(*database_name, "main" | "temp") =>
        {
            Err("only the function's own database can be altered".into())
        }
        // ATTACH with a bound file name (`ATTACH ?`) comes without its arguments.
        AuthAction::Unknown { code, .. }
            if matches!(*code, rusqlite::ffi::SQLITE_ATTACH | rusqlite::ffi::SQLITE_DETACH) =>
        {
            Err("ATTACH, DETACH and VACUUM (which attaches a database) are not allowed: a function reaches only its own database file".into())
        }
        AuthAction::Unknown { code, .. } => Err(format!("operation {code} is not allowed")),
        _ => Ok(()),
    }
}

/// Maps a SQLite error to the guest's error. `denial` is the authorizer's reason, if it
/// refused the statement.
fn map_error(error: rusqlite::Error, database: &str, denial: Option<String>) -> SqlError {
    use rusqlite::Error as E;
    match error {
        E::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            match failure.code {
                ErrorCode::ConstraintViolation => SqlError::ConstraintViolation(message),
                ErrorCode::AuthorizationForStatementDenied => {
                    SqlError::InvalidStatement(denial.unwrap_or(message))
                }
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    SqlError::Unavailable(format!(
                        "database `{database}` is unavailable: it stayed locked by another writer ({message})"
                    ))
                }
                ErrorCode::OperationInterrupted => SqlError::Unavailable(format!(
                    "database `{database}` is unavailable: the statement ran out of time"
                )),
                ErrorCode::TooBig => SqlError::LimitExceeded(message),
                ErrorCode::Unknown
                | ErrorCode::ParameterOutOfRange
                | ErrorCode::TypeMismatch
                | ErrorCode::SchemaChanged => SqlError::InvalidStatement(message),
                ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::FileLockingProtocolFailed => {
                    tracing::error!(database, "SQLite: {message}");
                    SqlError::Unavailable(format!(
                        "database `{database}` is unavailable: {message}"
                    ))
                }
                _ => SqlError::Other(message),
            }
        }
        E::SqlInputError { msg, .. } => SqlError::InvalidStatement(msg),
        E::MultipleStatement => SqlError::InvalidStatement(
            "only one statement per call: the text goes on after the first statement".into(),
        ),
        E::InvalidParameterCount(given, expected) => SqlError::InvalidStatement(format!(
            "the statement has {expected} parameter(s) (`?`) but {given} value(s) were given"
        )),
        E::InvalidParameterName(name) => {
            SqlError::InvalidStatement(format!("unknown parameter `{name}`: use `?`"))
        }
        other => SqlError::Other(other.to_string()),
    }
}

/// A guest connection to a SQLite file.
struct SqliteConnection {
    pool: Arc<FilePool>,
    /// `None` while a call runs on the blocking pool, and after [`SqlConnection::discard`].
    conn: Option<Sandboxed>,
    /// This connection's turn among the file's writers, held while its transaction is open.
    turn: Option<OwnedSemaphorePermit>,
}

impl SqliteConnection {
    /// Runs `work` on this connection's SQLite connection (a fresh one if it has none), on
    /// the blocking pool. If the caller gives up waiting, the connection stays with the
    /// blocking task, which closes it when done (rolling back its transaction).
    async fn with_conn<T: Send + 'static>(
        &mut self,
        limits: CallLimits,
        work: impl FnOnce(&mut Sandboxed, &str) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let held = self.conn.take();
        let pool = self.pool.clone();
        let database = self.pool.database.clone();
        let (conn, result) = blocking(&self.pool.database, move || {
            let mut conn = match held {
                Some(conn) => conn,
                None => match pool.get(limits) {
                    Ok(conn) => conn,
                    Err(e) => return Ok((None, Err(e))),
                },
            };
            let result = work(&mut conn, &database);
            Ok((Some(conn), result))
        })
        .await?;
        self.conn = conn;
        result
    }

    /// Gives up the writers' turn unless a transaction is still open on the connection.
    fn end_turn_unless_in_transaction(&mut self) {
        let in_transaction = self.conn.as_ref().is_some_and(|c| !c.conn.is_autocommit());
        if !in_transaction {
            self.turn = None;
        }
    }

    /// Runs `work` holding the writers' turn: the one this connection's transaction holds,
    /// or one taken for this call.
    async fn as_writer<T: Send + 'static>(
        &mut self,
        limits: CallLimits,
        work: impl FnOnce(&mut Sandboxed, &str) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        if self.turn.is_none() {
            self.turn = Some(self.pool.writer_turn(limits).await?);
        }
        let result = self.with_conn(limits, work).await;
        self.end_turn_unless_in_transaction();
        result
    }
}

/// Whether a statement may write: all but those that start with `SELECT`, `VALUES` or
/// `EXPLAIN` (a `WITH` may end in an `INSERT`). Only decides who queues for the writers'
/// gate; SQLite's own locks decide correctness.
pub(super) fn may_write(statement: &str) -> bool {
    let first = statement
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    !["select", "values", "explain"]
        .iter()
        .any(|word| first.eq_ignore_ascii_case(word))
}

impl SqlConnection for SqliteConnection {
    fn execute(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
        limits: CallLimits,
    ) -> SqlFuture<'_, QueryResult> {
        let writes = may_write(&statement);
        let work = move |conn: &mut Sandboxed, database: &str| {
            conn.run(&statement, params, database, limits)
        };
        if self.turn.is_none() && !writes {
            return Box::pin(self.with_conn(limits, work));
        }
        Box::pin(self.as_writer(limits, work))
    }

    fn begin(&mut self, limits: CallLimits) -> SqlFuture<'_, ()> {
        Box::pin(self.as_writer(limits, move |conn, database| {
            conn.host_statement("BEGIN IMMEDIATE", database, limits)
        }))
    }

    fn commit(&mut self, limits: CallLimits) -> SqlFuture<'_, ()> {
        Box::pin(self.as_writer(limits, move |conn, database| {
            conn.host_statement("COMMIT", database, limits)
        }))
    }

    fn rollback(&mut self, limits: CallLimits) -> SqlFuture<'_, ()> {
        Box::pin(self.as_writer(limits, move |conn, database| {
            conn.host_statement("ROLLBACK", database, limits)
        }))
    }

    fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            close(conn);
        }
        self.turn = None;
    }

    fn still_in_transaction(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| !c.conn.is_autocommit())
    }
}

impl Drop for SqliteConnection {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let pool = self.pool.clone();
        // The writers' turn is given up after the rollback, not before it.
        let turn = self.turn.take();
        let give_back = move || {
            if !conn.conn.is_autocommit() {
                // The guest dropped its connection inside a transaction.
                conn.auth.host.store(true, Ordering::SeqCst);
                let rolled_back = conn.conn.execute_batch("ROLLBACK");
                conn.auth.host.store(false, Ordering::SeqCst);
                if let Err(e) = rolled_back {
                    tracing::warn!(database = %pool.database, "rolling back a dropped connection: {e}");
                }
            }
            pool.put(conn);
            drop(turn);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(give_back);
            }
            Err(_) => give_back(),
        }
    }
}

/// Closes a connection off the async threads (closing may checkpoint the WAL).
fn close(conn: Sandboxed) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(conn));
        }
        Err(_) => drop(conn),
    }
}
