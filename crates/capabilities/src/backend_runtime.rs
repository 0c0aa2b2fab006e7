//! One runtime for the server backends' connections.
//!
//! A Redis or MySQL connection belongs to the tokio runtime that opened it: its socket is
//! registered with that runtime's I/O driver, and its pool's background tasks (mysql_async's
//! recycler, which takes connections back; the Redis multiplexer's driver) run there. wedge
//! serves on one current-thread runtime per core, so a pool shared by all workers would bind
//! its connections to whichever worker used it first, lose them when that worker stops first,
//! and (mysql_async) drop every connection returned from another runtime instead of reusing
//! it: each guest call would connect anew.
//!
//! So every call to a server backend runs here: [`on_backend_runtime`] and
//! [`sql_on_backend_runtime`] wrap a backend so that each call is spawned on one small
//! multi-threaded runtime, which lives as long as the process, and the worker awaits the
//! result. The embedded SQLite backends need none of this (they run on blocking threads).
//! The cost is one cross-thread hand-off per call, small next to a network round trip.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::runtime::{Handle, Runtime};

use crate::key_value::{BucketId, KeyPage, KeyValueBackend, KeyValueError, KvFuture};
use crate::sql::{
    CallLimits, QueryResult, SqlBackend, SqlConnection, SqlError, SqlFuture, SqlValue,
};

/// Threads of the backend runtime: they only move bytes to and from servers.
const THREADS: usize = 2;

/// The process's backend runtime, started on first use. Never dropped: a tokio runtime may not
/// be dropped from inside another (where the last `Arc` of a backend may well go).
fn handle() -> Result<&'static Handle, String> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(THREADS)
                .thread_name("wedge-backend")
                .enable_all()
                .build()
                .map_err(|error| format!("cannot start the backend runtime: {error}"))
        })
        .as_ref()
        .map(Runtime::handle)
        .map_err(String::clone)
}

/// Runs `future` on the backend runtime and waits for it.
async fn spawned<T, E>(
    future: impl Future<Output = Result<T, E>> + Send + 'static,
    failed: impl FnOnce(String) -> E,
) -> Result<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    let handle = match handle() {
        Ok(handle) => handle,
        Err(reason) => return Err(failed(reason)),
    };
    match handle.spawn(future).await {
        Ok(result) => result,
        Err(error) => Err(failed(format!("the backend call failed: {error}"))),
    }
}

/// A key-value backend whose calls run on the backend runtime.
pub fn on_backend_runtime(backend: impl KeyValueBackend) -> Arc<dyn KeyValueBackend> {
    Arc::new(KeyValueOnRuntime {
        inner: Arc::new(backend),
    })
}

struct KeyValueOnRuntime<B> {
    inner: Arc<B>,
}

impl<B: KeyValueBackend> KeyValueOnRuntime<B> {
    /// Spawns `call(backend, bucket)`, with both owned by the task.
    fn run<'a, T, F, Fut>(&'a self, bucket: &BucketId, call: F) -> KvFuture<'a, T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<B>, BucketId) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, KeyValueError>> + Send + 'static,
    {
        let inner = self.inner.clone();
        let owned = bucket.clone();
        let for_errors = bucket.clone();
        Box::pin(spawned(call(inner, owned), move |reason| {
            for_errors.unavailable(reason)
        }))
    }
}

impl<B: KeyValueBackend> KeyValueBackend for KeyValueOnRuntime<B> {
    fn open<'a>(&'a self, bucket: &'a BucketId) -> KvFuture<'a, ()> {
        self.run(bucket, |b, id| async move { b.open(&id).await })
    }

    fn get<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, Option<Vec<u8>>> {
        self.run(bucket, |b, id| async move { b.get(&id, key).await })
    }

    fn set<'a>(
        &'a self,
        bucket: &'a BucketId,
        key: String,
        value: Vec<u8>,
        max_keys: u64,
    ) -> KvFuture<'a, ()> {
        self.run(bucket, move |b, id| async move {
            b.set(&id, key, value, max_keys).await
        })
    }

    fn delete<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, ()> {
        self.run(bucket, |b, id| async move { b.delete(&id, key).await })
    }

    fn exists<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, bool> {
        self.run(bucket, |b, id| async move { b.exists(&id, key).await })
    }

    fn list_keys<'a>(&'a self, bucket: &'a BucketId, cursor: Option<u64>) -> KvFuture<'a, KeyPage> {
        self.run(bucket, move |b, id| async move {
            b.list_keys(&id, cursor).await
        })
    }

    fn increment<'a>(
        &'a self,
        bucket: &'a BucketId,
        key: String,
        delta: u64,
        max_keys: u64,
    ) -> KvFuture<'a, u64> {
        self.run(bucket, move |b, id| async move {
            b.increment(&id, key, delta, max_keys).await
        })
    }

    fn get_many<'a>(
        &'a self,
        bucket: &'a BucketId,
        keys: Vec<String>,
    ) -> KvFuture<'a, Vec<Option<Vec<u8>>>> {
        self.run(bucket, |b, id| async move { b.get_many(&id, keys).await })
    }

    fn set_many<'a>(
        &'a self,
        bucket: &'a BucketId,
        items: Vec<(String, Vec<u8>)>,
        max_keys: u64,
    ) -> KvFuture<'a, ()> {
        self.run(bucket, move |b, id| async move {
            b.set_many(&id, items, max_keys).await
        })
    }

    fn delete_many<'a>(&'a self, bucket: &'a BucketId, keys: Vec<String>) -> KvFuture<'a, ()> {
        self.run(
            bucket,
            |b, id| async move { b.delete_many(&id, keys).await },
        )
    }
}

/// A SQL backend whose calls (and its connections' calls) run on the backend runtime.
pub fn sql_on_backend_runtime(backend: impl SqlBackend) -> Arc<dyn SqlBackend> {
    Arc::new(SqlOnRuntime {
        inner: Arc::new(backend),
    })
}

struct SqlOnRuntime<B> {
    inner: Arc<B>,
}

fn unavailable(database: &str, reason: &str) -> SqlError {
    SqlError::Unavailable(format!("database `{database}` is unavailable: {reason}"))
}

impl<B: SqlBackend> SqlBackend for SqlOnRuntime<B> {
    fn connect<'a>(
        &'a self,
        scope: &'a str,
        database: &'a str,
        limits: CallLimits,
    ) -> SqlFuture<'a, Box<dyn SqlConnection>> {
        let mut connection = ConnectionOnRuntime {
            backend: self.inner.clone(),
            scope: scope.to_string(),
            database: database.to_string(),
            inner: None,
        };
        Box::pin(async move {
            connection
                .run(limits, |_| Box::pin(async { Ok(()) }))
                .await?;
            Ok(Box::new(connection) as Box<dyn SqlConnection>)
        })
    }
}

/// A connection whose calls run on the backend runtime: it moves into the call's task and
/// comes back with the result. A call cut off by its deadline leaves it with the task (which
/// runs on, then drops it: a transaction is rolled back), and the next call opens another, as
/// after any discarded connection.
struct ConnectionOnRuntime<B> {
    backend: Arc<B>,
    scope: String,
    database: String,
    inner: Option<Box<dyn SqlConnection>>,
}

impl<B: SqlBackend> ConnectionOnRuntime<B> {
    fn run<'a, T, F>(&'a mut self, limits: CallLimits, call: F) -> SqlFuture<'a, T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut dyn SqlConnection) -> SqlFuture<'c, T> + Send + 'static,
    {
        Box::pin(async move {
            let held = self.inner.take();
            let backend = self.backend.clone();
            let (scope, database) = (self.scope.clone(), self.database.clone());
            let (connection, result) = spawned(
                async move {
                    let mut connection = match held {
                        Some(connection) => connection,
                        None => backend.connect(&scope, &database, limits).await?,
                    };
                    let result = call(connection.as_mut()).await;
                    Ok((connection, result))
                },
                |reason| unavailable(&self.database, &reason),
            )
            .await?;
            self.inner = Some(connection);
            result
        })
    }
}

impl<B: SqlBackend> SqlConnection for ConnectionOnRuntime<B> {
    fn execute(
        &mut self,
        statement: String,
        params: Vec<SqlValue>,
        limits: CallLimits,
    ) -> SqlFuture<'_, QueryResult> {
        self.run(limits, move |c| c.execute(statement, params, limits))
    }

    fn begin(&mut self, limits: CallLimits) -> SqlFuture<'_, ()> {
        self.run(limits, move |c| c.begin(limits))
    }

    fn commit(&mut self, limits: CallLimits) -> SqlFuture<'_, ()> {
        self.run(limits, move |c| c.commit(limits))
    }

    fn rollback(&mut self, limits: CallLimits) -> SqlFuture<'_, ()> {
        self.run(limits, move |c| c.rollback(limits))
    }

    fn discard(&mut self) {
        if let Some(connection) = self.inner.as_mut() {
            connection.discard();
        }
    }
}
