//! The Redis key-value backend, for buckets shared by more than one node.
//!
//! One Redis hash per bucket, `wedge:kv:<scope>:<store>`, whose fields are the bucket's keys.
//! A hash makes a bucket one Redis key: its size is `HLEN` (O(1), so `max_keys` costs nothing),
//! its keys are listed by `HSCAN` without walking the whole keyspace (a prefix `SCAN` over
//! other tenants' keys would), and a bucket is dropped with one `DEL`. Scope and store names
//! are checked by [`BucketId`](super::BucketId) and cannot hold `:`, so no two buckets share a
//! hash. Values are stored as raw bytes.
//!
//! Writes that must check `max_keys` (set, set-many, increment) are Lua scripts, which Redis
//! runs atomically: "is the key new, is the hash full, write" cannot interleave with another
//! writer. `increment` does its arithmetic on decimal strings in the script, so counters have
//! the full `u64` range that the SQLite backend has (Redis' own `HINCRBY` stops at `i64`).
//! Redis does not roll a script back, so set-many is all-or-nothing for `max_keys` (checked
//! before anything is written) but not against the server failing midway (out of memory
//! with a batch of more than 1000 pairs, which takes more than one `HSET`).
//!
//! `list-keys` is `HSCAN` (through a script that drops the values before they cross the
//! network), its cursor is Redis' cursor, and it inherits `HSCAN`'s guarantee: a key present
//! during the whole listing is returned, possibly more than once.
//!
//! Connections: a pool of `pool_size` multiplexed connections, each opened on first use. A
//! connection that breaks (the server restarted, `CLIENT KILL`, a timeout) is forgotten,
//! together with the rest of the pool (they most likely broke with it), so the next call
//! connects afresh. A call that failed on a connection it did not open itself is retried once
//! on a new one, except `increment`: it is not idempotent, and whether a request on a broken
//! connection reached the server cannot be known, so it fails instead of maybe counting twice.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError, Script};

use super::{BucketId, KeyPage, KeyValueBackend, KeyValueError, KvFuture, LIST_PAGE_SIZE};

/// Bounds a connection attempt (the caller's timeout may cut it shorter).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds a request on an open connection.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many key-value pairs one `HSET` in the set-many script takes (Lua's `unpack` has a
/// limit on how many values it spreads).
const HSET_CHUNK_PAIRS: usize = 1000;

/// `KEYS[1]`: the hash; `ARGV`: key, value, max_keys. Returns 1, or 0 when the key is new and
/// the hash is full.
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
            and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
            return 0
        end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        return 1
        ",
    )
});

/// `KEYS[1]`: the hash; `ARGV`: max_keys, chunk size (in arguments), then key, value, key,
/// value, ... Returns 1, or 0 (and writes nothing) when the new keys would overfill the hash.
static SET_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local max = tonumber(ARGV[1])
        local chunk = tonumber(ARGV[2])
        local seen = {}
        local new = 0
        for i = 3, #ARGV, 2 do
            local key = ARGV[i]
            if not seen[key] then
                seen[key] = true
                if redis.call('HEXISTS', KEYS[1], key) == 0 then new = new + 1 end
            end
        end
        if new > 0 and redis.call('HLEN', KEYS[1]) + new > max then
            return 0
        end
        for i = 3, #ARGV, chunk do
            redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + chunk - 1, #ARGV)))
        end
        return 1
        ",
    )
});

/// `KEYS[1]`: the hash; `ARGV`: key, delta (decimal), max_keys. Returns `{'ok', new value}`,
/// `{'full'}`, `{'nan'}` (the value is not a u64 in decimal) or `{'overflow'}`.
static INCREMENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local U64_MAX = '18446744073709551615'
        local function normal(digits)
            local stripped = string.gsub(digits, '^0+', '')
            if stripped == '' then return '0' end
            return stripped
        end
        local function too_big(digits)
            return #digits > 20 or (#digits == 20 and digits > U64_MAX)
        end
        local current = redis.call('HGET', KEYS[1], ARGV[1])
        if not current then
            if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return {'full'} end
            current = '0'
        end
        if not string.find(current, '^%d+$') then return {'nan'} end
        current = normal(current)
        if too_big(current) then return {'nan'} end
        local delta = ARGV[2]
        local digits = {}
        local carry = 0
        local i, j = #current, #delta
        while i > 0 or j > 0 or carry > 0 do
            local sum = carry
            if i > 0 then sum = sum + string.byte(current, i) - 48 end
            if j > 0 then sum = sum + string.byte(delta, j) - 48 end
            digits[#digits + 1] = string.char(48 + sum % 10)
            carry = math.floor(sum / 10)
            i = i - 1
            j = j - 1
        end
        local new = normal(string.reverse(table.concat(digits)))
        if too_big(new) then return {'overflow'} end
        redis.call('HSET', KEYS[1], ARGV[1], new)
        return {'ok', new}
        ",
    )
});

/// `KEYS[1]`: the hash; `ARGV`: cursor, count. `HSCAN` without shipping the values: returns
/// `{next cursor, {key, ...}}`.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
        local keys = {}
        for i = 1, #page[2], 2 do keys[#keys + 1] = page[2][i] end
        return {page[1], keys}
        ",
    )
});

/// The Redis backend: buckets are hashes on one Redis server.
pub struct RedisKeyValue {
    client: redis::Client,
    config: AsyncConnectionConfig,
    pool: Vec<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
    next: AtomicUsize,
}

impl RedisKeyValue {
    /// Parses `url` (`redis://[user:password@]host[:port][/db]`, or `rediss://` when the
    /// redis crate is built with TLS); connects lazily, with at most `pool_size` (at least 1)
    /// multiplexed connections.
    pub fn new(url: &str, pool_size: usize) -> Result<Self, KeyValueError> {
        let client = redis::Client::open(url).map_err(|err| {
            KeyValueError::InvalidConfig(format!("the Redis URL does not parse: {err}"))
        })?;
        let pool = (0..pool_size.max(1))
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        Ok(Self {
            client,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(DEFAULT_CONNECT_TIMEOUT))
                .set_response_timeout(Some(DEFAULT_RESPONSE_TIMEOUT)),
            pool,
            next: AtomicUsize::new(0),
        })
    }

    /// Bounds for connecting and for a request's answer (the caller's timeout still applies).
    pub fn with_timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.config = self
            .config
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(response));
        self
    }

    /// A connection from the pool, opened now if its slot is empty; `true` if it is new.
    async fn connection(&self) -> Result<(MultiplexedConnection, bool), RedisError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let mut slot = self.pool[index].lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok((conn.clone(), false));
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *slot = Some(conn.clone());
        Ok((conn, true))
    }

    /// Forgets every pooled connection that is not being opened right now.
    fn forget_connections(&self) {
        for slot in &self.pool {
            if let Ok(mut slot) = slot.try_lock() {
                *slot = None;
            }
        }
    }

    /// Runs `query`; retries once on a new connection if `idempotent` and the connection
    /// broke.
    async fn query<T: FromRedisValue>(
        &self,
        bucket: &BucketId,
        query: &Query<'_>,
        idempotent: bool,
    ) -> Result<T, KeyValueError> {
        let mut retried = false;
        loop {
            let (mut conn, new) = self
                .connection()
                .await
                .map_err(|err| bucket.unavailable(format_args!("cannot connect: {err}")))?;
            let result = match query {
                Query::Cmd(cmd) => cmd.query_async(&mut conn).await,
                Query::Script(script) => script.invoke_async(&mut conn).await,
            };
            match result {
                Ok(value) => return Ok(value),
                Err(err) => {
                    let broken = err.is_io_error()
                        || err.is_connection_dropped()
                        || err.is_timeout()
                        || err.is_unrecoverable_error();
                    if broken {
                        self.forget_connections();
                        if idempotent && !new && !retried {
                            retried = true;
                            continue;
                        }
                    }
                    return Err(bucket.unavailable(err));
                }
            }
        }
    }
}

enum Query<'a> {
    Cmd(redis::Cmd),
    Script(redis::ScriptInvocation<'a>),
}

/// The hash that holds a bucket.
fn hash_key(bucket: &BucketId) -> String {
    format!("wedge:kv:{}:{}", bucket.scope(), bucket.store())
}

fn cmd(name: &str, bucket: &BucketId) -> redis::Cmd {
    let mut cmd = redis::cmd(name);
    cmd.arg(hash_key(bucket));
    cmd
}

fn too_many_keys(bucket: &BucketId, max_keys: u64) -> KeyValueError {
    KeyValueError::TooManyKeys {
        store: bucket.store().to_string(),
        max_keys,
    }
}

impl KeyValueBackend for RedisKeyValue {
    fn open<'a>(&'a self, _bucket: &'a BucketId) -> KvFuture<'a, ()> {
        // Hashes exist once written; connecting waits for the first call.
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut hget = cmd("HGET", bucket);
            hget.arg(key);
            self.query(bucket, &Query::Cmd(hget), true).await
        })
    }

    fn set<'a>(
        &'a self,
        bucket: &'a BucketId,
        key: String,
        value: Vec<u8>,
        max_keys: u64,
    ) -> KvFuture<'a, ()> {
        Box::pin(async move {
            let mut set = SET.key(hash_key(bucket));
            set.arg(key).arg(value).arg(max_keys);
            let written: i64 = self.query(bucket, &Query::Script(set), true).await?;
            if written == 1 {
                Ok(())
            } else {
                Err(too_many_keys(bucket, max_keys))
            }
        })
    }

    fn delete<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, ()> {
        Box::pin(async move {
            let mut hdel = cmd("HDEL", bucket);
            hdel.arg(key);
            let _deleted: i64 = self.query(bucket, &Query::Cmd(hdel), true).await?;
            Ok(())
        })
    }

    fn exists<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, bool> {
        Box::pin(async move {
            let mut hexists = cmd("HEXISTS", bucket);
            hexists.arg(key);
            self.query(bucket, &Query::Cmd(hexists), true).await
        })
    }

    fn list_keys<'a>(&'a self, bucket: &'a BucketId, cursor: Option<u64>) -> KvFuture<'a, KeyPage> {
        Box::pin(async move {
            let mut list = LIST.key(hash_key(bucket));
            list.arg(cursor.unwrap_or(0)).arg(LIST_PAGE_SIZE);
            let (next, keys): (String, Vec<Vec<u8>>) =
                self.query(bucket, &Query::Script(list), true).await?;
            let next: u64 = next.parse().map_err(|_| {
                bucket.unavailable(format_args!("Redis answered HSCAN cursor `{next}`"))
            })?;
            Ok(KeyPage {
                // Keys are written from guest strings; bytes that are not UTF-8 came from
                // elsewhere and are shown as well as they can be.
                keys: keys
                    .into_iter()
                    .map(|key| match String::from_utf8(key) {
                        Ok(key) => key,
                        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
                    })
                    .collect(),
                cursor: (next != 0).then_some(next),
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
        Box::pin(async move {
            let mut increment = INCREMENT.key(hash_key(bucket));
            increment.arg(&key).arg(delta.to_string()).arg(max_keys);
            let answer: Vec<String> = self.query(bucket, &Query::Script(increment), false).await?;
            match answer.as_slice() {
                [status, value] if status == "ok" => value.parse().map_err(|_| {
                    bucket.unavailable(format_args!("the increment script answered `{value}`"))
                }),
                [status] if status == "full" => Err(too_many_keys(bucket, max_keys)),
                [status] if status == "nan" => Err(KeyValueError::NotANumber { key }),
                [status] if status == "overflow" => Err(KeyValueError::Overflow { key, delta }),
                other => {
                    Err(bucket.unavailable(format_args!("the increment script answered {other:?}")))
                }
            }
        })
    }

    fn get_many<'a>(
        &'a self,
        bucket: &'a BucketId,
        keys: Vec<String>,
    ) -> KvFuture<'a, Vec<Option<Vec<u8>>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut hmget = cmd("HMGET", bucket);
            hmget.arg(keys);
            self.query(bucket, &Query::Cmd(hmget), true).await
        })
    }

    fn set_many<'a>(
        &'a self,
        bucket: &'a BucketId,
        items: Vec<(String, Vec<u8>)>,
        max_keys: u64,
    ) -> KvFuture<'a, ()> {
        Box::pin(async move {
            if items.is_empty() {
                return Ok(());
            }
            let mut set_many = SET_MANY.key(hash_key(bucket));
            set_many.arg(max_keys).arg(HSET_CHUNK_PAIRS * 2);
            for (key, value) in items {
                set_many.arg(key).arg(value);
            }
            let written: i64 = self.query(bucket, &Query::Script(set_many), true).await?;
            if written == 1 {
                Ok(())
            } else {
                Err(too_many_keys(bucket, max_keys))
            }
        })
    }

    fn delete_many<'a>(&'a self, bucket: &'a BucketId, keys: Vec<String>) -> KvFuture<'a, ()> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            let mut hdel = cmd("HDEL", bucket);
            hdel.arg(keys);
            let _deleted: i64 = self.query(bucket, &Query::Cmd(hdel), true).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
