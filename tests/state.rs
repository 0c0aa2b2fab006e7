//! Stateful functions end to end: `wasi:keyvalue` and `wedge:sql` through a real `wedge serve`,
//! on the embedded SQLite backends and on real Redis and MariaDB servers (started by
//! `scripts/services.sh`, which scripts/test.sh runs first).
//!
//! The guest is `examples/rust/http-state` (one action per request, every outcome written in the
//! answer); the language examples (orders, counter) are tested in tests/state_examples.rs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::server::{Reply, Server, get, send};
use support::services::{mariadb, mysql_url, mysql_url_for, redis_url, unique};
use support::status;

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Servers,
}

/// A runtime config file that puts `stores` in Redis and `databases` in MariaDB (or, for
/// the embedded backend, only sets their limits), plus extra text.
fn runtime_config(
    dir: &Path,
    backend: Backend,
    stores: &[&str],
    databases: &[&str],
    extra: &str,
) -> PathBuf {
    let mut text = String::new();
    for store in stores {
        text.push_str(&format!("[key_value_store.{store}]\n"));
        if let Backend::Servers = backend {
            text.push_str(&format!("type = \"redis\"\nurl = \"{}\"\n", redis_url()));
        }
        text.push('\n');
    }
    for database in databases {
        text.push_str(&format!("[sql_database.{database}]\n"));
        if let Backend::Servers = backend {
            text.push_str(&format!("type = \"mysql\"\nurl = \"{}\"\n", mysql_url()));
        }
        text.push('\n');
    }
    text.push_str(extra);
    let path = dir.join(format!("runtime-{}.toml", unique("")));
    std::fs::write(&path, text).unwrap();
    path
}

fn state_function(name: &str, route: &str, stores: &[&str], databases: &[&str]) -> String {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[function]]\nname = \"{name}\"\nsource = \"{{guests}}/http-state.wasm\"\nroute = \"{route}\"\ntimeout = \"10s\"\nkey_value_stores = [{}]\nsql_databases = [{}]\n\n",
        list(stores),
        list(databases)
    )
}

fn post(url: &str, body: &[u8]) -> Reply {
    send("POST", url, &[], body)
}

fn ok(reply: Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// An answer that is the guest's error value (the function answered; nothing trapped).
fn guest_error(reply: Reply) -> String {
    assert_eq!(reply.status, 500, "{}", reply.text());
    let text = reply.text();
    assert!(
        text.starts_with("error: "),
        "not a guest error value: {text}"
    );
    text
}

fn key_value_works_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    // Unique store names: on Redis, tests (and earlier runs) share one server.
    let main = unique("kv");
    let small = unique("small");
    let config = runtime_config(dir.path(), backend, &[&main, &small], &[], "");
    // `small` gets tight limits; the limits table is the one the store line opened.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("[key_value_store.{small}]\n"),
        &format!("[key_value_store.{small}]\nmax_keys = 3\nmax_value_size = \"16B\"\nmax_key_size = \"8B\"\n"),
    );
    std::fs::write(&config, text).unwrap();
    let manifest = state_function("state", "/s", &[&main, &small], &[])
        + &state_function("sibling", "/sibling", &[&main], &[]);
    let server = Server::start(&manifest, &["--runtime-config", config.to_str().unwrap()]);
    let url = |action: &str, query: &str| server.url(&format!("/s/{action}?{query}"));
    let m = format!("store={main}");

    // Plain operations.
    assert_eq!(get(&url("kv-get", &format!("{m}&key=a"))).status, 404);
    assert_eq!(
        ok(post(&url("kv-set", &format!("{m}&key=a")), b"apple")),
        "ok"
    );
    assert_eq!(ok(get(&url("kv-get", &format!("{m}&key=a")))), "apple");
    assert_eq!(ok(get(&url("kv-exists", &format!("{m}&key=a")))), "true");
    assert_eq!(ok(get(&url("kv-incr", &format!("{m}&key=n&by=5")))), "5");
    assert_eq!(ok(get(&url("kv-incr", &format!("{m}&key=n&by=2")))), "7");
    let error = guest_error(get(&url("kv-incr", &format!("{m}&key=a&by=1"))));
    assert!(error.contains("other"), "{error}");
    assert_eq!(
        ok(get(&url("kv-set-many", &format!("{m}&prefix=k&n=3")))),
        "ok"
    );
    assert_eq!(
        ok(get(&url("kv-get-many", &format!("{m}&keys=k0,k2,zz")))),
        "k0=v\nk2=v\nzz"
    );
    assert_eq!(ok(get(&url("kv-keys", &m))), "a\nk0\nk1\nk2\nn");
    assert_eq!(ok(get(&url("kv-delete", &format!("{m}&key=k1")))), "ok");
    assert_eq!(ok(get(&url("kv-exists", &format!("{m}&key=k1")))), "false");
    // Binary-safe values, and a value with every byte.
    let all: Vec<u8> = (0..=255u8).collect();
    assert_eq!(
        ok(post(&url("kv-set", &format!("{m}&key=bin")), &all)),
        "ok"
    );
    let reply = get(&url("kv-get", &format!("{m}&key=bin")));
    assert_eq!(reply.status, 200);
    assert_eq!(String::from_utf8_lossy(&all), reply.text());

    // The app's functions share the app's stores.
    let sibling = server.url(&format!("/sibling/kv-get?{m}&key=a"));
    assert_eq!(ok(get(&sibling)), "apple");
    // A store the function is not granted: access-denied, whatever exists.
    let denied = server.url(&format!("/sibling/kv-get?store={small}&key=a"));
    assert_eq!(guest_error(get(&denied)), "error: access-denied");
    let never = url("kv-get", "store=nosuchstore&key=a");
    assert_eq!(guest_error(get(&never)), "error: access-denied");

    // Limits: an error value naming the limit, and nothing written.
    let s = format!("store={small}");
    let error = guest_error(post(&url("kv-set", &format!("{s}&key=a")), &[b'x'; 17]));
    assert!(error.contains("max_value_size"), "{error}");
    assert_eq!(get(&url("kv-get", &format!("{s}&key=a"))).status, 404);
    let error = guest_error(post(&url("kv-set", &format!("{s}&key=123456789")), b"x"));
    assert!(error.contains("max_key_size"), "{error}");
    for key in ["a", "b", "c"] {
        assert_eq!(
            ok(post(&url("kv-set", &format!("{s}&key={key}")), b"x")),
            "ok"
        );
    }
    // Overwriting an existing key is not a new key.
    assert_eq!(ok(post(&url("kv-set", &format!("{s}&key=a")), b"y")), "ok");
    let error = guest_error(post(&url("kv-set", &format!("{s}&key=d")), b"x"));
    assert!(error.contains("max_keys"), "{error}");
    assert_eq!(ok(get(&url("kv-delete", &format!("{s}&key=c")))), "ok");
    // A batch that would pass the limit writes none of its keys.
    let error = guest_error(get(&url("kv-set-many", &format!("{s}&prefix=p&n=2"))));
    assert!(error.contains("max_keys"), "{error}");
    let last = get(&url("kv-keys", &s));
    let id = last
        .header("x-wedge-request-id")
        .unwrap_or_default()
        .to_string();
    assert_eq!(ok(last), "a\nb");
    // The function answered every time: nothing trapped, nothing was logged as a trap (the
    // log is complete once the last request's line is in it).
    let log = server.wait_for_line(|l| l.contains(&id) && l.contains("wedge::request"));
    assert!(log.contains(&id), "{log}");
    assert!(!log.contains("trapped"), "{log}");
}

#[test]
fn key_value_on_embedded_sqlite() {
    key_value_works_on(Backend::Embedded);
}

#[test]
fn key_value_on_redis() {
    key_value_works_on(Backend::Servers);
}

/// Deploys `name` over the API with `config` (JSON), as a tenant of its own.
fn deploy(server: &Server, data: &Path, name: &str, config: &str, wasm: &[u8]) -> Reply {
    let token = std::fs::read_to_string(data.join("api-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let (content_type, body) = support::server::multipart(config, wasm);
    send(
        "PUT",
        &server.url(&format!("/_wedge/api/v1/functions/{name}")),
        &[("authorization", &auth), ("content-type", &content_type)],
        &body,
    )
}

fn state_wasm() -> Vec<u8> {
    std::fs::read(support::guest("http-state.wasm")).unwrap()
}

fn tenants_never_share_a_store(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The same store and database names for everyone: the scope keeps them apart.
    let store = unique("shared");
    let database = unique("db");
    let config = runtime_config(dir.path(), backend, &[&store], &[], "");
    let manifest = state_function("app-fn", "/app", &[&store], &[&database]);
    let server = Server::start(
        &manifest,
        &[
            "--data",
            data.to_str().unwrap(),
            "--runtime-config",
            config.to_str().unwrap(),
        ],
    );
    let grants = format!(r#"{{"key_value_stores": ["{store}"], "sql_databases": ["{database}"]}}"#);
    for tenant in ["tenant-a", "tenant-b"] {
        let reply = deploy(&server, &data, tenant, &grants, &state_wasm());
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    let kv =
        |who: &str, action: &str| server.url(&format!("/{who}/{action}?store={store}&key=secret"));
    assert_eq!(ok(post(&kv("tenant-a", "kv-set"), b"a's data")), "ok");
    assert_eq!(ok(post(&kv("app", "kv-set"), b"the app's data")), "ok");
    assert_eq!(ok(get(&kv("tenant-a", "kv-get"))), "a's data");
    assert_eq!(ok(get(&kv("app", "kv-get"))), "the app's data");
    assert_eq!(get(&kv("tenant-b", "kv-get")).status, 404);
    let keys = server.url(&format!("/tenant-b/kv-keys?store={store}"));
    assert_eq!(ok(get(&keys)), "");

    // SQL on the embedded backend: each scope has its own database file.
    if let Backend::Embedded = backend {
        let sql = |who: &str| server.url(&format!("/{who}/sql?db={database}"));
        ok(post(&sql("tenant-a"), b"CREATE TABLE notes (body TEXT)"));
        ok(post(&sql("tenant-a"), b"INSERT INTO notes VALUES ('mine')"));
        let error = guest_error(post(&sql("tenant-b"), b"SELECT body FROM notes"));
        assert!(error.contains("invalid-statement"), "{error}");
        let error = guest_error(post(&sql("app"), b"SELECT body FROM notes"));
        assert!(error.contains("invalid-statement"), "{error}");
        // Nor can a tenant open another's file by path.
        let attach = format!(
            "ATTACH DATABASE '{}' AS other",
            data.join("state/fn-tenant-a/sql")
                .join(format!("{database}.db"))
                .display()
        );
        let error = guest_error(post(&sql("tenant-b"), attach.as_bytes()));
        assert!(error.contains("invalid-statement"), "{error}");
    }
}

#[test]
fn tenants_never_share_a_store_on_embedded_sqlite() {
    tenants_never_share_a_store(Backend::Embedded);
}

#[test]
fn tenants_never_share_a_store_on_redis() {
    tenants_never_share_a_store(Backend::Servers);
}

#[test]
fn embedded_stores_and_databases_stop_growing_at_their_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = runtime_config(
        dir.path(),
        Backend::Embedded,
        &[],
        &[],
        "[sql_database.small]\nmax_size = \"128KiB\"\n[key_value_store.tiny]\nmax_size = \"128KiB\"\n",
    );
    let manifest = state_function("state", "/s", &["tiny", "roomy"], &["small"]);
    let server = Server::start(&manifest, &["--runtime-config", config.to_str().unwrap()]);
    let sql = |params: &str| server.url(&format!("/s/sql?db=small{params}"));
    ok(post(&sql(""), b"CREATE TABLE t (b BLOB)"));
    let blob = format!("&p=b:{}", "ab".repeat(4 << 10));
    let mut stored = 0;
    let error = loop {
        let reply = post(&sql(&blob), b"INSERT INTO t VALUES (?)");
        if reply.status != 200 {
            break guest_error(reply);
        }
        stored += 1;
        assert!(stored < 64, "128 KiB holds fewer than 64 rows of 4 KiB");
    };
    assert!(
        error.contains("limit-exceeded") && error.contains("is full") && error.contains("128 KiB"),
        "{error}"
    );
    // Every acknowledged row is there, and reads still work.
    let count = ok(post(&sql(""), b"SELECT COUNT(*) FROM t"));
    assert!(
        count.contains(&stored.to_string()),
        "{count} (stored {stored})"
    );

    // A key-value store with its own limit; another store keeps the default (1 GiB).
    let value = vec![b'v'; 8 << 10];
    let set = |store: &str, key: usize| {
        post(
            &server.url(&format!("/s/kv-set?store={store}&key=k{key}")),
            &value,
        )
    };
    let mut stored = 0;
    let error = loop {
        let reply = set("tiny", stored);
        if reply.status != 200 {
            break guest_error(reply);
        }
        stored += 1;
        assert!(stored < 32, "128 KiB holds fewer than 32 values of 8 KiB");
    };
    assert!(
        error.contains("`tiny` is full") && error.contains("128 KiB"),
        "{error}"
    );
    let last = server.url(&format!("/s/kv-get?store=tiny&key=k{}", stored - 1));
    assert_eq!(ok(get(&last)).len(), 8 << 10);
    for key in 0..stored + 4 {
        assert_eq!(ok(set("roomy", key)), "ok");
    }
}

fn sql_works_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = unique("main");
    let config = runtime_config(dir.path(), backend, &[], &[&database], "");
    let manifest = state_function("state", "/s", &[], &[&database]);
    let server = Server::start(&manifest, &["--runtime-config", config.to_str().unwrap()]);
    // Tests share one MariaDB database: a table of its own.
    let table = unique("items");
    let sql = |params: &str| server.url(&format!("/s/sql?db={database}{params}"));
    let tx = |end: &str| server.url(&format!("/s/sql-tx?db={database}&end={end}&p=t:tx-{end}"));

    ok(post(
        &sql(""),
        format!(
            "CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTO_INCREMENT, name VARCHAR(64) NOT NULL UNIQUE, qty INTEGER, price DOUBLE, data BLOB)"
        )
        .replace(
            " AUTO_INCREMENT",
            if let Backend::Embedded = backend { "" } else { " AUTO_INCREMENT" },
        )
        .as_bytes(),
    ));
    // Every type, bound as parameters.
    let insert = format!("INSERT INTO {table} (name, qty, price, data) VALUES (?, ?, ?, ?)");
    let text = ok(post(
        &sql("&p=t:apple&p=i:3&p=r:1.5&p=b:00ff10"),
        insert.as_bytes(),
    ));
    assert!(text.starts_with("affected=1 last_id=1\n"), "{text}");
    let text = ok(post(&sql("&p=t:pear&p=n:&p=n:&p=n:"), insert.as_bytes()));
    assert!(text.starts_with("affected=1 last_id=2\n"), "{text}");
    let select = format!(
        "SELECT id, name, qty, price, data FROM {table} WHERE qty IS NULL OR qty > ? ORDER BY id"
    );
    let text = ok(post(&sql("&p=i:0"), select.as_bytes()));
    assert_eq!(
        text,
        "affected=0 last_id=none\ncolumns=id,name,qty,price,data\ni:1|t:apple|i:3|r:1.5|b:00ff10\ni:2|t:pear|n:|n:|n:\n"
    );
    // User data never becomes SQL: a value full of SQL is stored as that text.
    let hostile = "t:x'); DROP TABLE ".to_string() + &table + "; --";
    let text = ok(post(
        &sql(&format!(
            "&p={}&p=i:1&p=r:0&p=n:",
            hostile.replace(' ', "%20").replace(';', "%3B")
        )),
        insert.as_bytes(),
    ));
    assert!(text.starts_with("affected=1"), "{text}");
    let count = format!("SELECT COUNT(*) AS n FROM {table}");
    assert!(ok(post(&sql(""), count.as_bytes())).ends_with("i:3\n"));

    // Errors are values the guest gets, by kind.
    let error = guest_error(post(&sql("&p=t:apple&p=i:1&p=r:1&p=n:"), insert.as_bytes()));
    assert!(error.starts_with("error: constraint-violation"), "{error}");
    let error = guest_error(post(&sql(""), b"SELEKT nonsense"));
    assert!(error.starts_with("error: invalid-statement"), "{error}");
    let error = guest_error(post(
        &sql("&p=i:1"),
        format!("SELECT * FROM {table}").as_bytes(),
    ));
    assert!(error.starts_with("error: invalid-statement"), "{error}");
    let not_granted = server.url("/s/sql?db=other");
    assert_eq!(
        guest_error(post(&not_granted, b"SELECT 1")),
        "error: access-denied"
    );

    // Transactions: commit keeps, rollback and a dropped connection do not.
    let insert_one = format!("INSERT INTO {table} (name) VALUES (?)");
    for end in ["commit", "rollback", "drop"] {
        ok(post(&tx(end), insert_one.as_bytes()));
    }
    let names = format!("SELECT name FROM {table} WHERE name LIKE 'tx-%' ORDER BY name");
    assert_eq!(
        ok(post(&sql(""), names.as_bytes())),
        "affected=0 last_id=none\ncolumns=name\nt:tx-commit\n"
    );
    if let Backend::Servers = backend {
        ok(post(&sql(""), format!("DROP TABLE {table}").as_bytes()));
    }
}

#[test]
fn sql_on_embedded_sqlite() {
    sql_works_on(Backend::Embedded);
}

#[test]
fn sql_on_mariadb() {
    sql_works_on(Backend::Servers);
}

/// A Redis server of this test's own, so that it can be stopped and started again.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut redis = OwnRedis {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.restart();
        redis
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by scripts/services.sh start)");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A closed loopback port: nothing listens there.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_server_down_is_an_error_in_the_guest_and_the_next_call_after_it_returns_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = OwnRedis::start();
    // A database of this test's own, so that killing its connections touches no other test.
    let database = unique("wedge_down");
    mariadb(&format!("CREATE DATABASE {database}"));
    let mysql = mysql_url_for(&database);
    let config = dir.path().join("runtime.toml");
    std::fs::write(
        &config,
        format!(
            "[key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\ntimeout = \"1s\"\n\n\
             [key_value_store.nowhere]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\ntimeout = \"1s\"\n\n\
             [sql_database.db]\ntype = \"mysql\"\nurl = \"{mysql}\"\ntimeout = \"2s\"\n\n\
             [sql_database.nowhere]\ntype = \"mysql\"\nurl = \"mysql://wedge:wedge@127.0.0.1:{}/x\"\ntimeout = \"1s\"\n",
            redis.port,
            closed_port(),
            closed_port()
        ),
    )
    .unwrap();
    let manifest = state_function("state", "/s", &["cache", "nowhere"], &["db", "nowhere"]);
    let server = Server::start(&manifest, &["--runtime-config", config.to_str().unwrap()]);
    let set = server.url("/s/kv-set?store=cache&key=k");
    let get_k = server.url("/s/kv-get?store=cache&key=k");

    // Servers that were never there: an error value, answered within the request's deadline
    // (a 504 would mean the call hung).
    let error = guest_error(get(&server.url("/s/kv-get?store=nowhere&key=k")));
    assert!(error.contains("unavailable"), "{error}");
    let error = guest_error(post(&server.url("/s/sql?db=nowhere"), b"SELECT 1"));
    assert!(error.starts_with("error: unavailable"), "{error}");

    // Redis: up, down, up again.
    assert_eq!(ok(post(&set, b"before")), "ok");
    redis.stop();
    let error = guest_error(post(&set, b"while down"));
    assert!(error.contains("unavailable"), "{error}");
    let error = guest_error(get(&get_k));
    assert!(error.contains("unavailable"), "{error}");
    redis.restart();
    assert_eq!(ok(post(&set, b"after")), "ok");
    assert_eq!(ok(get(&get_k)), "after");

    // MariaDB: the server drops every connection wedge holds; the next call reconnects.
    let sql = server.url("/s/sql?db=db");
    ok(post(&sql, b"CREATE TABLE t (x INTEGER)"));
    ok(post(&sql, b"INSERT INTO t VALUES (1)"));
    let ids = mariadb(&format!(
        "SELECT id FROM information_schema.processlist WHERE db = '{database}'"
    ));
    assert!(
        !ids.trim().is_empty(),
        "wedge holds no connection to {database}"
    );
    for id in ids.split_whitespace() {
        mariadb(&format!("KILL CONNECTION {id}"));
    }
    let text = ok(post(&sql, b"SELECT x FROM t"));
    assert!(text.ends_with("i:1\n"), "{text}");
    mariadb(&format!("DROP DATABASE {database}"));
}

#[test]
fn a_malformed_runtime_config_or_grant_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = state_function("state", "/s", &["default"], &[]);
    let cases = [
        (
            "[key_value_store.default]\ntype = \"memcached\"\n",
            "key `type`",
        ),
        (
            "[key_value_store.default]\ntype = \"redis\"\n",
            "key `url` is missing",
        ),
        (
            "[sql_database.orders]\ntype = \"mysql\"\nurl = \"postgres://x\"\n",
            "key `url`",
        ),
        (
            "[sql_database.orders]\nmax_result_size = \"big\"\n",
            "key `max_result_size`",
        ),
        (
            "[key_value_store.default]\nmax_keys = -1\n",
            "key `max_keys`",
        ),
        ("[key_value_store.default]\npool = 3\n", "pool"),
        ("[sqlite_database.orders]\n", "sqlite_database"),
        ("[key_value_store.default\n", "runtime config"),
    ];
    for (text, needle) in cases {
        let config = dir.path().join("runtime.toml");
        std::fs::write(&config, text).unwrap();
        let (code, stderr) =
            Server::try_start(&manifest, &["--runtime-config", config.to_str().unwrap()])
                .err()
                .unwrap_or_else(|| panic!("started with {text:?}"));
        assert_eq!(code, Some(status::CONFIG), "{text:?}: {stderr}");
        assert!(stderr.contains(needle), "{text:?}: {stderr}");
        assert!(stderr.contains("runtime.toml"), "{text:?}: {stderr}");
    }
    let missing = dir.path().join("absent.toml");
    let (code, stderr) =
        Server::try_start(&manifest, &["--runtime-config", missing.to_str().unwrap()])
            .err()
            .unwrap();
    assert_eq!(code, Some(status::CONFIG), "{stderr}");
    assert!(stderr.contains("absent.toml"), "{stderr}");

    // Grants: a bad name, and state for a function that cannot import it.
    let bad_name = state_function("state", "/s", &["../etc"], &[]);
    let (code, stderr) = Server::try_start(&bad_name, &[]).err().unwrap();
    assert_eq!(code, Some(status::CONFIG), "{stderr}");
    assert!(stderr.contains("key_value_stores"), "{stderr}");
    let wagi = "[[function]]\nname = \"w\"\nsource = \"{guests}/wagi-hello.wasm\"\nroute = \"/w\"\nsql_databases = [\"orders\"]\n";
    let (code, stderr) = Server::try_start(wagi, &[]).err().unwrap();
    assert_eq!(code, Some(status::CONFIG), "{stderr}");
    assert!(
        stderr.contains("sql_databases") && stderr.contains("wagi"),
        "{stderr}"
    );
}

#[test]
fn kill_9_during_writes_loses_no_acknowledged_write() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let manifest = state_function("state", "/s", &["default"], &["main"]);
    let flags = ["--data", data.to_str().unwrap()];
    let mut server = Server::start(&manifest, &flags);
    ok(post(
        &server.url("/s/sql?db=main"),
        b"CREATE TABLE log (n INTEGER)",
    ));

    // Writers on both capabilities, each remembering what was acknowledged (a 200).
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["kv", "sql"]
        .into_iter()
        .map(|what| {
            let stop = stop.clone();
            let base = server.url("/s");
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for n in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let url = match what {
                        "kv" => format!("{base}/kv-set?store=default&key=k{n}"),
                        _ => format!("{base}/sql?db=main&p=i:{n}"),
                    };
                    let body: &[u8] = match what {
                        "kv" => b"v",
                        _ => b"INSERT INTO log VALUES (?)",
                    };
                    let agent = support::server::client();
                    match agent.post(&url).send(body) {
                        Ok(response) if response.status() == 200 => acknowledged.push(n),
                        _ => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill_hard();
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<Vec<u64>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(
        acknowledged.iter().all(|a| a.len() > 5),
        "too few writes to mean anything: {:?}",
        acknowledged.iter().map(Vec::len).collect::<Vec<_>>()
    );

    let server = Server::start(&manifest, &flags);
    let keys = ok(get(&server.url("/s/kv-keys?store=default")));
    let keys: std::collections::HashSet<&str> = keys.lines().collect();
    for n in &acknowledged[0] {
        assert!(
            keys.contains(format!("k{n}").as_str()),
            "k{n} was acknowledged and is lost"
        );
    }
    let rows = ok(post(&server.url("/s/sql?db=main"), b"SELECT n FROM log"));
    let rows: std::collections::HashSet<&str> = rows.lines().skip(2).collect();
    for n in &acknowledged[1] {
        assert!(
            rows.contains(format!("i:{n}").as_str()),
            "row {n} was acknowledged and is lost"
        );
    }
}
