//! Tests of `wedge:sql` through the generated Host traits, as a guest would call them.
//! SQLite always; MySQL against `WEDGE_TEST_MYSQL_URL` (see `mysql_url`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};

use super::mysql::MysqlSql;
use super::sqlite::SqliteSql;
use super::wit::{self, HostConnection as _, Value};
use super::*;

type Conn = Resource<SqlConnectionHandle>;

/// One request of one function.
struct Guest {
    ctx: SqlCtx,
    table: ResourceTable,
}

impl Guest {
    fn new(databases: &Arc<SqlDatabases>, scope: &str, granted: &[&str]) -> Self {
        Self::with_deadline(
            databases,
            scope,
            granted,
            Instant::now() + Duration::from_secs(60),
        )
    }

    fn with_deadline(
        databases: &Arc<SqlDatabases>,
        scope: &str,
        granted: &[&str],
        deadline: Instant,
    ) -> Self {
        let grant = SqlGrant {
            scope: crate::names::Scope::new(scope).expect("a valid scope"),
            databases: granted
                .iter()
                .map(|s| crate::names::StateName::new("database", s).expect("a valid name"))
                .collect(),
        };
        Guest {
            ctx: SqlCtx::new(databases.clone(), Arc::new(grant), deadline),
            table: ResourceTable::new(),
        }
    }

    fn view(&mut self) -> SqlCtxView<'_> {
        SqlCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }

    async fn open(&mut self, name: &str) -> Result<Conn, wit::Error> {
        self.view().open(name.to_string()).await.expect("no trap")
    }

    async fn exec(
        &mut self,
        conn: &Conn,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<wit::QueryResult, wit::Error> {
        self.view()
            .execute(borrow(conn), sql.to_string(), params)
            .await
            .expect("no trap")
    }

    /// Runs a statement that must succeed.
    async fn ok(&mut self, conn: &Conn, sql: &str, params: Vec<Value>) -> wit::QueryResult {
        match self.exec(conn, sql, params).await {
            Ok(result) => result,
            Err(e) => panic!("`{sql}` failed: {e:?}"),
        }
    }

    async fn begin(&mut self, conn: &Conn) -> Result<(), wit::Error> {
        self.view().begin(borrow(conn)).await.expect("no trap")
    }

    async fn commit(&mut self, conn: &Conn) -> Result<(), wit::Error> {
        self.view().commit(borrow(conn)).await.expect("no trap")
    }

    async fn rollback(&mut self, conn: &Conn) -> Result<(), wit::Error> {
        self.view().rollback(borrow(conn)).await.expect("no trap")
    }

    async fn close(&mut self, conn: Conn) {
        let mut view = self.view();
        wit::HostConnection::drop(&mut view, conn)
            .await
            .expect("no trap");
    }

    /// `SELECT COUNT(*) ...` as a number.
    async fn count(&mut self, conn: &Conn, sql: &str) -> i64 {
        let result = self.ok(conn, sql, vec![]).await;
        match result.rows[0].values[0] {
            Value::Integer(n) => n,
            ref other => panic!("count is {other:?}"),
        }
    }
}

fn borrow(conn: &Conn) -> Conn {
    Resource::new_borrow(conn.rep())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn values(result: &wit::QueryResult) -> Vec<Vec<Value>> {
    result.rows.iter().map(|r| r.values.clone()).collect()
}

fn sqlite_databases(dir: &std::path::Path, limits: SqlLimits) -> Arc<SqlDatabases> {
    Arc::new(SqlDatabases::new(
        Arc::new(SqliteSql::new(dir.to_path_buf())),
        limits,
    ))
}

fn sqlite() -> (tempfile::TempDir, Arc<SqlDatabases>) {
    let dir = tempfile::tempdir().unwrap();
    let databases = sqlite_databases(dir.path(), SqlLimits::default());
    (dir, databases)
}

#[track_caller]
fn assert_invalid(result: Result<wit::QueryResult, wit::Error>, needle: &str) {
    match result {
        Err(wit::Error::InvalidStatement(m)) => {
            assert!(m.contains(needle), "`{m}` does not mention `{needle}`")
        }
        other => panic!("expected invalid-statement ({needle}), got {other:?}"),
    }
}

#[track_caller]
fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, wit::Error>, database: &str) {
    match result {
        Err(wit::Error::Unavailable(m)) => assert!(
            m.contains(&format!("database `{database}` is unavailable")),
            "{m}"
        ),
        other => panic!("expected unavailable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// SQLite

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_open_needs_a_grant() {
    let (_dir, databases) = sqlite();
    let mut guest = Guest::new(&databases, "app1", &["orders"]);
    assert!(matches!(
        guest.open("other").await,
        Err(wit::Error::AccessDenied)
    ));
    assert!(guest.open("orders").await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_typed_values_both_ways() {
    let (dir, databases) = sqlite();
    let mut guest = Guest::new(&databases, "app1", &["main"]);
    let conn = guest.open("main").await.unwrap();
    assert!(dir.path().join("app1/sql/main.db").is_file());
    let created = guest
        .ok(
            &conn,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)",
            vec![],
        )
        .await;
    assert_eq!(created.rows_affected, 0);
    assert_eq!(created.last_insert_id, None);
    let row = vec![
        Value::Integer(i64::MIN),
        Value::Real(1.5),
        text("héllo 'quoted'; DROP TABLE t; --"),
        Value::Blob(vec![0, 255, 1]),
        Value::Null,
    ];
    let inserted = guest
        .ok(
            &conn,
            "INSERT INTO t (i, r, s, b, n) VALUES (?, ?, ?, ?, ?)",
            row.clone(),
        )
        .await;
    assert_eq!(inserted.rows_affected, 1);
    assert_eq!(inserted.last_insert_id, Some(1));
    let second = guest
        .ok(
            &conn,
            "INSERT INTO t (i) VALUES (?), (?)",
            vec![Value::Integer(7), Value::Integer(i64::MAX)],
        )
        .await;
    assert_eq!(second.rows_affected, 2);
    assert_eq!(second.last_insert_id, Some(3));

    let selected = guest
        .ok(
            &conn,
            "SELECT i, r, s, b, n FROM t WHERE id = ?",
            vec![Value::Integer(1)],
        )
        .await;
    assert_eq!(selected.columns, ["i", "r", "s", "b", "n"]);
    assert_eq!(values(&selected), vec![row]);
    assert_eq!(selected.rows_affected, 0);
    assert_eq!(selected.last_insert_id, None);

    let updated = guest
        .ok(
            &conn,
            "UPDATE t SET i = i + 1 WHERE i = ?",
            vec![Value::Integer(7)],
        )
        .await;
    assert_eq!(updated.rows_affected, 1);
    assert_eq!(updated.last_insert_id, None);
    // A select after the update does not report the update's count.
    let again = guest.ok(&conn, "SELECT COUNT(*) FROM t", vec![]).await;
    assert_eq!(again.rows_affected, 0);
    assert_eq!(values(&again), vec![vec![Value::Integer(3)]]);
    let deleted = guest.ok(&conn, "DELETE FROM t", vec![]).await;
    assert_eq!(deleted.rows_affected, 3);
    assert_eq!(deleted.last_insert_id, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_scopes_are_isolated() {
    let (dir, databases) = sqlite();
    let mut a = Guest::new(&databases, "app-a", &["shared"]);
    let mut b = Guest::new(&databases, "app-b", &["shared"]);
    let conn_a = a.open("shared").await.unwrap();
    let conn_b = b.open("shared").await.unwrap();
    a.ok(&conn_a, "CREATE TABLE t (v TEXT)", vec![]).await;
    a.ok(&conn_a, "INSERT INTO t VALUES ('a')", vec![]).await;
    // The same name in another scope is another file: no table t there.
    assert_invalid(
        b.exec(&conn_b, "SELECT * FROM t", vec![]).await,
        "no such table",
    );
    assert!(dir.path().join("app-a/sql/shared.db").is_file());
    assert!(dir.path().join("app-b/sql/shared.db").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_bad_names_are_refused() {
    // A grant holds checked names only, so a name that could climb out of the data dir
    // never reaches a backend; and the backend checks again where it makes a path.
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = sqlite::SqliteSql::new(dir.path().to_path_buf());
    for scope in ["../escape", "a/b", "", ".hidden", "App"] {
        assert!(crate::names::Scope::new(scope).is_err(), "{scope}");
        assert!(backend.path(scope, "db").is_err(), "{scope}");
    }
    for database in ["../x", "x/y", ".db", "X"] {
        assert!(
            crate::names::StateName::new("database", database).is_err(),
            "{database}"
        );
        assert!(backend.path("app", database).is_err(), "{database}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_is_durable_and_checks_foreign_keys() {
    let (_dir, databases) = sqlite();
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    let mode = guest.ok(&conn, "PRAGMA journal_mode", vec![]).await;
    assert_eq!(values(&mode), vec![vec![text("wal")]]);
    let sync = guest.ok(&conn, "PRAGMA synchronous", vec![]).await;
    assert_eq!(values(&sync), vec![vec![Value::Integer(2)]], "FULL");
    let fk = guest.ok(&conn, "PRAGMA foreign_keys", vec![]).await;
    assert_eq!(values(&fk), vec![vec![Value::Integer(1)]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_errors_are_typed() {
    let (_dir, databases) = sqlite();
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    guest
        .ok(
            &conn,
            "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
            vec![],
        )
        .await;
    guest
        .ok(
            &conn,
            "CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id))",
            vec![],
        )
        .await;
    guest
        .ok(&conn, "INSERT INTO p VALUES (1, 'x')", vec![])
        .await;
    for (sql, params) in [
        ("INSERT INTO p VALUES (2, 'x')", vec![]),
        (
            "INSERT INTO p VALUES (?, ?)",
            vec![Value::Integer(3), Value::Null],
        ),
        ("INSERT INTO c VALUES (1, 99)", vec![]),
    ] {
        match guest.exec(&conn, sql, params).await {
            Err(wit::Error::ConstraintViolation(m)) => assert!(!m.is_empty()),
            other => panic!("{sql}: expected constraint-violation, got {other:?}"),
        }
    }
    assert_invalid(guest.exec(&conn, "SELEC 1", vec![]).await, "syntax error");
    assert_invalid(
        guest.exec(&conn, "SELECT * FROM nope", vec![]).await,
        "no such table",
    );
    assert_invalid(
        guest
            .exec(&conn, "SELECT ?, ?", vec![Value::Integer(1)])
            .await,
        "2 parameter(s)",
    );
    assert_invalid(
        guest.exec(&conn, "SELECT 1", vec![Value::Integer(1)]).await,
        "0 parameter(s)",
    );
    assert_invalid(
        guest.exec(&conn, "SELECT 1; DROP TABLE p", vec![]).await,
        "one statement",
    );
    // The connection is still fine after all that.
    assert_eq!(guest.count(&conn, "SELECT COUNT(*) FROM p").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_guest_cannot_reach_other_files() {
    let (dir, databases) = sqlite();
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    guest.ok(&conn, "CREATE TABLE t (v TEXT)", vec![]).await;
    let other = dir.path().join("other.db");
    let other = other.to_str().unwrap();

    assert_invalid(
        guest
            .exec(&conn, "ATTACH DATABASE ? AS x", vec![text(other)])
            .await,
        "ATTACH",
    );
    assert_invalid(
        guest
            .exec(&conn, &format!("ATTACH '{other}' AS x"), vec![])
            .await,
        "ATTACH",
    );
    assert_invalid(guest.exec(&conn, "DETACH x", vec![]).await, "DETACH");
    match guest.exec(&conn, "VACUUM INTO ?", vec![text(other)]).await {
        Err(wit::Error::InvalidStatement(_)) => {}
        other => panic!("VACUUM INTO: {other:?}"),
    }
    assert!(!dir.path().join("other.db").exists());
    assert_invalid(guest.exec(&conn, "VACUUM", vec![]).await, "VACUUM");
    // Table-valued PRAGMA functions go through the same list.
    assert_invalid(
        guest
            .exec(&conn, "SELECT * FROM pragma_database_list", vec![])
            .await,
        "PRAGMA database_list",
    );
    guest
        .ok(&conn, "SELECT * FROM pragma_table_info('t')", vec![])
        .await;
    assert_invalid(
        guest
            .exec(&conn, "SELECT load_extension('/tmp/x')", vec![])
            .await,
        "load_extension",
    );
    for pragma in [
        "PRAGMA journal_mode = DELETE",
        "PRAGMA synchronous = OFF",
        "PRAGMA foreign_keys = OFF",
        "PRAGMA writable_schema = ON",
        "PRAGMA database_list",
        "PRAGMA user_version = 3",
        "PRAGMA temp_store_directory = '/tmp'",
    ] {
        assert_invalid(guest.exec(&conn, pragma, vec![]).await, "PRAGMA");
    }
    for allowed in [
        "PRAGMA table_info(t)",
        "PRAGMA table_list",
        "PRAGMA index_list(t)",
        "PRAGMA foreign_key_list(t)",
        "PRAGMA user_version",
    ] {
        guest.ok(&conn, allowed, vec![]).await;
    }
    let info = guest.ok(&conn, "PRAGMA table_info(t)", vec![]).await;
    assert_eq!(info.rows[0].values[1], text("v"));
    for tx in ["BEGIN", "COMMIT", "SAVEPOINT s", "RELEASE s", "ROLLBACK"] {
        assert_invalid(
            guest.exec(&conn, tx, vec![]).await,
            "begin, commit and rollback",
        );
    }
    // Refusals do not poison the connection.
    guest.ok(&conn, "INSERT INTO t VALUES ('ok')", vec![]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_transactions() {
    let (_dir, databases) = sqlite();
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    let other = guest.open("db").await.unwrap();
    guest
        .ok(&conn, "CREATE TABLE t (id INTEGER PRIMARY KEY)", vec![])
        .await;

    assert!(matches!(
        guest.commit(&conn).await,
        Err(wit::Error::NoTransaction)
    ));
    assert!(matches!(
        guest.rollback(&conn).await,
        Err(wit::Error::NoTransaction)
    ));

    guest.begin(&conn).await.unwrap();
    assert!(matches!(
        guest.begin(&conn).await,
        Err(wit::Error::NoTransaction)
    ));
    guest.ok(&conn, "INSERT INTO t VALUES (1)", vec![]).await;
    // Not visible elsewhere before the commit.
    assert_eq!(guest.count(&other, "SELECT COUNT(*) FROM t").await, 0);
    guest.commit(&conn).await.unwrap();
    assert_eq!(guest.count(&other, "SELECT COUNT(*) FROM t").await, 1);

    guest.begin(&conn).await.unwrap();
    guest.ok(&conn, "INSERT INTO t VALUES (2)", vec![]).await;
    guest.rollback(&conn).await.unwrap();
    assert_eq!(guest.count(&other, "SELECT COUNT(*) FROM t").await, 1);
    assert!(matches!(
        guest.commit(&conn).await,
        Err(wit::Error::NoTransaction)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_dropping_a_connection_rolls_back() {
    let (_dir, databases) = sqlite();
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    guest
        .ok(&conn, "CREATE TABLE t (id INTEGER PRIMARY KEY)", vec![])
        .await;
    guest.close(conn).await;

    let conn = guest.open("db").await.unwrap();
    guest.begin(&conn).await.unwrap();
    guest.ok(&conn, "INSERT INTO t VALUES (1)", vec![]).await;
    guest.close(conn).await;

    // The row is absent and its lock released: the same key can be inserted.
    let conn = guest.open("db").await.unwrap();
    guest.ok(&conn, "INSERT INTO t VALUES (1)", vec![]).await;
    assert_eq!(guest.count(&conn, "SELECT COUNT(*) FROM t").await, 1);

    // The request ending (its table dropped) rolls back too.
    let mut request = Guest::new(&databases, "app", &["db"]);
    let conn2 = request.open("db").await.unwrap();
    request.begin(&conn2).await.unwrap();
    request.ok(&conn2, "INSERT INTO t VALUES (2)", vec![]).await;
    drop(request);
    guest.ok(&conn, "INSERT INTO t VALUES (2)", vec![]).await;
    assert_eq!(guest.count(&conn, "SELECT COUNT(*) FROM t").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_result_size_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        max_result_size: 10_000,
        ..SqlLimits::default()
    };
    let databases = sqlite_databases(dir.path(), limits);
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    let big = guest
        .exec(
            &conn,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT i, 'some text' FROM n",
            vec![],
        )
        .await;
    match big {
        Err(wit::Error::LimitExceeded(m)) => assert!(m.contains("10000 bytes"), "{m}"),
        other => panic!("expected limit-exceeded, got {other:?}"),
    }
    let small = guest
        .ok(&conn, "SELECT ?", vec![Value::Blob(vec![7; 9_000])])
        .await;
    assert_eq!(small.rows.len(), 1);
    // Nor can a value larger than a result be made (SQLite's own limit is 1 GB).
    match guest
        .exec(&conn, "SELECT length(randomblob(1000000000))", vec![])
        .await
    {
        Err(wit::Error::LimitExceeded(m)) => assert!(m.contains("too big"), "{m}"),
        other => panic!("expected limit-exceeded, got {other:?}"),
    }
}

/// Inserts rows of 8 KiB into `t` until a statement fails: how many went in, and the error.
async fn fill(guest: &mut Guest, conn: &Conn) -> (i64, wit::Error) {
    let mut stored = 0;
    loop {
        let row = vec![Value::Blob(vec![7; 8 << 10])];
        match guest.exec(conn, "INSERT INTO t (b) VALUES (?)", row).await {
            Ok(_) => stored += 1,
            Err(error) => return (stored, error),
        }
        assert!(stored < 100, "256 KiB holds fewer than 100 rows of 8 KiB");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_files_do_not_grow_past_their_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        max_size: 256 << 10,
        ..SqlLimits::default()
    };
    let databases = sqlite_databases(dir.path(), limits.clone());
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    guest
        .ok(
            &conn,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)",
            vec![],
        )
        .await;
    let row = || vec![Value::Blob(vec![7; 8 << 10])];
    let (stored, full) = fill(&mut guest, &conn).await;
    match full {
        wit::Error::LimitExceeded(m) => assert!(
            m.contains("database `db` is full") && m.contains("256 KiB") && m.contains("max_size"),
            "{m}"
        ),
        other => panic!("expected limit-exceeded, got {other:?}"),
    }
    assert!(stored > 10, "only {stored} rows fit");
    // The refused insert changed nothing; every acknowledged row is there.
    assert_eq!(guest.count(&conn, "SELECT COUNT(*) FROM t").await, stored);
    let file = dir.path().join("app/sql/db.db");
    assert!(std::fs::metadata(&file).unwrap().len() <= 256 << 10);

    // Deleting rows makes room again.
    guest
        .ok(&conn, "DELETE FROM t WHERE id % 2 = 0", vec![])
        .await;
    let left = guest.count(&conn, "SELECT COUNT(*) FROM t").await;
    guest.ok(&conn, "INSERT INTO t (b) VALUES (?)", row()).await;
    let left = left + 1;

    // In a transaction: SQLite may roll the whole transaction back when the file is full.
    // The guest is told so at its next call, and never finds half of it kept.
    guest.begin(&conn).await.unwrap();
    let mut added = 0;
    while guest
        .exec(&conn, "INSERT INTO t (b) VALUES (?)", row())
        .await
        .is_ok()
    {
        added += 1;
        assert!(added < 100);
    }
    assert!(added > 0, "deleted rows made room");
    match guest.commit(&conn).await {
        Ok(()) => assert_eq!(
            guest.count(&conn, "SELECT COUNT(*) FROM t").await,
            left + added
        ),
        Err(wit::Error::Unavailable(m)) => {
            assert!(m.contains("rolled back"), "{m}");
            assert_eq!(guest.count(&conn, "SELECT COUNT(*) FROM t").await, left);
        }
        Err(other) => panic!("commit after a full file: {other:?}"),
    }
    // Either way the connection is usable, outside a transaction.
    guest.begin(&conn).await.unwrap();
    guest.rollback(&conn).await.unwrap();

    // A new server's connections keep the limit.
    let databases = sqlite_databases(dir.path(), limits);
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    let (_, full) = fill(&mut guest, &conn).await;
    assert!(matches!(full, wit::Error::LimitExceeded(_)), "{full:?}");
    drop(guest);
    assert!(std::fs::metadata(&file).unwrap().len() <= 256 << 10);
}

const FOREVER: &str =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT COUNT(*) FROM n";

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_calls_are_bounded_by_the_timeout_and_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        timeout: Duration::from_millis(300),
        ..SqlLimits::default()
    };
    let databases = sqlite_databases(dir.path(), limits);
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    let start = Instant::now();
    assert_unavailable(guest.exec(&conn, FOREVER, vec![]).await, "db");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The connection works again at once.
    guest.ok(&conn, "SELECT 1", vec![]).await;

    // The request's deadline cuts a call shorter than the timeout.
    let databases = sqlite_databases(dir.path(), SqlLimits::default());
    let mut guest = Guest::with_deadline(
        &databases,
        "app",
        &["db"],
        Instant::now() + Duration::from_millis(600),
    );
    let conn = guest.open("db").await.unwrap();
    let start = Instant::now();
    assert_unavailable(guest.exec(&conn, FOREVER, vec![]).await, "db");
    assert!(start.elapsed() < Duration::from_secs(2));
    // Past the deadline (minus the margin), nothing runs.
    tokio::time::sleep(Duration::from_millis(600)).await;
    match guest.exec(&conn, "SELECT 1", vec![]).await {
        Err(wit::Error::Unavailable(m)) => assert!(m.contains("no time left"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_a_failure_inside_a_transaction_aborts_it() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        timeout: Duration::from_millis(300),
        ..SqlLimits::default()
    };
    let databases = sqlite_databases(dir.path(), limits);
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let conn = guest.open("db").await.unwrap();
    guest
        .ok(&conn, "CREATE TABLE t (id INTEGER PRIMARY KEY)", vec![])
        .await;
    guest.begin(&conn).await.unwrap();
    guest.ok(&conn, "INSERT INTO t VALUES (1)", vec![]).await;
    assert_unavailable(guest.exec(&conn, FOREVER, vec![]).await, "db");
    // The host rolled back: nothing more runs in that transaction, commit fails.
    match guest.exec(&conn, "INSERT INTO t VALUES (2)", vec![]).await {
        Err(wit::Error::Unavailable(m)) => assert!(m.contains("rolled back"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        guest.commit(&conn).await,
        Err(wit::Error::Unavailable(_))
    ));
    assert_eq!(guest.count(&conn, "SELECT COUNT(*) FROM t").await, 0);

    // rollback acknowledges it.
    guest.begin(&conn).await.unwrap();
    assert_unavailable(guest.exec(&conn, FOREVER, vec![]).await, "db");
    guest.rollback(&conn).await.unwrap();
    guest.ok(&conn, "INSERT INTO t VALUES (3)", vec![]).await;
    assert_eq!(guest.count(&conn, "SELECT COUNT(*) FROM t").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_writers_wait_for_each_other_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SqlLimits {
        timeout: Duration::from_millis(300),
        ..SqlLimits::default()
    };
    let databases = sqlite_databases(dir.path(), limits);
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let a = guest.open("db").await.unwrap();
    let b = guest.open("db").await.unwrap();
    guest
        .ok(&a, "CREATE TABLE t (id INTEGER PRIMARY KEY)", vec![])
        .await;
    guest.begin(&a).await.unwrap();
    guest.ok(&a, "INSERT INTO t VALUES (1)", vec![]).await;
    let start = Instant::now();
    assert_unavailable(
        guest.exec(&b, "INSERT INTO t VALUES (2)", vec![]).await,
        "db",
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    // Readers are not blocked by the writer (WAL).
    assert_eq!(guest.count(&b, "SELECT COUNT(*) FROM t").await, 0);
    guest.commit(&a).await.unwrap();
    guest.ok(&b, "INSERT INTO t VALUES (2)", vec![]).await;
    assert_eq!(guest.count(&b, "SELECT COUNT(*) FROM t").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_read_write_transactions_all_commit_in_turn() {
    let (_dir, databases) = sqlite();
    let mut setup = Guest::new(&databases, "app", &["db"]);
    let conn = setup.open("db").await.unwrap();
    setup
        .ok(
            &conn,
            "CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
            vec![],
        )
        .await;
    setup.ok(&conn, "INSERT INTO c VALUES (1, 0)", vec![]).await;
    // 32 requests at once, each a read then a write in one transaction (the orders example's
    // PUT). Each one waits for its turn, so none sees a stale read and none fails.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let databases = databases.clone();
            tokio::spawn(async move {
                let mut guest = Guest::new(&databases, "app", &["db"]);
                let conn = guest.open("db").await.unwrap();
                guest.begin(&conn).await.expect("begin");
                let n = guest.count(&conn, "SELECT n FROM c WHERE id = 1").await;
                guest
                    .ok(
                        &conn,
                        "UPDATE c SET n = ? WHERE id = 1",
                        vec![Value::Integer(n + 1)],
                    )
                    .await;
                guest.commit(&conn).await.expect("commit");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("every transaction commits");
    }
    assert_eq!(setup.count(&conn, "SELECT n FROM c WHERE id = 1").await, 32);
    // Statements outside a transaction queue the same way when they may write.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let databases = databases.clone();
            tokio::spawn(async move {
                let mut guest = Guest::new(&databases, "app", &["db"]);
                let conn = guest.open("db").await.unwrap();
                guest
                    .ok(
                        &conn,
                        "INSERT INTO c VALUES (?, 0)",
                        vec![Value::Integer(100 + i)],
                    )
                    .await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("every insert succeeds");
    }
    assert_eq!(setup.count(&conn, "SELECT COUNT(*) FROM c").await, 17);
}

#[test]
fn sqlite_statements_that_may_write_queue_for_the_writers_turn() {
    use super::sqlite::may_write;
    for read in [
        "SELECT 1",
        "  select * from t",
        "(SELECT 1)",
        "VALUES (1)",
        "explain select 1",
    ] {
        assert!(!may_write(read), "{read}");
    }
    for write in [
        "INSERT INTO t VALUES (1)",
        "update t set a = 1",
        "CREATE TABLE IF NOT EXISTS t (a)",
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
        "DELETE FROM t",
        "",
    ] {
        assert!(may_write(write), "{write}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_open_connections_per_request_are_limited() {
    let (_dir, databases) = sqlite();
    let mut guest = Guest::new(&databases, "app", &["db"]);
    let mut conns = Vec::new();
    for _ in 0..MAX_OPEN_CONNECTIONS {
        conns.push(guest.open("db").await.unwrap());
    }
    assert!(matches!(
        guest.open("db").await,
        Err(wit::Error::LimitExceeded(_))
    ));
    let first = conns.remove(0);
    guest.close(first).await;
    assert!(guest.open("db").await.is_ok());
}

// ---------------------------------------------------------------------------------------
// MySQL / MariaDB

/// The test server's URL; a MySQL test fails (never passes silently) without one.
fn mysql_url() -> String {
    match std::env::var("WEDGE_TEST_MYSQL_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "set WEDGE_TEST_MYSQL_URL: run `eval \"$(scripts/services.sh start)\"` (scripts/test.sh does this)"
        ),
    }
}

fn mysql_with(limits: SqlLimits, pool_size: usize) -> Arc<SqlDatabases> {
    let dir = std::env::temp_dir();
    let mut databases = SqlDatabases::new(Arc::new(SqliteSql::new(dir)), SqlLimits::default());
    let backend = MysqlSql::new(&mysql_url(), pool_size).unwrap();
    databases.insert("orders".into(), Arc::new(backend), limits);
    Arc::new(databases)
}

fn mysql() -> Arc<SqlDatabases> {
    mysql_with(SqlLimits::default(), 8)
}

/// A table name of this test run.
fn table(test: &str) -> String {
    format!("sqltest_{test}_{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_typed_values_both_ways() {
    let databases = mysql();
    let mut guest = Guest::new(&databases, "app", &["orders"]);
    let conn = guest.open("orders").await.unwrap();
    let t = table("types");
    guest
        .ok(&conn, &format!("DROP TABLE IF EXISTS {t}"), vec![])
        .await;
    guest
        .ok(
            &conn,
            &format!(
                "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, \
                 f FLOAT, d DOUBLE, dec_ DECIMAL(12,3), s VARCHAR(100), tx TEXT, b BLOB, vb VARBINARY(10), \
                 dt DATE, dtt DATETIME(6), tm TIME, n INT NULL, e ENUM('x','y'))"
            ),
            vec![],
        )
        .await;
    let inserted = guest
        .ok(
            &conn,
            &format!(
                "INSERT INTO {t} (i, u, f, d, dec_, s, tx, b, vb, dt, dtt, tm, n, e) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            vec![
                Value::Integer(i64::MIN),
                text("18446744073709551615"),
                Value::Real(1.5),
                Value::Real(2.25),
                text("12345.678"),
                text("héllo 'quoted'; DROP TABLE x; --"),
                text("long text"),
                Value::Blob(vec![0, 255, 1]),
                Value::Blob(vec![9, 8]),
                text("2024-02-29"),
                text("2024-02-29 13:14:15.123456"),
                text("-838:59:59"),
                Value::Null,
                text("y"),
            ],
        )
        .await;
    assert_eq!(inserted.rows_affected, 1);
    assert_eq!(inserted.last_insert_id, Some(1));
    guest
        .ok(
            &conn,
            &format!("INSERT INTO {t} (i, u, dtt, tm) VALUES (?, ?, ?, ?)"),
            vec![
                Value::Integer(5),
                Value::Integer(7),
                text("2024-01-02 03:04:05"),
                text("12:00:00"),
            ],
        )
        .await;
    let result = guest
        .ok(
            &conn,
            &format!(
                "SELECT i, u, f, d, dec_, s, tx, b, vb, dt, dtt, tm, n, e FROM {t} ORDER BY id"
            ),
            vec![],
        )
        .await;
    assert_eq!(
        result.columns,
        [
            "i", "u", "f", "d", "dec_", "s", "tx", "b", "vb", "dt", "dtt", "tm", "n", "e"
        ]
    );
    assert_eq!(result.rows_affected, 0);
    let rows = values(&result);
    assert_eq!(
        rows[0],
        vec![
            Value::Integer(i64::MIN),
            text("18446744073709551615"),
            Value::Real(1.5),
            Value::Real(2.25),
            text("12345.678"),
            text("héllo 'quoted'; DROP TABLE x; --"),
            text("long text"),
            Value::Blob(vec![0, 255, 1]),
            Value::Blob(vec![9, 8]),
            text("2024-02-29"),
            text("2024-02-29 13:14:15.123456"),
            text("-838:59:59"),
            Value::Null,
            text("y"),
        ]
    );
    assert_eq!(rows[1][0], Value::Integer(5));
    assert_eq!(rows[1][1], Value::Integer(7));
    assert_eq!(rows[1][10], text("2024-01-02 03:04:05"));
    assert_eq!(rows[1][11], text("12:00:00"));

    let updated = guest
        .ok(&conn, &format!("UPDATE {t} SET n = 1"), vec![])
        .await;
    assert_eq!(updated.rows_affected, 2);
    assert_eq!(updated.last_insert_id, None);
    guest.ok(&conn, &format!("DROP TABLE {t}"), vec![]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_is_shared_by_every_scope() {
    let databases = mysql();
    let t = table("shared");
    let mut a = Guest::new(&databases, "app-a", &["orders"]);
    let mut b = Guest::new(&databases, "app-b", &["orders"]);
    let conn_a = a.open("orders").await.unwrap();
    let conn_b = b.open("orders").await.unwrap();
    a.ok(&conn_a, &format!("DROP TABLE IF EXISTS {t}"), vec![])
        .await;
    a.ok(&conn_a, &format!("CREATE TABLE {t} (v INT)"), vec![])
        .await;
    a.ok(&conn_a, &format!("INSERT INTO {t} VALUES (1)"), vec![])
        .await;
    assert_eq!(
        b.count(&conn_b, &format!("SELECT COUNT(*) FROM {t}")).await,
        1
    );
    assert!(matches!(
        b.open("other").await,
        Err(wit::Error::AccessDenied)
    ));
    a.ok(&conn_a, &format!("DROP TABLE {t}"), vec![]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_errors_are_typed() {
    let databases = mysql();
    let t = table("errors");
    let mut guest = Guest::new(&databases, "app", &["orders"]);
    let conn = guest.open("orders").await.unwrap();
    guest
        .ok(&conn, &format!("DROP TABLE IF EXISTS {t}"), vec![])
        .await;
    guest
        .ok(
            &conn,
            &format!("CREATE TABLE {t} (id INT PRIMARY KEY, name VARCHAR(10) NOT NULL UNIQUE)"),
            vec![],
        )
        .await;
    guest
        .ok(&conn, &format!("INSERT INTO {t} VALUES (1, 'x')"), vec![])
        .await;
    for (sql, params) in [
        (format!("INSERT INTO {t} VALUES (2, 'x')"), vec![]),
        (format!("INSERT INTO {t} VALUES (1, 'y')"), vec![]),
        (
            format!("INSERT INTO {t} VALUES (?, ?)"),
            vec![Value::Integer(3), Value::Null],
        ),
    ] {
        match guest.exec(&conn, &sql, params).await {
            Err(wit::Error::ConstraintViolation(m)) => assert!(!m.is_empty()),
            other => panic!("{sql}: expected constraint-violation, got {other:?}"),
        }
    }
    match guest.exec(&conn, "SELEC 1", vec![]).await {
        Err(wit::Error::InvalidStatement(m)) => assert!(m.contains("syntax"), "{m}"),
        other => panic!("{other:?}"),
    }
    match guest
        .exec(&conn, "SELECT * FROM sqltest_nope", vec![])
        .await
    {
        Err(wit::Error::InvalidStatement(m)) => assert!(m.contains("doesn't exist"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_invalid(
        guest
            .exec(&conn, "SELECT ?, ?", vec![Value::Integer(1)])
            .await,
        "2 parameter(s)",
    );
    assert_invalid(
        guest.exec(&conn, "SELECT 1; SELECT 2", vec![]).await,
        "syntax",
    );
    for tx in [
        "BEGIN",
        "START TRANSACTION",
        " /* x */ COMMIT",
        "rollback",
        "SET autocommit = 0",
        "set session AUTOCOMMIT=0",
        "SAVEPOINT s",
        "LOCK TABLES x WRITE",
    ] {
        assert_invalid(
            guest.exec(&conn, tx, vec![]).await,
            "begin, commit and rollback",
        );
    }
    // Look-alikes are fine.
    guest
        .ok(&conn, "SET @note = 'begin a transaction'", vec![])
        .await;
    let note = guest.ok(&conn, "SELECT @note", vec![]).await;
    assert_eq!(values(&note), vec![vec![text("begin a transaction")]]);
    // Still usable.
    assert_eq!(
        guest
            .count(&conn, &format!("SELECT COUNT(*) FROM {t}"))
            .await,
        1
    );
    guest.ok(&conn, &format!("DROP TABLE {t}"), vec![]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_transactions_and_drop_rolls_back() {
    let databases = mysql();
    let t = table("tx");
    let mut guest = Guest::new(&databases, "app", &["orders"]);
    let conn = guest.open("orders").await.unwrap();
    let other = guest.open("orders").await.unwrap();
    guest
        .ok(&conn, &format!("DROP TABLE IF EXISTS {t}"), vec![])
        .await;
    guest
        .ok(
            &conn,
            &format!("CREATE TABLE {t} (id INT PRIMARY KEY) ENGINE=InnoDB"),
            vec![],
        )
        .await;
    let count = format!("SELECT COUNT(*) FROM {t}");

    assert!(matches!(
        guest.commit(&conn).await,
        Err(wit::Error::NoTransaction)
    ));
    assert!(matches!(
        guest.rollback(&conn).await,
        Err(wit::Error::NoTransaction)
    ));
    guest.begin(&conn).await.unwrap();
    assert!(matches!(
        guest.begin(&conn).await,
        Err(wit::Error::NoTransaction)
    ));
    guest
        .ok(&conn, &format!("INSERT INTO {t} VALUES (1)"), vec![])
        .await;
    assert_eq!(guest.count(&other, &count).await, 0);
    guest.commit(&conn).await.unwrap();
    assert_eq!(guest.count(&other, &count).await, 1);

    guest.begin(&conn).await.unwrap();
    guest
        .ok(&conn, &format!("INSERT INTO {t} VALUES (2)"), vec![])
        .await;
    guest.rollback(&conn).await.unwrap();
    assert_eq!(guest.count(&other, &count).await, 1);

    // Dropped inside a transaction: rolled back, and its row lock released (else this
    // insert would wait for the lock until it times out).
    guest.begin(&conn).await.unwrap();
    guest
        .ok(&conn, &format!("INSERT INTO {t} VALUES (3)"), vec![])
        .await;
    guest.close(conn).await;
    guest
        .ok(&other, &format!("INSERT INTO {t} VALUES (3)"), vec![])
        .await;
    assert_eq!(guest.count(&other, &count).await, 2);

    // The request ending rolls back too.
    let mut request = Guest::new(&databases, "app", &["orders"]);
    let conn2 = request.open("orders").await.unwrap();
    request.begin(&conn2).await.unwrap();
    request
        .ok(&conn2, &format!("INSERT INTO {t} VALUES (4)"), vec![])
        .await;
    drop(request);
    guest
        .ok(&other, &format!("INSERT INTO {t} VALUES (4)"), vec![])
        .await;
    assert_eq!(guest.count(&other, &count).await, 3);
    guest.ok(&other, &format!("DROP TABLE {t}"), vec![]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_result_size_is_limited() {
    let limits = SqlLimits {
        max_result_size: 10_000,
        ..SqlLimits::default()
    };
    let databases = mysql_with(limits, 2);
    let mut guest = Guest::new(&databases, "app", &["orders"]);
    let conn = guest.open("orders").await.unwrap();
    let big = guest
        .exec(
            &conn,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) SELECT i, 'some text' FROM n",
            vec![],
        )
        .await;
    assert!(matches!(big, Err(wit::Error::LimitExceeded(_))), "{big:?}");
    // The connection goes on (the rest of the result was read away).
    let small = guest.ok(&conn, "SELECT ?", vec![text("x")]).await;
    assert_eq!(values(&small), vec![vec![text("x")]]);
}

/// The server id of the connection `conn` is pinned to.
async fn connection_id(guest: &mut Guest, conn: &Conn) -> i64 {
    guest.count(conn, "SELECT CONNECTION_ID()").await
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_recovers_from_killed_connections() {
    let databases = mysql_with(SqlLimits::default(), 2);
    let mut guest = Guest::new(&databases, "app", &["orders"]);
    let victim = guest.open("orders").await.unwrap();
    let killer = guest.open("orders").await.unwrap();
    let id = connection_id(&mut guest, &victim).await;
    assert_ne!(id, connection_id(&mut guest, &killer).await);
    guest.ok(&killer, &format!("KILL {id}"), vec![]).await;
    // The call on the killed connection fails as unavailable; the next one gets another.
    assert_unavailable(guest.exec(&victim, "SELECT 1", vec![]).await, "orders");
    let new_id = connection_id(&mut guest, &victim).await;
    assert_ne!(new_id, id);

    // A connection killed while idle in the pool is replaced before a guest sees it.
    guest.close(victim).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // the pool takes it back
    guest.ok(&killer, &format!("KILL {new_id}"), vec![]).await;
    let fresh = guest.open("orders").await.unwrap();
    guest.ok(&fresh, "SELECT 1", vec![]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_unreachable_server_fails_within_the_timeout() {
    let limits = SqlLimits {
        timeout: Duration::from_millis(500),
        ..SqlLimits::default()
    };
    // A closed port: refused at once.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // A port that accepts but never says a word (a hung server).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    for port in [closed, silent_port] {
        let mut databases = SqlDatabases::new(
            Arc::new(SqliteSql::new(std::env::temp_dir())),
            limits.clone(),
        );
        let url = format!("mysql://u:p@127.0.0.1:{port}/db");
        databases.insert(
            "orders".into(),
            Arc::new(MysqlSql::new(&url, 2).unwrap()),
            limits.clone(),
        );
        let databases = Arc::new(databases);
        let mut guest = Guest::new(&databases, "app", &["orders"]);
        let conn = guest.open("orders").await.unwrap();
        let start = Instant::now();
        assert_unavailable(guest.exec(&conn, "SELECT 1", vec![]).await, "orders");
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
        guest
            .begin(&conn)
            .await
            .expect_err("begin on a dead server");
    }
}

#[test]
fn mysql_urls_are_checked_without_repeating_them() {
    for url in [
        "http://x",
        "mysql://u:secret@host:notaport/db",
        "mysql://u:secret@host:3306",
    ] {
        match MysqlSql::new(url, 4) {
            Err(SqlError::InvalidConfig(m)) => assert!(!m.contains("secret"), "{m}"),
            Err(other) => panic!("{url}: {other:?}"),
            Ok(_) => panic!("{url}: accepted"),
        }
    }
    assert!(MysqlSql::new("mysql://u:p@127.0.0.1:3306/db", 4).is_ok());
}

#[test]
fn first_keyword_skips_comments() {
    assert_eq!(first_keyword("  -- c\n /* x */ select 1"), "SELECT");
    assert_eq!(first_keyword("# c\nCOMMIT"), "COMMIT");
    assert_eq!(first_keyword("/* open"), "");
}

#[test]
fn the_interface_links_into_a_state_that_shares_its_table() {
    struct State {
        sql: SqlCtx,
        table: ResourceTable,
    }
    impl SqlView for State {
        fn sql(&mut self) -> SqlCtxView<'_> {
            SqlCtxView {
                ctx: &mut self.sql,
                table: &mut self.table,
            }
        }
    }
    let engine = wasmtime::Engine::default();
    let mut linker = wasmtime::component::Linker::<State>::new(&engine);
    add_to_linker(&mut linker).expect("link wedge:sql");
    assert!(
        add_to_linker(&mut linker).is_err(),
        "a duplicate definition"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_a_statement_over_time_is_cut_off_and_its_transaction_rolled_back() {
    let limits = SqlLimits {
        timeout: Duration::from_millis(500),
        ..SqlLimits::default()
    };
    let databases = mysql_with(limits, 4);
    let t = table("slow");
    let mut guest = Guest::new(&databases, "app", &["orders"]);
    let conn = guest.open("orders").await.unwrap();
    let other = guest.open("orders").await.unwrap();
    guest
        .ok(&other, &format!("DROP TABLE IF EXISTS {t}"), vec![])
        .await;
    guest
        .ok(
            &other,
            &format!("CREATE TABLE {t} (id INT PRIMARY KEY) ENGINE=InnoDB"),
            vec![],
        )
        .await;

    let start = Instant::now();
    assert_unavailable(guest.exec(&conn, "SELECT SLEEP(5)", vec![]).await, "orders");
    assert!(start.elapsed() < Duration::from_millis(1500));
    // The next call runs on another server connection.
    guest.ok(&conn, "SELECT 1", vec![]).await;

    guest.begin(&conn).await.unwrap();
    guest
        .ok(&conn, &format!("INSERT INTO {t} VALUES (1)"), vec![])
        .await;
    assert_unavailable(guest.exec(&conn, "SELECT SLEEP(5)", vec![]).await, "orders");
    match guest.exec(&conn, "SELECT 1", vec![]).await {
        Err(wit::Error::Unavailable(m)) => assert!(m.contains("rolled back"), "{m}"),
        other => panic!("{other:?}"),
    }
    guest.rollback(&conn).await.unwrap();
    // The server connection was killed, not left sleeping with its row lock: the same key
    // can be inserted at once (well before the sleep would have ended).
    let start = Instant::now();
    let mut inserted = false;
    while start.elapsed() < Duration::from_secs(3) {
        match guest
            .exec(&other, &format!("INSERT INTO {t} VALUES (1)"), vec![])
            .await
        {
            Ok(_) => {
                inserted = true;
                break;
            }
            Err(wit::Error::Unavailable(_)) => {} // the kill is under way
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(inserted, "the row lock was not released");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(
        guest
            .count(&other, &format!("SELECT COUNT(*) FROM {t}"))
            .await,
        1
    );
    guest.ok(&other, &format!("DROP TABLE {t}"), vec![]).await;
}
