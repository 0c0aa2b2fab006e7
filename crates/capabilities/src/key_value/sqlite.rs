//! The embedded key-value backend: one SQLite file per bucket, `DIR/<scope>/kv/<store>.db`.
//!
//! One file per bucket keeps tenants apart on disk (a tenant's data is a directory that can be
//! measured, copied or deleted on its own) and keeps one bucket's writers from waiting on
//! another's: SQLite has one writer per file.
//!
//! Durability: WAL mode with `synchronous=FULL`, so a write is acknowledged only after its WAL
//! frames are fsynced; an acknowledged write survives `kill -9` and power loss (WAL with
//! `NORMAL` would be safe from corruption but could lose the last commits on power loss).
//! WAL also lets readers run alongside the one writer. When a file is created, its directories
//! are fsynced too, so the new file's name is as durable as its contents.
//!
//! The table keeps an `INTEGER PRIMARY KEY` next to the unique key: `list-keys` pages by it
//! (the cursor is the last id returned), so a key present during the whole listing is returned
//! exactly once even while other keys come and go, and any cursor a guest invents is simply a
//! position. A second table holds the key count, kept by triggers in the same transaction as
//! the write, so `max_keys` is checked in O(1) and atomically (`BEGIN IMMEDIATE`).
//!
//! rusqlite blocks, so every call runs on tokio's blocking pool, on a connection from a small
//! per-file pool (files are opened on first use and stay open).
//!
//! Writes to one file are committed in groups. SQLite allows one writer per file, and with
//! `synchronous=FULL` every commit is an fsync: one commit per write bounded a store at a
//! couple of thousand writes a second, whatever the load. A write is queued on its file; the
//! caller that gets the file's writer turn (a one-permit semaphore, taken before the blocking
//! pool) takes every queued write, up to [`MAX_GROUP`], and runs them in one `BEGIN
//! IMMEDIATE` transaction, each in a savepoint of its own, then commits once. Each caller is
//! answered only after that commit: an acknowledged write is on disk, as before. A write that
//! is refused (`max_keys`, not a number, ...) is rolled back to its savepoint and the others
//! go on; if SQLite itself loses the transaction (a full file or disk, an I/O error) or the
//! commit fails, every write of the group is answered with that error and none of them was
//! kept. A caller that gives up while its write is still queued (the call's timeout drops its
//! future) is skipped and never written. Queued on the turn, writers do not meet SQLite's busy
//! handler, which sleeps (1, 2, 5, ... 100 ms) instead of waking when the lock is free. (The
//! busy timeout stays, for other processes that open the file.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Semaphore;

use crate::sqlite_size::{at_size_limit, limit_size};

use super::{
    BucketId, KeyPage, KeyValueBackend, KeyValueError, KvFuture, LIST_PAGE_SIZE, parse_counter,
};

/// How long a write waits for another writer of the same file before it gives up.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// How many idle connections per file are kept.
pub const DEFAULT_POOL_SIZE: usize = 4;
/// How many idle connections all files together keep (each holds three file descriptors:
/// the database, its WAL and its shared-memory index).
pub const DEFAULT_MAX_IDLE: usize = 256;

/// The most writes one group commit takes: bounds how long the first of them waits.
pub const MAX_GROUP: usize = 128;

/// How large a store's file may grow unless told otherwise ([`SqliteKeyValue::with_max_size`]).
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// The schema, created on a file's first open (`user_version` 0 → 1).
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS kv (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        value BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS kv_count (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        n INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO kv_count (id, n) SELECT 0, COUNT(*) FROM kv;
    CREATE TRIGGER IF NOT EXISTS kv_count_insert AFTER INSERT ON kv
        BEGIN UPDATE kv_count SET n = n + 1 WHERE id = 0; END;
    CREATE TRIGGER IF NOT EXISTS kv_count_delete AFTER DELETE ON kv
        BEGIN UPDATE kv_count SET n = n - 1 WHERE id = 0; END;
    PRAGMA user_version = 1;
";

const UPSERT: &str = "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// The embedded backend: buckets are SQLite files under one directory.
pub struct SqliteKeyValue {
    dir: PathBuf,
    busy_timeout: Duration,
    pool_size: usize,
    /// How large a store's file may grow: `max_sizes` by store name, else `max_size`.
    max_size: u64,
    max_sizes: HashMap<String, u64>,
    files: Mutex<HashMap<BucketId, Arc<File>>>,
    idle: Arc<IdleBudget>,
}

impl SqliteKeyValue {
    /// Buckets live in `dir/<scope>/kv/<store>.db`, created (with their directories) when a
    /// bucket is first opened. Nothing is touched before that.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            max_size: DEFAULT_MAX_SIZE,
            max_sizes: HashMap::new(),
            files: Mutex::new(HashMap::new()),
            idle: Arc::new(IdleBudget {
                max: DEFAULT_MAX_IDLE,
                count: AtomicUsize::new(0),
            }),
        }
    }

    /// How long a write waits for another writer of the same file.
    pub fn with_busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// How many idle connections per file are kept (at least 1).
    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size.max(1);
        self
    }

    /// How large each store's file may grow, in bytes (SQLite's `max_page_count`, set on
    /// every connection). A write that would grow it further fails with
    /// [`KeyValueError::StoreTooLarge`] and writes nothing; deleting keys makes room. A file
    /// already larger stays readable and shrinkable.
    pub fn with_max_size(mut self, max_size: u64) -> Self {
        self.max_size = max_size;
        self
    }

    /// The same as [`Self::with_max_size`], for the store named `store` only (in every scope).
    pub fn with_store_max_size(mut self, store: &str, max_size: u64) -> Self {
        self.max_sizes.insert(store.to_string(), max_size);
        self
    }

    /// How many idle connections all files together keep; a connection given back beyond
    /// that is closed. Call before the first bucket is opened.
    pub fn with_max_idle(mut self, max_idle: usize) -> Self {
        self.idle = Arc::new(IdleBudget {
            max: max_idle,
            count: AtomicUsize::new(0),
        });
        self
    }

    /// Where the bucket's file is.
    pub fn path(&self, bucket: &BucketId) -> PathBuf {
        self.dir
            .join(bucket.scope())
            .join("kv")
            .join(format!("{}.db", bucket.store()))
    }

    fn file(&self, bucket: &BucketId) -> Arc<File> {
        let mut files = lock(&self.files);
        files
            .entry(bucket.clone())
            .or_insert_with(|| {
                Arc::new(File {
                    path: self.path(bucket),
                    busy_timeout: self.busy_timeout,
                    pool_size: self.pool_size,
                    max_size: self
                        .max_sizes
                        .get(bucket.store())
                        .copied()
                        .unwrap_or(self.max_size),
                    idle: Mutex::new(Vec::new()),
                    budget: self.idle.clone(),
                    ready: AtomicBool::new(false),
                    writer: Arc::new(Semaphore::new(1)),
                    queue: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// Runs `op`, which only reads, on a pooled connection to the bucket's file, on the
    /// blocking pool.
    fn read<'a, T, F>(&'a self, bucket: &'a BucketId, op: F) -> KvFuture<'a, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, OpError> + Send + 'static,
    {
        let file = self.file(bucket);
        Box::pin(async move {
            let task = tokio::task::spawn_blocking(move || file.with_connection(op));
            match task.await {
                Ok(result) => result.map_err(|error| error.into_kv(bucket)),
                Err(err) => Err(bucket.unavailable(format_args!("the SQLite task failed: {err}"))),
            }
        })
    }

    /// Queues `op`, which writes, for the bucket's file's next group commit, and answers once
    /// that commit is known (see the module docs). `op` runs inside the group's transaction
    /// and must not begin or end one.
    fn write<'a, T, F>(&'a self, bucket: &'a BucketId, op: F) -> KvFuture<'a, T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, OpError> + Send + 'static,
    {
        let file = self.file(bucket);
        Box::pin(async move {
            let (sender, mut answer) = tokio::sync::oneshot::channel();
            lock(&file.queue).push(Box::new(Queued {
                op: Some(op),
                result: None,
                sender,
            }));
            loop {
                tokio::select! {
                    biased;
                    outcome = &mut answer => {
                        return match outcome {
                            Ok(result) => result.map_err(|error| error.into_kv(bucket)),
                            Err(_) => Err(bucket.unavailable("the write's group commit failed")),
                        };
                    }
                    // The turn is taken here, not on the blocking pool: dropping this future
                    // (the call's timeout) while waiting leaves the write queued but skipped.
                    // Once a group is on the blocking pool, the turn goes with it.
                    turn = file.writer.clone().acquire_owned() => {
                        let turn = turn
                            .map_err(|_| bucket.unavailable("the store's writer queue is closed"))?;
                        let group: Vec<_> = {
                            let mut queue = lock(&file.queue);
                            let take = queue.len().min(MAX_GROUP);
                            queue.drain(..take).collect()
                        };
                        // An empty queue: a group that just ended took this write; its answer
                        // is ready.
                        if group.is_empty() {
                            continue;
                        }
                        let group_file = file.clone();
                        let task = tokio::task::spawn_blocking(move || {
                            group_file.commit_group(group);
                            drop(turn);
                        });
                        // A panic in the group drops its senders: their callers are answered.
                        let _ = task.await;
                    }
                }
            }
        })
    }
}

/// A write waiting for a group commit, whatever it returns.
trait QueuedWrite: Send {
    /// Whether its caller has given up (then it is not run at all).
    fn abandoned(&self) -> bool;
    /// Runs it inside the group's transaction, in a savepoint of its own.
    fn run(&mut self, file: &File, conn: &Connection);
    /// Answers its caller: its own result if the group committed, else the group's error.
    fn answer(self: Box<Self>, group: Result<(), &str>);
}

struct Queued<T, F> {
    op: Option<F>,
    result: Option<Result<T, OpError>>,
    sender: tokio::sync::oneshot::Sender<Result<T, OpError>>,
}

impl<T, F> QueuedWrite for Queued<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, OpError> + Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.sender.is_closed()
    }

    fn run(&mut self, file: &File, conn: &Connection) {
        let Some(op) = self.op.take() else {
            return;
        };
        let result = match conn.execute_batch("SAVEPOINT kv_write") {
            Ok(()) => {
                let result = op(conn);
                let end = if result.is_ok() {
                    "RELEASE kv_write"
                } else {
                    "ROLLBACK TO kv_write; RELEASE kv_write"
                };
                // If SQLite lost the transaction, the savepoint went with it; the group sees
                // that and answers everyone with an error.
                let _ = conn.execute_batch(end);
                result
            }
            Err(error) => Err(error.into()),
        };
        self.result = Some(match result {
            Err(OpError::Sqlite(error)) if at_size_limit(conn, &error) => Err(OpError::Full {
                max_size: file.max_size,
            }),
            other => other,
        });
    }

    fn answer(self: Box<Self>, group: Result<(), &str>) {
        let outcome = match (self.result, group) {
            // Refused or failed on its own: nothing of it was kept, whatever the group did.
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)) | None, Err(why)) => {
                Err(OpError::Io(std::io::Error::other(why.to_string())))
            }
            (None, Ok(())) => Err(OpError::Io(std::io::Error::other(
                "the write was not run by its group",
            ))),
        };
        let _ = self.sender.send(outcome);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks (a map of files, a list of idle connections) is valid after
    // any panic, so a poisoned lock is used as it is.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why an operation failed: the request was refused, the file reached its size limit, or
/// SQLite / the file system failed.
enum OpError {
    Refused(KeyValueError),
    Full { max_size: u64 },
    Sqlite(rusqlite::Error),
    Io(std::io::Error),
}

impl OpError {
    fn into_kv(self, bucket: &BucketId) -> KeyValueError {
        match self {
            OpError::Refused(err) => err,
            OpError::Full { max_size } => KeyValueError::StoreTooLarge {
                store: bucket.store().to_string(),
                max_size,
            },
            OpError::Sqlite(err) => bucket.unavailable(err),
            OpError::Io(err) => bucket.unavailable(err),
        }
    }
}

impl From<rusqlite::Error> for OpError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sqlite(err)
    }
}

impl From<KeyValueError> for OpError {
    fn from(err: KeyValueError) -> Self {
        Self::Refused(err)
    }
}

/// The idle connections of all files: how many there may be, how many there are.
struct IdleBudget {
    max: usize,
    count: AtomicUsize,
}

impl IdleBudget {
    /// Counts one more idle connection, if there is room for it.
    fn take(&self) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }
}

/// One bucket's file and its idle connections.
struct File {
    path: PathBuf,
    busy_timeout: Duration,
    pool_size: usize,
    max_size: u64,
    idle: Mutex<Vec<Connection>>,
    budget: Arc<IdleBudget>,
    /// Set once a connection was opened: the file, its directories and its schema exist.
    ready: AtomicBool,
    /// The writers' turn: one permit, held while a group of writes runs (see the module docs).
    writer: Arc<Semaphore>,
    /// Writes waiting for the next group commit.
    queue: Mutex<Vec<Box<dyn QueuedWrite>>>,
}

impl File {
    fn with_connection<T>(
        &self,
        op: impl FnOnce(&mut Connection) -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        let idle = lock(&self.idle).pop();
        let mut conn = match idle {
            Some(conn) => {
                self.budget.count.fetch_sub(1, Ordering::AcqRel);
                conn
            }
            None => self.connect()?,
        };
        let result = match op(&mut conn) {
            Err(OpError::Sqlite(error)) if at_size_limit(&conn, &error) => Err(OpError::Full {
                max_size: self.max_size,
            }),
            other => other,
        };
        // A connection goes back only in a clean state; one on which SQLite failed is dropped,
        // so the next call opens the file afresh.
        let failed = matches!(result, Err(OpError::Sqlite(_) | OpError::Io(_)));
        if !failed && conn.is_autocommit() {
            let mut idle = lock(&self.idle);
            if idle.len() < self.pool_size && self.budget.take() {
                idle.push(conn);
            }
        }
        result
    }

    /// Runs `group` in one transaction and answers each write (see the module docs).
    fn commit_group(&self, group: Vec<Box<dyn QueuedWrite>>) {
        let mut ran: Vec<Box<dyn QueuedWrite>> = Vec::with_capacity(group.len());
        let mut waiting = group.into_iter();
        let outcome = self.with_connection(|conn| {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            for mut write in waiting.by_ref() {
                if write.abandoned() {
                    continue;
                }
                write.run(self, conn);
                ran.push(write);
                if conn.is_autocommit() {
                    // SQLite rolled the whole transaction back (a full file or disk, an I/O
                    // error): the writes before this one are gone too.
                    return Err(OpError::Io(std::io::Error::other(
                        "SQLite rolled the write's transaction back (the file or the disk is full, or an I/O error); nothing was written",
                    )));
                }
            }
            if let Err(error) = conn.execute_batch("COMMIT") {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(error.into());
            }
            Ok(())
        });
        let why = outcome.err().map(|error| match error {
            OpError::Sqlite(error) => error.to_string(),
            OpError::Io(error) => error.to_string(),
            OpError::Refused(error) => error.to_string(),
            OpError::Full { max_size } => {
                format!(
                    "the file reached its size limit of {}",
                    wedge_engine::units::format_size(max_size)
                )
            }
        });
        let group = why.as_deref().map_or(Ok(()), Err);
        for write in ran {
            write.answer(group);
        }
        // Writes the group never reached (it ended early) are answered with its error.
        for write in waiting {
            write.answer(Err(why
                .as_deref()
                .unwrap_or("the group commit ended early")));
        }
    }

    fn connect(&self) -> Result<Connection, OpError> {
        let created = !self.path.exists();
        if created && let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(OpError::Io)?;
        }
        let mut conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpError::Io(std::io::Error::other(format!(
                "SQLite would not switch {} to WAL mode (it is in {mode} mode)",
                self.path.display()
            ))));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        limit_size(&conn, self.max_size)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version < 1 {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(SCHEMA)?;
            tx.commit()?;
        }
        if created {
            sync_dirs(&self.path).map_err(OpError::Io)?;
        }
        self.ready.store(true, Ordering::Release);
        Ok(conn)
    }
}

/// Makes a new file's name durable: fsyncs its directory and the two above it (`kv/`, the
/// scope's directory, the data directory), which may have been created with it.
fn sync_dirs(path: &Path) -> std::io::Result<()> {
    for dir in path.ancestors().skip(1).take(3) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn key_count(conn: &Connection) -> rusqlite::Result<u64> {
    let n: i64 = conn.query_row("SELECT n FROM kv_count WHERE id = 0", [], |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Writes `items` (inside a group's savepoint, which is rolled back if this fails), refusing
/// them all if the new keys among them take the bucket past `max_keys`.
fn write_checked<'k>(
    conn: &Connection,
    store: &str,
    items: impl IntoIterator<Item = (&'k str, &'k [u8])>,
    max_keys: u64,
) -> Result<(), OpError> {
    let before = key_count(conn)?;
    {
        let mut upsert = conn.prepare_cached(UPSERT)?;
        for (key, value) in items {
            upsert.execute(params![key, value])?;
        }
    }
    let after = key_count(conn)?;
    if after > before && after > max_keys {
        return Err(KeyValueError::TooManyKeys {
            store: store.to_string(),
            max_keys,
        }
        .into());
    }
    Ok(())
}

fn get_value(conn: &Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT value FROM kv WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()
}

impl KeyValueBackend for SqliteKeyValue {
    fn open<'a>(&'a self, bucket: &'a BucketId) -> KvFuture<'a, ()> {
        // Once the file has been opened, opening the bucket again (every request does) costs
        // no trip to the blocking pool.
        if self.file(bucket).ready.load(Ordering::Acquire) {
            return Box::pin(async { Ok(()) });
        }
        // The first connection may create the file and its schema: a write.
        self.write(bucket, |_| Ok(()))
    }

    fn get<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, Option<Vec<u8>>> {
        self.read(bucket, move |conn| Ok(get_value(conn, &key)?))
    }

    fn set<'a>(
        &'a self,
        bucket: &'a BucketId,
        key: String,
        value: Vec<u8>,
        max_keys: u64,
    ) -> KvFuture<'a, ()> {
        let store = bucket.store().to_string();
        self.write(bucket, move |conn| {
            write_checked(conn, &store, [(key.as_str(), value.as_slice())], max_keys)
        })
    }

    fn delete<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, ()> {
        self.write(bucket, move |conn| {
            conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([key])?;
            Ok(())
        })
    }

    fn exists<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, bool> {
        self.read(bucket, move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM kv WHERE key = ?1")?
                .exists([key])?)
        })
    }

    fn list_keys<'a>(&'a self, bucket: &'a BucketId, cursor: Option<u64>) -> KvFuture<'a, KeyPage> {
        // The cursor is the id of the last key returned; one past `i64::MAX` is past them all.
        let after = i64::try_from(cursor.unwrap_or(0)).unwrap_or(i64::MAX);
        self.read(bucket, move |conn| {
            let mut select =
                conn.prepare_cached("SELECT id, key FROM kv WHERE id > ?1 ORDER BY id LIMIT ?2")?;
            // One more than a page, to know whether another page follows.
            let limit = i64::try_from(LIST_PAGE_SIZE + 1).unwrap_or(i64::MAX);
            let mut rows = select
                .query_map(params![after, limit], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let more = rows.len() > LIST_PAGE_SIZE;
            rows.truncate(LIST_PAGE_SIZE);
            let cursor = match rows.last() {
                Some((id, _)) if more => u64::try_from(*id).ok(),
                _ => None,
            };
            Ok(KeyPage {
                keys: rows.into_iter().map(|(_, key)| key).collect(),
                cursor,
            })
        })
    }

    fn increment<'a>(
        &'a self,
        bucket: &'a BucketId,
        key: String,
        delta: u64,
        max_keys: u64,
    ) -> KvFuture<'a, u64> {
        let store = bucket.store().to_string();
        self.write(bucket, move |conn| {
            let current = match get_value(conn, &key)? {
                None => 0,
                Some(value) => parse_counter(&value)
                    .ok_or_else(|| KeyValueError::NotANumber { key: key.clone() })?,
            };
            let new = current
                .checked_add(delta)
                .ok_or_else(|| KeyValueError::Overflow {
                    key: key.clone(),
                    delta,
                })?;
            let before = key_count(conn)?;
            conn.prepare_cached(UPSERT)?
                .execute(params![key, new.to_string().into_bytes()])?;
            let after = key_count(conn)?;
            if after > before && after > max_keys {
                return Err(KeyValueError::TooManyKeys { store, max_keys }.into());
            }
            Ok(new)
        })
    }

    fn get_many<'a>(
        &'a self,
        bucket: &'a BucketId,
        keys: Vec<String>,
    ) -> KvFuture<'a, Vec<Option<Vec<u8>>>> {
        self.read(bucket, move |conn| {
            // One read transaction: the values are one snapshot.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let values = keys
                .iter()
                .map(|key| get_value(&tx, key))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(values)
        })
    }

    fn set_many<'a>(
        &'a self,
        bucket: &'a BucketId,
        items: Vec<(String, Vec<u8>)>,
        max_keys: u64,
    ) -> KvFuture<'a, ()> {
        let store = bucket.store().to_string();
        self.write(bucket, move |conn| {
            write_checked(
                conn,
                &store,
                items
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_slice())),
                max_keys,
            )
        })
    }

    fn delete_many<'a>(&'a self, bucket: &'a BucketId, keys: Vec<String>) -> KvFuture<'a, ()> {
        self.write(bucket, move |conn| {
            let mut delete = conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
            for key in &keys {
                delete.execute([key])?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_value::tests::conformance;

    fn backend() -> (tempfile::TempDir, Arc<SqliteKeyValue>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = Arc::new(SqliteKeyValue::new(dir.path().join("data")));
        (dir, backend)
    }

    #[tokio::test]
    async fn sqlite_conformance() {
        let (_dir, backend) = backend();
        conformance::run_all(backend).await;
    }

    #[tokio::test]
    async fn sqlite_concurrent_writers_never_pass_max_keys() {
        let (_dir, backend) = backend();
        conformance::concurrent_max_keys(backend).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_concurrent_increments_all_succeed_in_turn() {
        let (_dir, backend) = backend();
        let id = BucketId::new("acme", "hits").expect("valid names");
        backend.open(&id).await.expect("open");
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (backend, id) = (backend.clone(), id.clone());
                tokio::spawn(async move { backend.increment(&id, "n".into(), 1, 10).await })
            })
            .collect();
        let mut seen = Vec::new();
        for task in tasks {
            seen.push(task.await.expect("task").expect("every increment succeeds"));
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=64).collect::<Vec<u64>>(),
            "each writer saw the previous one"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_a_write_abandoned_while_waiting_for_its_turn_never_lands() {
        let (_dir, backend) = backend();
        let id = BucketId::new("acme", "cache").expect("valid names");
        backend.open(&id).await.expect("open");
        // Another writer holds the file's turn until told to let go.
        let turn = backend
            .file(&id)
            .writer
            .clone()
            .try_acquire_owned()
            .expect("nobody else writes");
        // The caller gives up (as KeyValueCtx does at the call's timeout) while the write
        // waits for its turn.
        let waited = tokio::time::timeout(
            Duration::from_millis(200),
            backend.set(&id, "late".into(), b"v".to_vec(), 10),
        )
        .await;
        assert!(
            waited.is_err(),
            "the write should still be waiting for its turn"
        );
        drop(turn);
        // Had the abandoned write stayed queued, it would now take its turn and write.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(backend.get(&id, "late".into()).await.expect("get"), None);
        backend
            .set(&id, "next".into(), b"v".to_vec(), 10)
            .await
            .expect("the next write goes through");
    }

    #[tokio::test]
    async fn sqlite_file_per_bucket_in_wal_mode_with_full_sync() {
        let (dir, backend) = backend();
        let id = BucketId::new("acme", "cache").expect("valid names");
        backend.open(&id).await.expect("open");
        let path = dir.path().join("data/acme/kv/cache.db");
        assert_eq!(backend.path(&id), path);
        assert!(path.is_file(), "{} was not created", path.display());
        backend
            .set(&id, "k".into(), b"v".to_vec(), 10)
            .await
            .expect("set");
        let (mode, sync) = backend
            .read(&id, |conn| {
                let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
                let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
                Ok((mode, sync))
            })
            .await
            .expect("pragmas");
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous is not FULL");
        assert!(!dir.path().join("data/acme/kv/other.db").exists());
    }

    #[tokio::test]
    async fn sqlite_data_survives_a_new_backend_on_the_same_dir() {
        let (dir, backend) = backend();
        let id = BucketId::new("acme", "cache").expect("valid names");
        backend
            .set(&id, "k".into(), b"kept".to_vec(), 10)
            .await
            .expect("set");
        backend
            .increment(&id, "n".into(), 7, 10)
            .await
            .expect("increment");
        drop(backend);
        let again = SqliteKeyValue::new(dir.path().join("data"));
        assert_eq!(
            again.get(&id, "k".into()).await.expect("get"),
            Some(b"kept".to_vec())
        );
        // The key count is restored with the file: a third key passes, a fourth does not.
        again
            .set(&id, "third".into(), Vec::new(), 3)
            .await
            .expect("third key");
        let err = again
            .set(&id, "fourth".into(), Vec::new(), 3)
            .await
            .expect_err("fourth key");
        assert!(matches!(
            err,
            KeyValueError::TooManyKeys { max_keys: 3, .. }
        ));
    }

    #[tokio::test]
    async fn sqlite_files_do_not_grow_past_their_size_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = SqliteKeyValue::new(dir.path().to_path_buf()).with_max_size(256 << 10);
        let id = BucketId::new("acme", "cache").expect("valid names");
        let value = || vec![7u8; 8 << 10];
        let mut stored = 0;
        let error = loop {
            match backend.set(&id, format!("k{stored}"), value(), 1000).await {
                Ok(()) => stored += 1,
                Err(error) => break error,
            }
            assert!(stored < 100, "256 KiB holds fewer than 100 values of 8 KiB");
        };
        assert!(stored > 10, "only {stored} values fit");
        match &error {
            KeyValueError::StoreTooLarge { store, max_size } => {
                assert_eq!((store.as_str(), *max_size), ("cache", 256 << 10));
                let message = error.to_string();
                assert!(
                    message.contains("256 KiB") && message.contains("max_size"),
                    "{message}"
                );
            }
            other => panic!("expected StoreTooLarge, got {other:?}"),
        }
        // The refused write wrote nothing; the acknowledged ones are all there.
        assert_eq!(
            backend.get(&id, format!("k{stored}")).await.expect("get"),
            None
        );
        for i in 0..stored {
            assert!(backend.exists(&id, format!("k{i}")).await.expect("exists"));
        }
        let file = dir.path().join("acme/kv/cache.db");
        assert!(std::fs::metadata(&file).expect("file").len() <= 256 << 10);
        // Deleting keys makes room; a batch that does not fit writes none of its keys.
        backend
            .delete_many(&id, (0..4).map(|i| format!("k{i}")).collect())
            .await
            .expect("delete");
        backend
            .set(&id, "again".into(), value(), 1000)
            .await
            .expect("room again");
        let batch = (0..20).map(|i| (format!("b{i}"), value())).collect();
        let error = backend
            .set_many(&id, batch, 1000)
            .await
            .expect_err("too big a batch");
        assert!(
            matches!(error, KeyValueError::StoreTooLarge { .. }),
            "{error:?}"
        );
        assert_eq!(backend.get(&id, "b0".into()).await.expect("get"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_group_commits_answer_each_write_with_what_was_kept() {
        // Concurrent writers share group commits; the file fills up part way through, so
        // some groups lose their transaction. Whatever happens, a write that was answered
        // `Ok` is there afterwards and a write that failed left nothing.
        let dir = tempfile::tempdir().expect("temp dir");
        let backend =
            Arc::new(SqliteKeyValue::new(dir.path().to_path_buf()).with_max_size(256 << 10));
        let id = BucketId::new("acme", "cache").expect("valid names");
        backend.open(&id).await.expect("open");
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let backend = backend.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let result = backend
                        .set(&id, format!("k{i}"), vec![7u8; 8 << 10], 1000)
                        .await;
                    (i, result)
                })
            })
            .collect();
        let (mut kept, mut refused) = (0, 0);
        for writer in writers {
            let (i, result) = writer.await.expect("writer");
            let stored = backend.get(&id, format!("k{i}")).await.expect("get");
            match result {
                Ok(()) => {
                    assert_eq!(
                        stored.map(|v| v.len()),
                        Some(8 << 10),
                        "k{i} was acknowledged"
                    );
                    kept += 1;
                }
                Err(error) => {
                    assert_eq!(stored, None, "k{i} failed ({error}) but was written");
                    refused += 1;
                }
            }
        }
        assert!(kept > 10 && refused > 0, "kept {kept}, refused {refused}");
        // The store still works: deleting makes room for a write.
        let keys = (0..64).map(|i| format!("k{i}")).collect();
        backend.delete_many(&id, keys).await.expect("delete");
        backend
            .set(&id, "after".into(), vec![1; 100], 1000)
            .await
            .expect("room again");
    }

    #[tokio::test]
    async fn sqlite_keeps_at_most_max_idle_connections_over_all_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = SqliteKeyValue::new(dir.path().to_path_buf()).with_max_idle(3);
        for i in 0..6 {
            let id = BucketId::new("acme", &format!("s{i}")).expect("valid names");
            backend
                .set(&id, "k".into(), b"v".to_vec(), 10)
                .await
                .expect("set");
        }
        assert_eq!(backend.idle.count.load(Ordering::Acquire), 3);
        let idle: usize = lock(&backend.files)
            .values()
            .map(|file| lock(&file.idle).len())
            .sum();
        assert_eq!(idle, 3);
        // A bucket whose connection was closed still works: it reopens its file.
        let id = BucketId::new("acme", "s5").expect("valid names");
        assert_eq!(
            backend.get(&id, "k".into()).await.expect("get"),
            Some(b"v".to_vec())
        );
    }

    #[tokio::test]
    async fn sqlite_unwritable_dir_is_unavailable_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A file where the data directory should be: nothing can be created under it.
        let blocker = dir.path().join("data");
        std::fs::write(&blocker, b"not a directory").expect("write");
        let backend = SqliteKeyValue::new(blocker);
        let id = BucketId::new("acme", "cache").expect("valid names");
        let err = backend.open(&id).await.expect_err("open must fail");
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("`cache` is unavailable"), "{err}");
    }
}
