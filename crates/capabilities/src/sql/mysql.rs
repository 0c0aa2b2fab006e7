//! A MySQL / MariaDB server as a SQL backend (`mysql_async`, no TLS).
//!
//! # Shared by design
//!
//! The runtime config binds a database name to a URL, `mysql://user:pass@host:port/db`, which
//! names one server database: the operator's (an orders database, say). Every function granted
//! that name works on the same tables; the scope is not used here (unlike SQLite, where each
//! function has its own file). What a function can do there is what the URL's user can do, so
//! give that user only the rights the functions need (no `FILE`, no `SUPER`).
//!
//! # Connections
//!
//! One pool per backend ([`MysqlSql::new`]'s `pool_size` connections at most), connecting
//! lazily. A guest connection checks out a server connection at its first call and keeps it
//! until the guest drops it (so a transaction stays on one server connection; its prepared
//! statements are reused). Dropping it returns it to the pool, which resets it
//! (`COM_RESET_CONNECTION`: an open transaction is rolled back, session state cleared); a
//! transaction is rolled back explicitly before that too. The pool pings an idle connection
//! before handing it out, so connections the server dropped (restart, `KILL`, `wait_timeout`)
//! are replaced without the guest noticing. A server connection that failed mid-call, or whose
//! call ran out of time, is closed, never reused; the guest's next call gets another one.
//!
//! Statements go through the binary prepared-statement protocol: `?` parameters are sent
//! apart from the text, and only one statement per call is accepted. Transaction statements
//! (`BEGIN`, `START TRANSACTION`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `XA`, `LOCK TABLES`,
//! `SET autocommit`) are refused in `execute`: use `begin`, `commit` and `rollback`. Note that
//! MySQL commits an open transaction implicitly before DDL (`CREATE TABLE`, ...).
//!
//! # Types
//!
//! Read by the column's metadata: integers → `integer` (a `BIGINT UNSIGNED` above 2^63-1 →
//! `text` with its decimal digits, so no value is lost or wrapped), FLOAT / DOUBLE → `real`,
//! DECIMAL → `text` (exact digits), CHAR / VARCHAR / TEXT / ENUM / SET / JSON → `text`,
//! columns with the binary character set (BINARY, VARBINARY, BLOB, BIT) → `blob`, DATE →
//! `YYYY-MM-DD`, DATETIME / TIMESTAMP → `YYYY-MM-DD HH:MM:SS[.ffffff]`, TIME →
//! `[-]HH:MM:SS[.ffffff]` (hours may exceed 24).

use std::time::Duration;

use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{
    Column, Conn, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Value,
};

use super::{
    CallLimits, QueryResult, ResultBudget, SqlBackend, SqlConnection, SqlError, SqlFuture,
    SqlValue, first_keyword,
};

/// How long an idle server connection is kept in the pool.
const IDLE_TTL: Duration = Duration::from_secs(60);

/// How long the background clean-up of a connection (rollback, kill, close) may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The character set number MySQL gives binary columns.
const BINARY_CHARSET: u16 = 63;

/// A MySQL-compatible server.
pub struct MysqlSql {
    pool: Pool,
    opts: Opts,
}

impl MysqlSql {
    /// Parses `url` (`mysql://user:pass@host:port/db`, the database is required) and makes a
    /// pool of at most `pool_size` connections. Nothing connects before the first call.
    pub fn new(url: &str, pool_size: usize) -> Result<Self, SqlError> {
        // The error never repeats the URL: it holds a password.
        let opts = Opts::from_url(url)
            .map_err(|e| SqlError::InvalidConfig(format!("the MySQL URL is not valid: {e}")))?;
        if opts.db_name().is_none_or(str::is_empty) {
            return Err(SqlError::InvalidConfig(
                "the MySQL URL names no database: write mysql://user:pass@host:port/database"
                    .into(),
            ));
        }
        let constraints = PoolConstraints::new(0, pool_size.max(1)).ok_or_else(|| {
            SqlError::InvalidConfig(format!("{pool_size} is not a valid MySQL pool size"))
        })?;
        let opts = OptsBuilder::from_opts(opts).pool_opts(
            PoolOpts::default()
                .with_constraints(constraints)
                // Keep idle connections for reuse (without this, mysql_async keeps only
                // `min` of them, 0 here: every guest connection would connect anew), and
                // close the ones idle for a minute.
                .with_inactive_connection_ttl(IDLE_TTL),
        );
        let opts = Opts::from(opts);
        Ok(MysqlSql {
            pool: Pool::new(opts.clone()),
            opts,
        })
    }
}

impl SqlBackend for MysqlSql {
    fn connect<'a>(
        &'a self,
        _scope: &'a str,
        database: &'a str,
        _limits: CallLimits,
    ) -> SqlFuture<'a, Box<dyn SqlConnection>> {
        Box::pin(async move {
            Ok(Box::new(MysqlConnection {
                pool: self.pool.clone(),
                opts: self.opts.clone(),
                database: database.to_string(),
                conn: None,
                in_transaction: false,
            }) as Box<dyn SqlConnection>)
        })
    }
}

/// A guest connection to the server.
struct MysqlConnection {
    pool: Pool,
    /// For a connection outside the pool.
    opts: Opts,
    database: String,
    /// Checked out at the first call, kept until dropped or discarded.
    conn: Option<Conn>,
    in_transaction: bool,
}

impl MysqlConnection {
    async fn conn(&mut self) -> Result<&mut Conn, SqlError> {
        if self.conn.is_none() {
            let conn = self
                .pool
                .get_conn()
                .await
                .map_err(|e| map_error(e, &self.database))?;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SqlError::Other(format!("database `{}`: no connection", self.database)))
    }

    /// Runs a statement of the host's (transaction control) on the text protocol.
    async fn host_statement(&mut self, sql: &'static str) -> Result<(), SqlError> {
        let result = self.conn().await?.query_drop(sql).await;
        result.map_err(|e| self.failed(e))
    }

    /// Maps an error; a connection-level error closes the server connection.
    fn failed(&mut self, error: mysql_async::Error) -> SqlError {
        if breaks_connection(&error) {
            self.discard();
        }
        map_error(error, &self.database)
    }
}

impl SqlConnection for MysqlConnection {
    fn execute(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
        limits: CallLimits,
    ) -> SqlFuture<'_, QueryResult> {
        Box::pin(async move {
            refuse_transaction_statement(&statement)?;
            let params = if params.is_empty() {
                Params::Empty
            } else {
                Params::Positional(params.into_iter().map(to_mysql).collect())
            };
            let database = self.database.clone();
            let conn = self.conn().await?;
            match run(conn, &statement, params, limits).await {
                Ok(result) => Ok(result),
                Err(Failure::Mysql(e)) => Err(self.failed(e)),
                Err(Failure::Sql(e)) => {
                    tracing::debug!(database, "{e}");
                    Err(e)
                }
            }
        })
    }

    fn begin(&mut self, _limits: CallLimits) -> SqlFuture<'_, ()> {
        Box::pin(async move {
            self.host_statement("START TRANSACTION").await?;
            self.in_transaction = true;
            Ok(())
        })
    }

    fn commit(&mut self, _limits: CallLimits) -> SqlFuture<'_, ()> {
        Box::pin(async move {
            self.host_statement("COMMIT").await?;
            self.in_transaction = false;
            Ok(())
        })
    }

    fn rollback(&mut self, _limits: CallLimits) -> SqlFuture<'_, ()> {
        Box::pin(async move {
            let result = self.host_statement("ROLLBACK").await;
            self.in_transaction = false;
            result
        })
    }

    fn discard(&mut self) {
        self.in_transaction = false;
        let Some(conn) = self.conn.take() else {
            return;
        };
        // The connection may be in the middle of a statement the server is still running
        // (the call ran out of time): closing the socket alone would leave it running, with
        // its locks, until it next talks to the client. So it is killed from another
        // connection (which rolls back its transaction at once), then closed; never given
        // back to the pool. Both in the background, each bounded.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return drop(conn);
        };
        // A connection of its own, not one of the pool's: the pool may be full (of this
        // connection, among others).
        let opts = self.opts.clone();
        let id = conn.id();
        runtime.spawn(async move {
            let kill = async {
                let mut other = Conn::new(opts).await?;
                other.query_drop(format!("KILL {id}")).await?;
                other.disconnect().await
            };
            if let Ok(Err(e)) = tokio::time::timeout(CLEANUP_TIMEOUT, kill).await {
                tracing::debug!("KILL {id} of a discarded connection: {e}");
            }
            let _ = tokio::time::timeout(CLEANUP_TIMEOUT, conn.disconnect()).await;
        });
    }
}

impl Drop for MysqlConnection {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !self.in_transaction {
            return; // back to the pool
        }
        // The pool's reset would roll back too; doing it here first does not depend on it.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let database = self.database.clone();
                runtime.spawn(async move {
                    let rollback = conn.query_drop("ROLLBACK");
                    match tokio::time::timeout(CLEANUP_TIMEOUT, rollback).await {
                        Ok(Ok(())) => drop(conn),
                        outcome => {
                            tracing::warn!(
                                database,
                                "rolling back a dropped connection failed ({outcome:?}); closing it"
                            );
                            let _ = tokio::time::timeout(CLEANUP_TIMEOUT, conn.disconnect()).await;
                        }
                    }
                });
            }
            Err(_) => drop(conn),
        }
    }
}

enum Failure {
    /// From the driver or the server.
    Mysql(mysql_async::Error),
    /// Decided here (a limit).
    Sql(SqlError),
}

impl From<mysql_async::Error> for Failure {
    fn from(error: mysql_async::Error) -> Self {
        Failure::Mysql(error)
    }
}

/// Runs one statement and reads its result.
async fn run(
    conn: &mut Conn,
    statement: &str,
    params: Params,
    limits: CallLimits,
) -> Result<QueryResult, Failure> {
    // Prepared first (or found in the connection's statement cache) to check the parameter
    // count here: mysql_async gives up the connection on a mismatch found while executing.
    let prepared = conn.prep(statement).await?;
    let given = match &params {
        Params::Positional(values) => values.len(),
        _ => 0,
    };
    if usize::from(prepared.num_params()) != given {
        return Err(Failure::Sql(SqlError::InvalidStatement(format!(
            "the statement has {} parameter(s) (`?`) but {given} value(s) were given",
            prepared.num_params()
        ))));
    }
    let mut result = conn.exec_iter(&prepared, params).await?;
    let columns = result.columns();
    let columns: &[Column] = columns.as_deref().unwrap_or(&[]);
    let mut budget = ResultBudget::new(limits.max_result_size);
    let names: Vec<String> = columns.iter().map(|c| c.name_str().into_owned()).collect();
    let mut over = names
        .iter()
        .try_for_each(|name| budget.take(name.len()))
        .err();
    let mut rows = Vec::new();
    while over.is_none() {
        let Some(row) = result.next().await? else {
            break;
        };
        let values = row.unwrap_raw();
        let mut converted = Vec::with_capacity(values.len());
        for (value, column) in values.into_iter().zip(columns) {
            let value = from_mysql(value.unwrap_or(Value::NULL), column);
            if let Err(e) = budget.take(value.size()) {
                over = Some(e);
                break;
            }
            converted.push(value);
        }
        rows.push(converted);
    }
    let rows_affected = result.affected_rows();
    let last_insert_id = result.last_insert_id();
    // Reads what is left (the rest of a result over the limit, further result sets), so the
    // connection can run the next statement.
    result.drop_result().await?;
    if let Some(over) = over {
        return Err(Failure::Sql(over));
    }
    Ok(QueryResult {
        columns: names,
        rows,
        rows_affected,
        last_insert_id: last_insert_id
            .filter(|id| *id != 0)
            .and_then(|id| i64::try_from(id).ok()),
    })
}

/// A guest's parameter as a MySQL value.
fn to_mysql(value: SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::NULL,
        SqlValue::Integer(i) => Value::Int(i),
        SqlValue::Real(r) => Value::Double(r),
        SqlValue::Text(t) => Value::Bytes(t.into_bytes()),
        SqlValue::Blob(b) => Value::Bytes(b),
    }
}

/// A MySQL value as the guest sees it, decided by its column's type.
fn from_mysql(value: Value, column: &Column) -> SqlValue {
    match value {
        Value::NULL => SqlValue::Null,
        Value::Int(i) => SqlValue::Integer(i),
        Value::UInt(u) => match i64::try_from(u) {
            Ok(i) => SqlValue::Integer(i),
            Err(_) => SqlValue::Text(u.to_string()),
        },
        Value::Float(f) => SqlValue::Real(f64::from(f)),
        Value::Double(d) => SqlValue::Real(d),
        Value::Date(year, month, day, hour, minute, second, micros) => {
            let date = format!("{year:04}-{month:02}-{day:02}");
            if matches!(
                column.column_type(),
                ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE
            ) {
                SqlValue::Text(date)
            } else {
                SqlValue::Text(format!(
                    "{date} {hour:02}:{minute:02}:{second:02}{}",
                    fraction(micros)
                ))
            }
        }
        Value::Time(negative, days, hours, minutes, seconds, micros) => {
            let hours = u64::from(days) * 24 + u64::from(hours);
            SqlValue::Text(format!(
                "{}{hours:02}:{minutes:02}:{seconds:02}{}",
                if negative { "-" } else { "" },
                fraction(micros)
            ))
        }
        Value::Bytes(bytes) => {
            let binary = column.character_set() == BINARY_CHARSET
                && !matches!(
                    column.column_type(),
                    ColumnType::MYSQL_TYPE_DECIMAL
                        | ColumnType::MYSQL_TYPE_NEWDECIMAL
                        | ColumnType::MYSQL_TYPE_JSON
                );
            if binary {
                SqlValue::Blob(bytes)
            } else {
                match String::from_utf8(bytes) {
                    Ok(text) => SqlValue::Text(text),
                    // Not UTF-8 after all: the bytes as they are.
                    Err(e) => SqlValue::Blob(e.into_bytes()),
                }
            }
        }
    }
}

fn fraction(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    }
}

/// Refuses statements that would start or end a transaction behind the host's back.
fn refuse_transaction_statement(statement: &str) -> Result<(), SqlError> {
    let keyword = first_keyword(statement);
    let refused = match keyword.as_str() {
        "BEGIN" | "START" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "XA" | "LOCK"
        | "UNLOCK" => true,
        // `SET autocommit = 0` would open a transaction at the next statement.
        "SET" => statement.to_ascii_lowercase().contains("autocommit"),
        // An executable comment (`/*! ... */`) at the start hides the statement's keyword.
        "" => {
            statement.trim_start().starts_with("/*!") || statement.trim_start().starts_with("/*M!")
        }
        _ => false,
    };
    if refused {
        Err(SqlError::InvalidStatement(
            "transaction statements are not allowed in execute: use the connection's begin, commit and rollback".into(),
        ))
    } else {
        Ok(())
    }
}

/// Whether an error leaves the connection unusable (or in an unknown state).
fn breaks_connection(error: &mysql_async::Error) -> bool {
    use mysql_async::{DriverError, Error};
    match error {
        Error::Server(e) => matches!(
            e.code,
            1053 | 1152 | 1153 | 1156 | 1157 | 1158 | 1159 | 1160 | 1161 | 1927
        ),
        Error::Driver(
            DriverError::StmtParamsMismatch { .. }
            | DriverError::StmtParamsNumberExceedsLimit { .. }
            | DriverError::MixedParams
            | DriverError::Params(_),
        ) => false,
        _ => true,
    }
}

/// Maps a driver or server error to the guest's error.
fn map_error(error: mysql_async::Error, database: &str) -> SqlError {
    use mysql_async::{DriverError, Error};
    match error {
        Error::Server(e) => {
            let message = e.message.clone();
            match (e.code, e.state.as_str()) {
                // Duplicate key, NULL in a NOT NULL column, foreign keys, CHECK.
                (_, state) if state.starts_with("23") => SqlError::ConstraintViolation(message),
                (3819 | 4025 | 1364, _) => SqlError::ConstraintViolation(message),
                // Lost connection, too many connections, server shutting down.
                (_, state) if state.starts_with("08") => SqlError::Unavailable(format!(
                    "database `{database}` is unavailable: {message}"
                )),
                (1053 | 1040 | 1203 | 1226 | 1927, _) => SqlError::Unavailable(format!(
                    "database `{database}` is unavailable: {message}"
                )),
                // Lock wait timeout, deadlock, statement killed or timed out.
                (1205 | 1213 | 1317 | 1969 | 3024, _) => SqlError::Unavailable(format!(
                    "database `{database}` is unavailable: {message}"
                )),
                // Syntax, unknown table / column, access rules, wrong argument count,
                // statement not preparable.
                (_, state) if state.starts_with("42") => SqlError::InvalidStatement(message),
                (1210 | 1295 | 1064 | 1146 | 1054, _) => SqlError::InvalidStatement(message),
                (1406 | 1153 | 1264, _) => SqlError::LimitExceeded(message),
                _ => SqlError::Other(format!("{message} (MySQL error {})", e.code)),
            }
        }
        Error::Driver(DriverError::StmtParamsMismatch { required, supplied }) => {
            SqlError::InvalidStatement(format!(
                "the statement has {required} parameter(s) (`?`) but {supplied} value(s) were given"
            ))
        }
        Error::Driver(
            e @ (DriverError::StmtParamsNumberExceedsLimit { .. }
            | DriverError::MixedParams
            | DriverError::Params(_)),
        ) => SqlError::InvalidStatement(e.to_string()),
        Error::Io(e) => SqlError::Unavailable(format!("database `{database}` is unavailable: {e}")),
        Error::Driver(e) => {
            SqlError::Unavailable(format!("database `{database}` is unavailable: {e}"))
        }
        Error::Other(e) => SqlError::Other(e.to_string()),
        Error::Url(e) => SqlError::InvalidConfig(e.to_string()),
    }
}
