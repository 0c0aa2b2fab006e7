//! Tests of the host functions (through the generated `Host` traits, as a guest would call
//! them) and, in [`conformance`], the behaviour every backend must show; the backends' own
//! test modules run it against SQLite and Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};

use super::atomics::Host as _;
use super::batch::Host as _;
use super::store::{self, Host as _, HostBucket as _};
use super::*;

/// A request's state, as the gateway would hold it.
pub(crate) struct Harness {
    ctx: KeyValueCtx,
    table: ResourceTable,
}

impl Harness {
    pub(crate) fn new(
        backend: Arc<dyn KeyValueBackend>,
        limits: KeyValueLimits,
        scope: &str,
        stores: &[&str],
    ) -> Self {
        let stores_cfg = Arc::new(KeyValueStores::new(backend, limits));
        Self::with_stores(stores_cfg, scope, stores, Duration::from_secs(60))
    }

    pub(crate) fn with_stores(
        stores_cfg: Arc<KeyValueStores>,
        scope: &str,
        stores: &[&str],
        deadline_in: Duration,
    ) -> Self {
        let grant = Arc::new(KeyValueGrant {
            scope: crate::names::Scope::new(scope).expect("a valid scope"),
            stores: stores
                .iter()
                .map(|s| crate::names::StateName::new("store", s).expect("a valid store name"))
                .collect(),
        });
        Self {
            ctx: KeyValueCtx::new(stores_cfg, grant, Instant::now() + deadline_in),
            table: ResourceTable::new(),
        }
    }

    pub(crate) fn view(&mut self) -> KeyValueCtxView<'_> {
        KeyValueCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }

    /// Opens `store`, panicking on failure; the handle is borrowed by [`h`].
    pub(crate) async fn open(&mut self, store: &str) -> Resource<Bucket> {
        match self.view().open(store.to_string()).await {
            Ok(bucket) => bucket,
            Err(err) => panic!("open `{store}`: {err}"),
        }
    }
}

/// A borrowed copy of a bucket handle, as a guest passes `borrow<bucket>`.
pub(crate) fn h(bucket: &Resource<Bucket>) -> Resource<Bucket> {
    Resource::new_borrow(bucket.rep())
}

/// What the guest sees for `err`.
pub(crate) fn wit(err: KeyValueError) -> store::Error {
    match err.into_wit() {
        Ok(err) => err,
        Err(trap) => panic!("an error the guest should see trapped: {trap}"),
    }
}

/// The guest-visible message of an `error::other`.
pub(crate) fn other(err: KeyValueError) -> String {
    match wit(err) {
        store::Error::Other(message) => message,
        store::Error::AccessDenied => panic!("expected error::other, got access-denied"),
        store::Error::NoSuchStore => panic!("expected error::other, got no-such-store"),
    }
}

/// A scope no earlier test run used (Redis keeps data between runs).
pub(crate) fn unique_scope(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t{}-{nanos}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The behaviour every backend must show, through the host functions.
pub(crate) mod conformance {
    use super::*;

    pub(crate) async fn run_all(backend: Arc<dyn KeyValueBackend>) {
        crud(backend.clone()).await;
        binary_values_and_odd_keys(backend.clone()).await;
        not_granted_is_access_denied(backend.clone()).await;
        scopes_are_isolated(backend.clone()).await;
        key_and_value_limits(backend.clone()).await;
        max_keys(backend.clone()).await;
        set_many_is_all_or_nothing(backend.clone()).await;
        increment(backend.clone()).await;
        list_keys_pages(backend.clone()).await;
        list_keys_with_bogus_cursors(backend.clone()).await;
        batch(backend.clone()).await;
    }

    fn harness(backend: &Arc<dyn KeyValueBackend>, limits: KeyValueLimits, name: &str) -> Harness {
        Harness::new(
            backend.clone(),
            limits,
            &unique_scope(name),
            &["cache", "other"],
        )
    }

    pub(crate) async fn crud(backend: Arc<dyn KeyValueBackend>) {
        let mut kv = harness(&backend, KeyValueLimits::default(), "crud");
        let b = kv.open("cache").await;
        let mut v = kv.view();
        assert_eq!(v.get(h(&b), "k".into()).await.ok(), Some(None));
        assert_eq!(v.exists(h(&b), "k".into()).await.ok(), Some(false));
        v.set(h(&b), "k".into(), b"one".to_vec())
            .await
            .expect("set");
        assert_eq!(
            v.get(h(&b), "k".into()).await.ok(),
            Some(Some(b"one".to_vec()))
        );
        assert_eq!(v.exists(h(&b), "k".into()).await.ok(), Some(true));
        v.set(h(&b), "k".into(), b"two".to_vec())
            .await
            .expect("overwrite");
        assert_eq!(
            v.get(h(&b), "k".into()).await.ok(),
            Some(Some(b"two".to_vec()))
        );
        v.delete(h(&b), "k".into()).await.expect("delete");
        assert_eq!(v.get(h(&b), "k".into()).await.ok(), Some(None));
        v.delete(h(&b), "k".into())
            .await
            .expect("delete a missing key");
        // Two stores of one scope are separate buckets.
        v.set(h(&b), "shared".into(), b"cache".to_vec())
            .await
            .expect("set");
        let o = kv.open("other").await;
        let mut v = kv.view();
        assert_eq!(v.get(h(&o), "shared".into()).await.ok(), Some(None));
        v.drop(o).await.expect("drop");
        v.drop(b).await.expect("drop");
        assert!(kv.table.is_empty(), "dropped buckets stay in the table");
    }

    pub(crate) async fn binary_values_and_odd_keys(backend: Arc<dyn KeyValueBackend>) {
        let mut kv = harness(&backend, KeyValueLimits::default(), "binary");
        let b = kv.open("cache").await;
        let mut v = kv.view();
        let binary: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
        let keys = [
            "bin",
            "ключ 🔑",
            "a:b:c",
            "wedge:kv:other:cache",
            "with\nnewline",
        ];
        for key in keys {
            v.set(h(&b), key.into(), binary.clone()).await.expect("set");
            assert_eq!(
                v.get(h(&b), key.into()).await.ok(),
                Some(Some(binary.clone()))
            );
        }
        v.set(h(&b), "empty".into(), Vec::new())
            .await
            .expect("set an empty value");
        assert_eq!(
            v.get(h(&b), "empty".into()).await.ok(),
            Some(Some(Vec::new()))
        );
        assert_eq!(v.exists(h(&b), "empty".into()).await.ok(), Some(true));
    }

    pub(crate) async fn not_granted_is_access_denied(backend: Arc<dyn KeyValueBackend>) {
        let mut kv = harness(&backend, KeyValueLimits::default(), "denied");
        for name in ["secret", "", "../cache", "CACHE", "cache "] {
            let err = kv
                .view()
                .open(name.into())
                .await
                .err()
                .unwrap_or_else(|| panic!("`{name}` opened"));
            assert!(
                matches!(wit(err), store::Error::AccessDenied),
                "`{name}` is not access-denied"
            );
        }
        assert!(kv.table.is_empty());
    }

    pub(crate) async fn scopes_are_isolated(backend: Arc<dyn KeyValueBackend>) {
        let limits = KeyValueLimits {
            max_keys: 2,
            ..KeyValueLimits::default()
        };
        let mut alice = harness(&backend, limits.clone(), "alice");
        let mut bob = harness(&backend, limits, "bob");
        let a = alice.open("cache").await;
        let b = bob.open("cache").await;
        alice
            .view()
            .set(h(&a), "k".into(), b"alice".to_vec())
            .await
            .expect("set");
        alice
            .view()
            .increment(h(&a), "n".into(), 5)
            .await
            .expect("increment");
        // Bob sees none of Alice's keys, and her full bucket does not fill his.
        assert_eq!(bob.view().get(h(&b), "k".into()).await.ok(), Some(None));
        assert_eq!(bob.view().exists(h(&b), "n".into()).await.ok(), Some(false));
        let listed = bob.view().list_keys(h(&b), None).await.expect("list");
        assert!(listed.keys.is_empty(), "bob lists {:?}", listed.keys);
        bob.view()
            .set_many(
                h(&b),
                vec![("k".into(), b"bob".to_vec()), ("x".into(), b"bob".to_vec())],
            )
            .await
            .expect("bob's own two keys");
        assert!(bob.view().increment(h(&b), "x2".into(), 1).await.is_err());
        assert_eq!(
            alice.view().get(h(&a), "k".into()).await.ok(),
            Some(Some(b"alice".to_vec()))
        );
        bob.view()
            .delete_many(h(&b), vec!["k".into(), "n".into()])
            .await
            .expect("delete");
        assert_eq!(
            alice.view().get(h(&a), "k".into()).await.ok(),
            Some(Some(b"alice".to_vec()))
        );
        assert_eq!(
            alice.view().get(h(&a), "n".into()).await.ok(),
            Some(Some(b"5".to_vec()))
        );
    }

    pub(crate) async fn key_and_value_limits(backend: Arc<dyn KeyValueBackend>) {
        let limits = KeyValueLimits {
            max_key_size: 8,
            max_value_size: 16,
            ..KeyValueLimits::default()
        };
        let mut kv = harness(&backend, limits, "limits");
        let b = kv.open("cache").await;
        let mut v = kv.view();
        let long_key = "k".repeat(9);
        let big_value = vec![b'v'; 17];
        v.set(h(&b), "k".repeat(8), vec![b'v'; 16])
            .await
            .expect("at the limits");

        let err = other(
            v.set(h(&b), long_key.clone(), b"v".to_vec())
                .await
                .expect_err("long key"),
        );
        assert!(err.contains("max_key_size (8 bytes)"), "{err}");
        let err = other(
            v.set(h(&b), "k".into(), big_value.clone())
                .await
                .expect_err("big value"),
        );
        assert!(err.contains("max_value_size (16 bytes)"), "{err}");
        let err = other(
            v.set(h(&b), String::new(), b"v".to_vec())
                .await
                .expect_err("empty key"),
        );
        assert!(err.contains("empty"), "{err}");
        for result in [
            v.get(h(&b), long_key.clone()).await.err(),
            v.get(h(&b), String::new()).await.err(),
            v.exists(h(&b), long_key.clone()).await.err(),
            v.delete(h(&b), String::new()).await.err(),
            v.increment(h(&b), long_key.clone(), 1).await.err(),
            v.get_many(h(&b), vec!["k".into(), long_key.clone()])
                .await
                .err(),
            v.delete_many(h(&b), vec![String::new()]).await.err(),
        ] {
            let err = result.expect("an over-limit key must be refused");
            assert!(matches!(wit(err), store::Error::Other(_)));
        }
        // A batch with one bad pair writes nothing.
        for bad in [
            vec![
                ("ok".to_string(), b"v".to_vec()),
                (long_key.clone(), b"v".to_vec()),
            ],
            vec![
                ("ok".to_string(), b"v".to_vec()),
                ("big".to_string(), big_value.clone()),
            ],
            vec![
                ("ok".to_string(), b"v".to_vec()),
                (String::new(), b"v".to_vec()),
            ],
        ] {
            assert!(v.set_many(h(&b), bad).await.is_err());
            assert_eq!(v.exists(h(&b), "ok".into()).await.ok(), Some(false));
        }
        // Nothing over the limits was written.
        let listed = v.list_keys(h(&b), None).await.expect("list");
        assert_eq!(listed.keys, vec!["k".repeat(8)]);
    }

    pub(crate) async fn max_keys(backend: Arc<dyn KeyValueBackend>) {
        let limits = KeyValueLimits {
            max_keys: 3,
            ..KeyValueLimits::default()
        };
        let mut kv = harness(&backend, limits, "maxkeys");
        let b = kv.open("cache").await;
        let mut v = kv.view();
        for key in ["a", "b", "c"] {
            v.set(h(&b), key.into(), b"v".to_vec()).await.expect("set");
        }
        let err = other(
            v.set(h(&b), "d".into(), b"v".to_vec())
                .await
                .expect_err("4th key"),
        );
        assert!(err.contains("max_keys (3)"), "{err}");
        assert!(err.contains("`cache`"), "{err}");
        assert_eq!(v.exists(h(&b), "d".into()).await.ok(), Some(false));
        // Overwriting an existing key is not a new key.
        v.set(h(&b), "a".into(), b"new".to_vec())
            .await
            .expect("overwrite in a full bucket");
        v.increment(h(&b), "n".into(), 1)
            .await
            .expect_err("increment of a new key in a full bucket");
        assert_eq!(v.exists(h(&b), "n".into()).await.ok(), Some(false));
        // Deleting makes room again.
        v.delete(h(&b), "a".into()).await.expect("delete");
        v.increment(h(&b), "n".into(), 1)
            .await
            .expect("room for one");
        v.increment(h(&b), "n".into(), 1)
            .await
            .expect("an existing counter in a full bucket");
        assert!(v.set(h(&b), "e".into(), b"v".to_vec()).await.is_err());
    }

    pub(crate) async fn set_many_is_all_or_nothing(backend: Arc<dyn KeyValueBackend>) {
        let limits = KeyValueLimits {
            max_keys: 4,
            ..KeyValueLimits::default()
        };
        let mut kv = harness(&backend, limits, "setmany");
        let b = kv.open("cache").await;
        let mut v = kv.view();
        let pairs = |keys: &[&str], value: &[u8]| -> Vec<(String, Vec<u8>)> {
            keys.iter()
                .map(|k| (k.to_string(), value.to_vec()))
                .collect()
        };
        v.set_many(h(&b), pairs(&["a", "b"], b"1"))
            .await
            .expect("two keys");
        // 2 existing + 3 new > 4: nothing is written, not even the overwrite of `a`.
        let err = v
            .set_many(h(&b), pairs(&["a", "c", "d", "e"], b"2"))
            .await
            .expect_err("over max_keys");
        assert!(other(err).contains("max_keys (4)"));
        assert_eq!(
            v.get(h(&b), "a".into()).await.ok(),
            Some(Some(b"1".to_vec()))
        );
        for key in ["c", "d", "e"] {
            assert_eq!(v.exists(h(&b), key.into()).await.ok(), Some(false));
        }
        // A key given twice counts once and keeps its last value: 2 + 2 new = 4.
        v.set_many(
            h(&b),
            vec![
                ("c".into(), b"first".to_vec()),
                ("d".into(), b"3".to_vec()),
                ("c".into(), b"last".to_vec()),
                ("a".into(), b"3".to_vec()),
            ],
        )
        .await
        .expect("exactly up to max_keys");
        assert_eq!(
            v.get(h(&b), "c".into()).await.ok(),
            Some(Some(b"last".to_vec()))
        );
        assert_eq!(
            v.get(h(&b), "a".into()).await.ok(),
            Some(Some(b"3".to_vec()))
        );
        // A full bucket still takes a batch of overwrites.
        v.set_many(h(&b), pairs(&["a", "b", "c", "d"], b"4"))
            .await
            .expect("overwrites in a full bucket");
        v.set_many(h(&b), Vec::new()).await.expect("an empty batch");
    }

    pub(crate) async fn increment(backend: Arc<dyn KeyValueBackend>) {
        let mut kv = harness(&backend, KeyValueLimits::default(), "incr");
        let b = kv.open("cache").await;
        let mut v = kv.view();
        assert_eq!(v.increment(h(&b), "n".into(), 5).await.ok(), Some(5));
        assert_eq!(v.increment(h(&b), "n".into(), 0).await.ok(), Some(5));
        assert_eq!(v.increment(h(&b), "n".into(), 37).await.ok(), Some(42));
        assert_eq!(
            v.get(h(&b), "n".into()).await.ok(),
            Some(Some(b"42".to_vec()))
        );
        // Past i64::MAX, up to u64::MAX.
        let big = u64::MAX - 1;
        v.set(h(&b), "big".into(), big.to_string().into_bytes())
            .await
            .expect("set");
        assert_eq!(
            v.increment(h(&b), "big".into(), 1).await.ok(),
            Some(u64::MAX)
        );
        let err = other(
            v.increment(h(&b), "big".into(), 1)
                .await
                .expect_err("overflow"),
        );
        assert!(err.contains("overflows"), "{err}");
        assert_eq!(
            v.get(h(&b), "big".into()).await.ok(),
            Some(Some(u64::MAX.to_string().into_bytes()))
        );
        assert_eq!(
            v.increment(h(&b), "fresh".into(), u64::MAX).await.ok(),
            Some(u64::MAX)
        );
        // Leading zeros are a number; anything else is not.
        v.set(h(&b), "zeros".into(), b"0007".to_vec())
            .await
            .expect("set");
        assert_eq!(v.increment(h(&b), "zeros".into(), 3).await.ok(), Some(10));
        for bad in [
            &b"abc"[..],
            b"",
            b"-1",
            b"+1",
            b" 1",
            b"1.5",
            b"18446744073709551616",
            b"\xff\x00",
        ] {
            v.set(h(&b), "bad".into(), bad.to_vec()).await.expect("set");
            let err = other(
                v.increment(h(&b), "bad".into(), 1)
                    .await
                    .expect_err("not a number"),
            );
            assert!(err.contains("not a decimal number"), "{err}");
            assert_eq!(
                v.get(h(&b), "bad".into()).await.ok(),
                Some(Some(bad.to_vec()))
            );
        }
    }

    pub(crate) async fn list_keys_pages(backend: Arc<dyn KeyValueBackend>) {
        let mut kv = harness(&backend, KeyValueLimits::default(), "list");
        let b = kv.open("cache").await;
        let mut v = kv.view();
        let empty = v.list_keys(h(&b), None).await.expect("list");
        assert!(empty.keys.is_empty());
        assert_eq!(empty.cursor, None);
        let count = 2 * LIST_PAGE_SIZE + 500;
        let all: Vec<String> = (0..count).map(|i| format!("key-{i:05}")).collect();
        // One batch, larger than the Redis script's HSET chunk.
        let pairs = all.iter().map(|k| (k.clone(), b"v".to_vec())).collect();
        v.set_many(h(&b), pairs).await.expect("set_many");
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = v.list_keys(h(&b), cursor).await.expect("list");
            pages += 1;
            assert!(pages < 100, "list-keys does not end");
            seen.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert!(pages >= 2, "{count} keys came in one page");
        assert_eq!(seen.len(), count);
        assert!(seen.iter().eq(all.iter()));
    }

    pub(crate) async fn list_keys_with_bogus_cursors(backend: Arc<dyn KeyValueBackend>) {
        let mut kv = harness(&backend, KeyValueLimits::default(), "cursor");
        let b = kv.open("cache").await;
        let mut v = kv.view();
        v.set(h(&b), "k".into(), b"v".to_vec()).await.expect("set");
        for cursor in [
            0,
            1,
            7,
            12345,
            1 << 40,
            i64::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            // A page or an error::other; never a panic or a trap.
            match v.list_keys(h(&b), Some(cursor)).await {
                Ok(_) => {}
                Err(err) => {
                    let _ = other(err);
                }
            }
        }
    }

    pub(crate) async fn batch(backend: Arc<dyn KeyValueBackend>) {
        let mut kv = harness(&backend, KeyValueLimits::default(), "batch");
        let b = kv.open("cache").await;
        let mut v = kv.view();
        v.set_many(
            h(&b),
            vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
        )
        .await
        .expect("set_many");
        let got = v
            .get_many(
                h(&b),
                vec!["b".into(), "missing".into(), "a".into(), "b".into()],
            )
            .await
            .expect("get_many");
        assert_eq!(
            got,
            vec![
                Some(("b".into(), b"2".to_vec())),
                None,
                Some(("a".into(), b"1".to_vec())),
                Some(("b".into(), b"2".to_vec())),
            ]
        );
        assert_eq!(v.get_many(h(&b), Vec::new()).await.ok(), Some(Vec::new()));
        v.delete_many(h(&b), vec!["a".into(), "missing".into()])
            .await
            .expect("delete_many");
        assert_eq!(v.exists(h(&b), "a".into()).await.ok(), Some(false));
        assert_eq!(v.exists(h(&b), "b".into()).await.ok(), Some(true));
        v.delete_many(h(&b), Vec::new())
            .await
            .expect("an empty batch");
    }

    /// Many writers of distinct new keys race for a bucket with room for 10: exactly 10 win.
    pub(crate) async fn concurrent_max_keys(backend: Arc<dyn KeyValueBackend>) {
        let id = BucketId::new(&unique_scope("race"), "cache").expect("valid names");
        backend.open(&id).await.expect("open");
        let mut tasks = Vec::new();
        for i in 0..40 {
            let backend = backend.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    backend.set(&id, format!("k{i}"), b"v".to_vec(), 10).await
                } else {
                    backend
                        .set_many(
                            &id,
                            vec![
                                (format!("k{i}"), b"v".to_vec()),
                                ("k0".into(), b"v".to_vec()),
                            ],
                            10,
                        )
                        .await
                }
            }));
        }
        let mut full = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(()) => {}
                Err(KeyValueError::TooManyKeys { max_keys: 10, .. }) => full += 1,
                Err(err) => panic!("unexpected error: {err}"),
            }
        }
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = backend.list_keys(&id, cursor).await.expect("list");
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 10, "{keys:?}");
        assert!(full >= 30, "{full} writers were refused");
    }
}

/// A backend that never answers, counting the calls that started (were polled).
#[derive(Default)]
struct Hanging {
    calls: AtomicUsize,
}

impl Hanging {
    fn hang<T: Send + 'static>(&self) -> KvFuture<'_, T> {
        Box::pin(async {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        })
    }
}

impl KeyValueBackend for Hanging {
    fn open<'a>(&'a self, _: &'a BucketId) -> KvFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn get<'a>(&'a self, _: &'a BucketId, _: String) -> KvFuture<'a, Option<Vec<u8>>> {
        self.hang()
    }
    fn set<'a>(&'a self, _: &'a BucketId, _: String, _: Vec<u8>, _: u64) -> KvFuture<'a, ()> {
        self.hang()
    }
    fn delete<'a>(&'a self, _: &'a BucketId, _: String) -> KvFuture<'a, ()> {
        self.hang()
    }
    fn exists<'a>(&'a self, _: &'a BucketId, _: String) -> KvFuture<'a, bool> {
        self.hang()
    }
    fn list_keys<'a>(&'a self, _: &'a BucketId, _: Option<u64>) -> KvFuture<'a, KeyPage> {
        self.hang()
    }
    fn increment<'a>(&'a self, _: &'a BucketId, _: String, _: u64, _: u64) -> KvFuture<'a, u64> {
        self.hang()
    }
    fn get_many<'a>(
        &'a self,
        _: &'a BucketId,
        _: Vec<String>,
    ) -> KvFuture<'a, Vec<Option<Vec<u8>>>> {
        self.hang()
    }
    fn set_many<'a>(
        &'a self,
        _: &'a BucketId,
        _: Vec<(String, Vec<u8>)>,
        _: u64,
    ) -> KvFuture<'a, ()> {
        self.hang()
    }
    fn delete_many<'a>(&'a self, _: &'a BucketId, _: Vec<String>) -> KvFuture<'a, ()> {
        self.hang()
    }
}

#[tokio::test]
async fn a_hanging_backend_is_unavailable_after_the_store_timeout() {
    let limits = KeyValueLimits {
        timeout: Duration::from_millis(100),
        ..KeyValueLimits::default()
    };
    let backend = Arc::new(Hanging::default());
    let mut kv = Harness::new(backend.clone(), limits, "acme", &["slow"]);
    let b = kv.open("slow").await;
    let mut v = kv.view();
    let started = Instant::now();
    let err = other(v.get(h(&b), "k".into()).await.expect_err("timeout"));
    let took = started.elapsed();
    assert_eq!(
        err,
        "key-value store `slow` is unavailable: no answer within 100 ms"
    );
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // Every operation is bounded, not just `get`.
    assert!(v.set(h(&b), "k".into(), vec![]).await.is_err());
    assert!(v.delete(h(&b), "k".into()).await.is_err());
    assert!(v.exists(h(&b), "k".into()).await.is_err());
    assert!(v.list_keys(h(&b), None).await.is_err());
    assert!(v.increment(h(&b), "k".into(), 1).await.is_err());
    assert!(v.get_many(h(&b), vec!["k".into()]).await.is_err());
    assert!(v.set_many(h(&b), vec![("k".into(), vec![])]).await.is_err());
    assert!(v.delete_many(h(&b), vec!["k".into()]).await.is_err());
    assert_eq!(backend.calls.load(Ordering::SeqCst), 9);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn calls_end_before_the_request_deadline() {
    let limits = KeyValueLimits {
        timeout: Duration::from_secs(30),
        ..KeyValueLimits::default()
    };
    let backend = Arc::new(Hanging::default());
    let stores = Arc::new(KeyValueStores::new(backend.clone(), limits));
    let deadline_in = Duration::from_millis(300);
    let mut kv = Harness::with_stores(stores.clone(), "acme", &["slow"], deadline_in);
    let started = Instant::now();
    let b = kv.open("slow").await;
    let err = other(kv.view().get(h(&b), "k".into()).await.expect_err("timeout"));
    let took = started.elapsed();
    assert!(err.contains("is unavailable: no answer within"), "{err}");
    // The margin leaves the guest time to answer before the deadline.
    assert!(took < deadline_in, "{took:?}");
    assert!(
        took >= deadline_in - DEADLINE_MARGIN - Duration::from_millis(20),
        "{took:?}"
    );

    // With the deadline (almost) reached, the backend is not even asked.
    let mut late = Harness::with_stores(stores, "acme", &["slow"], Duration::from_millis(200));
    let b = late.open("slow").await;
    tokio::time::sleep(Duration::from_millis(160)).await;
    let calls = backend.calls.load(Ordering::SeqCst);
    let err = other(
        late.view()
            .set(h(&b), "k".into(), vec![])
            .await
            .expect_err("no time"),
    );
    assert!(err.contains("deadline leaves no time"), "{err}");
    assert_eq!(backend.calls.load(Ordering::SeqCst), calls);
}

#[tokio::test]
async fn named_stores_have_their_own_backend_and_limits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fallback = Arc::new(sqlite::SqliteKeyValue::new(dir.path().join("fallback")));
    let named = Arc::new(sqlite::SqliteKeyValue::new(dir.path().join("named")));
    let mut stores = KeyValueStores::new(fallback, KeyValueLimits::default());
    let small = KeyValueLimits {
        max_value_size: 4,
        ..KeyValueLimits::default()
    };
    stores.insert("sessions".into(), named, small.clone());
    assert_eq!(stores.limits("sessions"), &small);
    assert_eq!(stores.limits("cache"), &KeyValueLimits::default());
    let stores = Arc::new(stores);
    let mut kv = Harness::with_stores(
        stores,
        "acme",
        &["sessions", "cache"],
        Duration::from_secs(60),
    );
    let s = kv.open("sessions").await;
    let c = kv.open("cache").await;
    let mut v = kv.view();
    v.set(h(&s), "k".into(), b"1234".to_vec())
        .await
        .expect("set");
    let err = other(
        v.set(h(&s), "k".into(), b"12345".to_vec())
            .await
            .expect_err("limit"),
    );
    assert!(err.contains("max_value_size (4 bytes)"), "{err}");
    v.set(h(&c), "k".into(), b"12345".to_vec())
        .await
        .expect("set");
    assert!(dir.path().join("named/acme/kv/sessions.db").is_file());
    assert!(dir.path().join("fallback/acme/kv/cache.db").is_file());
    assert!(!dir.path().join("fallback/acme/kv/sessions.db").exists());
}

#[test]
fn bucket_names_that_could_escape_are_refused() {
    assert!(BucketId::new("acme", "cache").is_ok());
    assert!(BucketId::new("a-1", "c_2-x").is_ok());
    for (scope, store) in [
        ("", "cache"),
        ("acme", ""),
        ("..", "cache"),
        ("acme", ".."),
        ("acme", "a/b"),
        ("a/b", "cache"),
        ("acme", "a:b"),
        ("a:b", "cache"),
        ("acme", "Cache"),
        ("acme", "-cache"),
        ("acme", "_cache"),
        ("acme", "ca che"),
        ("acme", "c\0"),
        ("acme", "kä"),
    ] {
        let err = BucketId::new(scope, store).expect_err(&format!("{scope:?}/{store:?}"));
        assert!(matches!(err, KeyValueError::InvalidName { .. }), "{err}");
    }
    let long = "a".repeat(crate::names::MAX_SCOPE_LEN + 1);
    assert!(BucketId::new(&long, "cache").is_err());
    let longest = "a".repeat(crate::names::MAX_STATE_NAME_LEN);
    assert!(BucketId::new("acme", &longest).is_ok());
    assert!(BucketId::new("acme", &format!("{longest}a")).is_err());
}

#[test]
fn a_grant_cannot_hold_an_invalid_scope() {
    // A grant's scope is a checked `Scope`: one that could climb out of the data dir cannot
    // be made, so no backend ever sees it.
    for bad in ["../escape", "a/b", "", "App"] {
        assert!(crate::names::Scope::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn counters_parse_as_decimal_u64_only() {
    assert_eq!(parse_counter(b"0"), Some(0));
    assert_eq!(parse_counter(b"42"), Some(42));
    assert_eq!(parse_counter(b"007"), Some(7));
    assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
    for bad in [
        &b""[..],
        b"18446744073709551616",
        b"-1",
        b"+1",
        b" 1",
        b"1 ",
        b"0x10",
        b"1e3",
    ] {
        assert_eq!(parse_counter(bad), None, "{bad:?}");
    }
}

#[test]
fn a_bad_handle_traps_instead_of_reaching_the_guest() {
    let err = KeyValueError::from(wasmtime::component::ResourceTableError::NotPresent);
    assert!(err.into_wit().is_err());
    let denied = KeyValueError::AccessDenied { store: "x".into() };
    assert!(matches!(denied.into_wit(), Ok(store::Error::AccessDenied)));
}

#[test]
fn the_interfaces_link_into_a_state_that_shares_its_table() {
    struct State {
        kv: KeyValueCtx,
        table: ResourceTable,
    }
    impl KeyValueView for State {
        fn key_value(&mut self) -> KeyValueCtxView<'_> {
            KeyValueCtxView {
                ctx: &mut self.kv,
                table: &mut self.table,
            }
        }
    }
    let engine = wasmtime::Engine::default();
    let mut linker = wasmtime::component::Linker::<State>::new(&engine);
    add_to_linker(&mut linker).expect("link wasi:keyvalue");
    // Twice is a duplicate definition, not a silent override.
    assert!(add_to_linker(&mut linker).is_err());
}
