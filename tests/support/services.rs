//! The real servers behind the server backends (Redis, MariaDB), as `scripts/services.sh start`
//! runs them and announces them in `WEDGE_TEST_REDIS_URL` and `WEDGE_TEST_MYSQL_URL`.

#![allow(dead_code)]

use std::process::Command;

/// The URL in `var`; without it the test fails, saying how to start the servers.
pub fn service_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "set {var}: run `eval \"$(scripts/services.sh start)\"` first (scripts/test.sh does this); these tests need the real server"
        )
    })
}

pub fn redis_url() -> String {
    service_url("WEDGE_TEST_REDIS_URL")
}

pub fn mysql_url() -> String {
    service_url("WEDGE_TEST_MYSQL_URL")
}

/// The test MariaDB's URL with another database (one the test creates with [`mariadb`]).
pub fn mysql_url_for(database: &str) -> String {
    let url = mysql_url();
    match url.rfind('/') {
        Some(slash) => format!("{}/{database}", &url[..slash]),
        None => panic!("WEDGE_TEST_MYSQL_URL has no database: {url}"),
    }
}

/// A name no other test (or earlier run against the same servers) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}{}{}",
        nanos % 1_000_000_000_000,
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs SQL on the test MariaDB with its command-line client; returns what it printed
/// (without column names).
pub fn mariadb(sql: &str) -> String {
    let url = mysql_url();
    let rest = url.trim_start_matches("mysql://");
    let (credentials, rest) = rest.split_once('@').expect("user in WEDGE_TEST_MYSQL_URL");
    let (user, password) = credentials.split_once(':').expect("password in the URL");
    let (host_port, _database) = rest.split_once('/').expect("database in the URL");
    let (host, port) = host_port.split_once(':').expect("port in the URL");
    let output = Command::new("mariadb")
        .args(["--no-defaults", "-N", "-h", host, "-P", port, "-u", user])
        .arg(format!("-p{password}"))
        .args(["-e", sql])
        .output()
        .expect("the mariadb client (installed by scripts/services.sh start)");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
