//! The Redis backend against a real server: `WEDGE_TEST_REDIS_URL` (started by
//! `scripts/services.sh`). Tests that kill connections or stop a server start their own
//! `redis-server` (installed by the same script).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::key_value::store::HostBucket as _;
use crate::key_value::tests::{Harness, conformance, h, other, unique_scope};
use crate::key_value::{KeyValueLimits, atomics::Host as _};

fn redis_url() -> String {
    match std::env::var("WEDGE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "set WEDGE_TEST_REDIS_URL: run `eval \"$(scripts/services.sh start)\"` (scripts/test.sh does this)"
        ),
    }
}

fn backend(url: &str) -> Arc<RedisKeyValue> {
    Arc::new(RedisKeyValue::new(url, 4).expect("a valid URL"))
}

/// A plain connection of the test's own, beside the backend's pool.
async fn admin(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test Redis")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A `redis-server` of the test's own on `port`, killed when dropped.
struct OwnServer(Child);

impl OwnServer {
    async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server is not on PATH: run `eval \"$(scripts/services.sh start)\"`, which installs it",
            );
        let server = Self(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn redis_conformance() {
    conformance::run_all(backend(&redis_url())).await;
}

#[tokio::test]
async fn redis_concurrent_writers_never_pass_max_keys() {
    conformance::concurrent_max_keys(backend(&redis_url())).await;
}

#[tokio::test]
async fn redis_bucket_is_one_hash_per_scope_and_store() {
    let url = redis_url();
    let kv = backend(&url);
    let scope = unique_scope("layout");
    let id = BucketId::new(&scope, "cache").expect("valid names");
    kv.set(&id, "k".into(), vec![0, 1, 255], 10)
        .await
        .expect("set");
    let mut conn = admin(&url).await;
    let hash = format!("wedge:kv:{scope}:cache");
    let value: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(&hash)
        .arg("k")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    assert_eq!(value, Some(vec![0, 1, 255]));
    let _: i64 = redis::cmd("DEL")
        .arg(&hash)
        .query_async(&mut conn)
        .await
        .expect("DEL");
}

#[tokio::test]
async fn redis_reconnects_after_its_connections_are_killed() {
    // A server of its own: `CLIENT KILL` on the shared one would hit the other tests too.
    let port = free_port();
    let _server = OwnServer::start(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let kv = backend(&url);
    let mut harness = Harness::new(
        kv,
        KeyValueLimits::default(),
        &unique_scope("kill"),
        &["cache"],
    );
    let b = harness.open("cache").await;
    let mut v = harness.view();
    // Open every pooled connection.
    for i in 0..8 {
        v.set(h(&b), format!("k{i}"), b"v".to_vec())
            .await
            .expect("set");
    }
    let mut admin = admin(&url).await;
    let kill = || {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes");
        cmd
    };
    let killed: i64 = kill().query_async(&mut admin).await.expect("CLIENT KILL");
    assert!(killed >= 1, "no connection was killed");
    // Idempotent calls are retried on a new connection: the first call after the kill works.
    assert_eq!(
        v.get(h(&b), "k0".into()).await.ok(),
        Some(Some(b"v".to_vec()))
    );
    for i in 0..8 {
        assert_eq!(v.exists(h(&b), format!("k{i}")).await.ok(), Some(true));
    }

    // `increment` is not retried (it might count twice); the call after it works.
    assert_eq!(v.increment(h(&b), "n".into(), 1).await.ok(), Some(1));
    let _: i64 = kill().query_async(&mut admin).await.expect("CLIENT KILL");
    let first = v.increment(h(&b), "n".into(), 1).await;
    let second = v
        .increment(h(&b), "n".into(), 1)
        .await
        .expect("increment after a reconnect");
    match first {
        Ok(value) => assert_eq!((value, second), (2, 3)),
        Err(err) => {
            assert!(other(err).contains("`cache` is unavailable"));
            assert_eq!(second, 2, "the failed increment was applied");
        }
    }
}

#[tokio::test]
async fn redis_server_down_fails_fast_and_comes_back() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let kv = Arc::new(RedisKeyValue::new(&url, 2).expect("URL"));
    let limits = KeyValueLimits {
        timeout: Duration::from_secs(2),
        ..KeyValueLimits::default()
    };
    let mut harness = Harness::new(kv, limits, "acme", &["cache"]);
    // Nothing listens yet: `open` is lazy and works, calls fail quickly.
    let b = harness.open("cache").await;
    let mut v = harness.view();
    let started = Instant::now();
    let err = other(v.get(h(&b), "k".into()).await.expect_err("nothing listens"));
    assert!(
        err.starts_with("key-value store `cache` is unavailable: "),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    let server = OwnServer::start(port).await;
    v.set(h(&b), "k".into(), b"1".to_vec())
        .await
        .expect("set once the server is up");
    v.set(h(&b), "k2".into(), b"2".to_vec())
        .await
        .expect("set on the second connection");

    server.stop();
    let started = Instant::now();
    assert!(v.get(h(&b), "k".into()).await.is_err());
    assert!(v.set(h(&b), "k".into(), b"x".to_vec()).await.is_err());
    assert!(v.increment(h(&b), "n".into(), 1).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );

    // Same port, a fresh server (empty: it keeps nothing): the next call works.
    let _server = OwnServer::start(port).await;
    assert_eq!(v.get(h(&b), "k".into()).await.ok(), Some(None));
    v.set(h(&b), "k".into(), b"back".to_vec())
        .await
        .expect("set after the restart");
    assert_eq!(v.increment(h(&b), "n".into(), 4).await.ok(), Some(4));
    assert_eq!(
        v.get(h(&b), "k".into()).await.ok(),
        Some(Some(b"back".to_vec()))
    );
}

#[tokio::test]
async fn redis_unreachable_host_is_bounded_by_the_store_timeout() {
    // A TEST-NET-1 address: packets go nowhere (or are refused at once, depending on the
    // network); either way the call ends within the store's timeout.
    let kv = Arc::new(RedisKeyValue::new("redis://192.0.2.1:6379", 1).expect("URL"));
    let limits = KeyValueLimits {
        timeout: Duration::from_millis(300),
        ..KeyValueLimits::default()
    };
    let mut harness = Harness::new(kv, limits, "acme", &["cache"]);
    let b = harness.open("cache").await;
    let started = Instant::now();
    let err = other(
        harness
            .view()
            .get(h(&b), "k".into())
            .await
            .expect_err("unreachable"),
    );
    assert!(err.contains("`cache` is unavailable"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn redis_bad_url_is_a_config_error() {
    for url in ["", "http://localhost", "redis://:99999999"] {
        match RedisKeyValue::new(url, 1) {
            Err(KeyValueError::InvalidConfig(_)) => {}
            Err(err) => panic!("{url}: {err}"),
            Ok(_) => panic!("{url} parsed"),
        }
    }
    assert!(RedisKeyValue::new("redis://127.0.0.1:6379/0", 0).is_ok());
}
