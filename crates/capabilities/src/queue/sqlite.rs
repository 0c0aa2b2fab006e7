//! The embedded queue backend: every queue of a scope in one SQLite file,
//! `DIR/<scope>/queue.db`.
//!
//! One file per scope, not per queue, so that acknowledging a message and sending a stream
//! function's output to another queue of the same scope is one transaction: consume,
//! transform and produce happen exactly once, or not at all.
//!
//! Durability as for the other embedded stores: WAL with `synchronous=FULL`, so a send is
//! answered only once it is on disk, and so is a settle; the directories of a new file are
//! fsynced. A lease is a message's `visible_ms` moved into the future and its `attempts`
//! counted up; the lease token is `SEQ:ATTEMPTS`, so settling an expired lease that another
//! consumer has taken since changes nothing. A consumer that dies leaves its leases to expire:
//! the messages become ready again (at-least-once).
//!
//! rusqlite blocks: every call runs on tokio's blocking pool, on the scope's one connection
//! (queues are written by few consumers, each settling a whole batch in one transaction).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use tokio::sync::Notify;

use super::{
    DeadLetter, LeaseToken, Leased, NewMessage, QueueBackend, QueueError, QueueFuture, QueueId,
    QueueStats, ReceiveOptions, Settlement, now_ms,
};
use crate::names::Scope;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        body BLOB NOT NULL,
        content_type TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        enqueued_ms INTEGER NOT NULL,
        visible_ms INTEGER NOT NULL,
        leased INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_ms, seq);
    CREATE INDEX IF NOT EXISTS messages_order ON messages (queue, seq);
    CREATE TABLE IF NOT EXISTS dead (
        seq INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        body BLOB NOT NULL,
        content_type TEXT,
        attempts INTEGER NOT NULL,
        enqueued_ms INTEGER NOT NULL,
        died_ms INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS dead_queue ON dead (queue, seq);
";

/// The embedded backend of every queue not moved to a server.
pub struct SqliteQueues {
    dir: PathBuf,
    files: Mutex<HashMap<Scope, Arc<Mutex<Connection>>>>,
    /// Woken by a send, so a waiting consumer starts at once.
    notify: Mutex<HashMap<QueueId, Arc<Notify>>>,
}

impl SqliteQueues {
    /// Queues live under `dir` (the data dir's `state`), created on first use.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: Mutex::default(),
            notify: Mutex::default(),
        }
    }

    /// The file of `scope`'s queues.
    pub fn path(&self, scope: &Scope) -> PathBuf {
        self.dir.join(scope.as_str()).join("queue.db")
    }

    fn file(&self, queue: &QueueId) -> Result<Arc<Mutex<Connection>>, QueueError> {
        let mut files = lock(&self.files);
        if let Some(file) = files.get(queue.scope()) {
            return Ok(file.clone());
        }
        let path = self.path(queue.scope());
        let conn = open(&path).map_err(|error| QueueError::unavailable(queue, error))?;
        let file = Arc::new(Mutex::new(conn));
        files.insert(queue.scope().clone(), file.clone());
        Ok(file)
    }

    fn notifier(&self, queue: &QueueId) -> Arc<Notify> {
        lock(&self.notify)
            .entry(queue.clone())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Runs `work` on the scope's connection, on the blocking pool.
    fn run<'a, T: Send + 'static>(
        &'a self,
        queue: &'a QueueId,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> QueueFuture<'a, T> {
        Box::pin(async move {
            let file = self.file(queue)?;
            let task = tokio::task::spawn_blocking(move || {
                let mut conn = lock(&file);
                work(&mut conn)
            });
            match task.await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => {
                    tracing::warn!(%queue, %error, "embedded queue call failed");
                    Err(QueueError::unavailable(queue, error))
                }
                Err(error) => Err(QueueError::unavailable(queue, error)),
            }
        })
    }
}

/// Wakes every consumer waiting on a queue, and the next one to wait (one that was busy
/// leasing when the message arrived).
fn wake(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn open(path: &Path) -> Result<Connection, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let existed = path.exists();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    let setup = || -> rusqlite::Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(2))?;
        conn.execute_batch(SCHEMA)
    };
    setup().map_err(|e| format!("cannot set up `{}`: {e}", path.display()))?;
    if !existed {
        // The new file's name must be as durable as what it will hold.
        let _ = wedge_engine::durable::sync_dir(dir);
        if let Some(parent) = dir.parent() {
            let _ = wedge_engine::durable::sync_dir(parent);
        }
    }
    Ok(conn)
}

fn token(seq: i64, attempts: i64) -> LeaseToken {
    LeaseToken(format!("{seq}:{attempts}"))
}

fn parse_token(token: &LeaseToken) -> Option<(i64, i64)> {
    let (seq, attempts) = token.0.split_once(':')?;
    Some((seq.parse().ok()?, attempts.parse().ok()?))
}

fn insert(conn: &Connection, queue: &str, message: &NewMessage, now: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO messages (queue, body, content_type, enqueued_ms, visible_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![queue, &message.body[..], message.content_type, now],
    )?;
    Ok(conn.last_insert_rowid())
}

impl QueueBackend for SqliteQueues {
    fn send<'a>(
        &'a self,
        queue: &'a QueueId,
        messages: Vec<NewMessage>,
    ) -> QueueFuture<'a, Vec<String>> {
        let name = queue.name().to_string();
        Box::pin(async move {
            let ids = self
                .run(queue, move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let now = now_ms() as i64;
                    let mut ids = Vec::with_capacity(messages.len());
                    for message in &messages {
                        ids.push(insert(&tx, &name, message, now)?.to_string());
                    }
                    tx.commit()?;
                    Ok(ids)
                })
                .await?;
            wake(&self.notifier(queue));
            Ok(ids)
        })
    }

    fn receive<'a>(
        &'a self,
        queue: &'a QueueId,
        options: ReceiveOptions,
    ) -> QueueFuture<'a, Vec<Leased>> {
        let name = queue.name().to_string();
        self.run(queue, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms() as i64;
            let limit = options.max.max(1) as i64;
            let mut candidates: Vec<(i64, i64)> = Vec::new();
            {
                // Ordered: the oldest messages, and none past one that is not ready (leased,
                // or waiting for its retry), so the order holds across retries.
                let sql = if options.ordered {
                    "SELECT seq, visible_ms FROM messages WHERE queue = ?1 ORDER BY seq LIMIT ?2"
                } else {
                    "SELECT seq, visible_ms FROM messages WHERE queue = ?1 AND visible_ms <= ?3 ORDER BY visible_ms, seq LIMIT ?2"
                };
                let mut statement = tx.prepare_cached(sql)?;
                let mut rows = if options.ordered {
                    statement.query(params![name, limit])?
                } else {
                    statement.query(params![name, limit, now])?
                };
                while let Some(row) = rows.next()? {
                    let (seq, visible): (i64, i64) = (row.get(0)?, row.get(1)?);
                    if visible > now {
                        break;
                    }
                    candidates.push((seq, visible));
                }
            }
            let lease_until = now + options.lease.as_millis() as i64;
            let mut leased = Vec::with_capacity(candidates.len());
            {
                let mut update = tx.prepare_cached(
                    "UPDATE messages SET attempts = attempts + 1, visible_ms = ?2, leased = 1 WHERE seq = ?1 RETURNING body, content_type, attempts, enqueued_ms",
                )?;
                for (seq, _) in candidates {
                    let (body, content_type, attempts, enqueued_ms): (Vec<u8>, Option<String>, i64, i64) =
                        update.query_row(params![seq, lease_until], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })?;
                    leased.push(Leased {
                        id: seq.to_string(),
                        body: Bytes::from(body),
                        content_type,
                        attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                        enqueued_ms: u64::try_from(enqueued_ms).unwrap_or_default(),
                        lease: token(seq, attempts),
                    });
                }
            }
            tx.commit()?;
            Ok(leased)
        })
    }

    fn settle<'a>(
        &'a self,
        queue: &'a QueueId,
        settlements: Vec<(LeaseToken, Settlement)>,
    ) -> QueueFuture<'a, ()> {
        let name = queue.name().to_string();
        let scope = queue.scope().clone();
        let mut woken: Vec<QueueId> = Vec::new();
        for (_, settlement) in &settlements {
            if let Settlement::AckAndSend { output, .. } = settlement
                && !woken.contains(output)
            {
                woken.push(output.clone());
            }
        }
        Box::pin(async move {
            for (_, settlement) in &settlements {
                if let Settlement::AckAndSend { output, .. } = settlement
                    && output.scope() != &scope
                {
                    return Err(QueueError::InvalidConfig(format!(
                        "output queue `{output}` is in another scope than `{queue}`; an acknowledgement and a send are one transaction only within a scope"
                    )));
                }
            }
            self.run(queue, move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms() as i64;
                for (lease, settlement) in &settlements {
                    let Some((seq, attempts)) = parse_token(lease) else {
                        continue;
                    };
                    // Only the lease that is still this message's current one.
                    let current: bool = tx
                        .prepare_cached(
                            "SELECT COUNT(*) FROM messages WHERE seq = ?1 AND attempts = ?2 AND leased = 1 AND queue = ?3",
                        )?
                        .query_row(params![seq, attempts, name], |row| row.get::<_, i64>(0))?
                        > 0;
                    if !current {
                        continue;
                    }
                    match settlement {
                        Settlement::Ack => {
                            tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                                .execute(params![seq])?;
                        }
                        Settlement::Retry { delay } => {
                            tx.prepare_cached(
                                "UPDATE messages SET visible_ms = ?2, leased = 0 WHERE seq = ?1",
                            )?
                            .execute(params![seq, now + delay.as_millis() as i64])?;
                        }
                        Settlement::DeadLetter { reason } => {
                            tx.prepare_cached(
                                "INSERT INTO dead (seq, queue, body, content_type, attempts, enqueued_ms, died_ms, reason) SELECT seq, queue, body, content_type, attempts, enqueued_ms, ?2, ?3 FROM messages WHERE seq = ?1",
                            )?
                            .execute(params![seq, now, reason])?;
                            tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                                .execute(params![seq])?;
                        }
                        Settlement::AckAndSend { output, message } => {
                            tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                                .execute(params![seq])?;
                            insert(&tx, output.name().as_str(), message, now)?;
                        }
                    }
                }
                tx.commit()
            })
            .await?;
            for output in woken {
                wake(&self.notifier(&output));
            }
            Ok(())
        })
    }

    fn atomic_with(&self, queue: &QueueId, output: &QueueId) -> bool {
        queue.scope() == output.scope()
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a QueueId,
        limit: usize,
    ) -> QueueFuture<'a, Vec<DeadLetter>> {
        let name = queue.name().to_string();
        self.run(queue, move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, body, content_type, attempts, enqueued_ms, died_ms, reason FROM dead WHERE queue = ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = statement.query_map(params![name, limit as i64], |row| {
                Ok(DeadLetter {
                    id: row.get::<_, i64>(0)?.to_string(),
                    body: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                    content_type: row.get(2)?,
                    attempts: u32::try_from(row.get::<_, i64>(3)?).unwrap_or(u32::MAX),
                    enqueued_ms: u64::try_from(row.get::<_, i64>(4)?).unwrap_or_default(),
                    died_ms: u64::try_from(row.get::<_, i64>(5)?).unwrap_or_default(),
                    reason: row.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    fn replay<'a>(&'a self, queue: &'a QueueId, ids: Option<Vec<String>>) -> QueueFuture<'a, u64> {
        let name = queue.name().to_string();
        Box::pin(async move {
            let seqs: Option<Vec<i64>> =
                ids.map(|ids| ids.iter().filter_map(|id| id.parse::<i64>().ok()).collect());
            let moved = self
                .run(queue, move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let now = now_ms() as i64;
                    let mut moved = 0u64;
                    let chosen: Vec<i64> = match seqs {
                        Some(seqs) => seqs,
                        None => tx
                            .prepare_cached("SELECT seq FROM dead WHERE queue = ?1 ORDER BY seq")?
                            .query_map(params![name], |row| row.get(0))?
                            .collect::<rusqlite::Result<_>>()?,
                    };
                    for seq in chosen {
                        let copied = tx
                            .prepare_cached(
                                "INSERT INTO messages (queue, body, content_type, enqueued_ms, visible_ms) SELECT queue, body, content_type, ?3, ?3 FROM dead WHERE seq = ?1 AND queue = ?2",
                            )?
                            .execute(params![seq, name, now])?;
                        if copied > 0 {
                            tx.prepare_cached("DELETE FROM dead WHERE seq = ?1")?
                                .execute(params![seq])?;
                            moved += 1;
                        }
                    }
                    tx.commit()?;
                    Ok(moved)
                })
                .await?;
            if moved > 0 {
                wake(&self.notifier(queue));
            }
            Ok(moved)
        })
    }

    fn stats<'a>(&'a self, queue: &'a QueueId) -> QueueFuture<'a, QueueStats> {
        let name = queue.name().to_string();
        self.run(queue, move |conn| {
            let now = now_ms() as i64;
            let (depth, in_flight, oldest): (i64, i64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(leased = 1 AND visible_ms > ?2), 0), MIN(enqueued_ms) FROM messages WHERE queue = ?1",
                )?
                .query_row(params![name, now], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            let dead: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM dead WHERE queue = ?1")?
                .query_row(params![name], |row| row.get(0))?;
            Ok(QueueStats {
                depth: depth.max(0) as u64,
                in_flight: in_flight.max(0) as u64,
                dead: dead.max(0) as u64,
                oldest_enqueued_ms: oldest.map(|ms| ms.max(0) as u64),
            })
        })
    }

    fn wait<'a>(&'a self, queue: &'a QueueId, timeout: Duration) -> QueueFuture<'a, ()> {
        let notify = self.notifier(queue);
        Box::pin(async move {
            let _ = tokio::time::timeout(timeout, notify.notified()).await;
            Ok(())
        })
    }
}
