//! Key-value storage for guests: the host side of `wasi:keyvalue@0.2.0-draft` (interfaces
//! `store`, `atomics` and `batch`), with two backends: an embedded SQLite file per bucket
//! ([`sqlite`], the default, needs nothing else) and Redis ([`redis`], for more than one node).
//!
//! # Shape
//!
//! - A [`KeyValueBackend`] is one kind of storage. It serves many buckets; a bucket is named by
//!   a [`BucketId`]: the function's *scope* (its tenant) and the *store* name the guest opened.
//! - [`KeyValueStores`] says which backend (and which [`KeyValueLimits`]) serves which store
//!   name: stores named in the runtime config get their own backend, every other granted name
//!   goes to the fallback (the embedded SQLite).
//! - [`KeyValueGrant`] is what one function may open; [`KeyValueCtx`] is the per-request state;
//!   [`KeyValueView`] lends it, together with the `ResourceTable` the request shares with WASI and
//!   HTTP, to the host functions that [`add_to_linker`] installs.
//!
//! # Scope isolation
//!
//! The guest names only the store; the scope comes from the grant, never from the guest. Every
//! backend addresses storage by the whole [`BucketId`] (SQLite: `DIR/<scope>/kv/<store>.db`;
//! Redis: the hash `wedge:kv:<scope>:<store>`), so two tenants that both open `cache` reach
//! different files or hashes. A [`BucketId`] can only be built from names that pass
//! [`BucketId::new`]'s check (lowercase letters, digits, `-` and `_`, starting with a letter or
//! digit), so a name can never climb out of its directory (`..`, `/`) or run into the next part
//! of a Redis key (`:`), whatever a caller forgot to validate.
//!
//! # Limits and failures
//!
//! Keys and values are checked against the store's limits before the backend is asked; the key
//! count (`max_keys`) is checked by the backend atomically with the write (a SQLite
//! `BEGIN IMMEDIATE` transaction, a Redis Lua script), so concurrent writers can never push a
//! bucket past it, and a batch that would is refused whole. Every limit violation reaches the
//! guest as `error::other` with a message naming the limit and its value; nothing traps.
//!
//! Every backend call is bounded by the store's `timeout` and by the request's deadline (less a
//! small margin, so the guest still gets to answer). A backend that is down, slow or broken
//! yields `error::other("key-value store `NAME` is unavailable: ...")` and one warning in the
//! log; the next call tries again (the SQLite pool reopens files, the Redis pool reconnects).
//! A call that timed out may still have been applied: the guest learns "unknown", not "no".

mod host;
pub mod redis;
pub mod sqlite;

#[cfg(test)]
use host::{Bucket, atomics, batch, store};
pub use host::{KeyValue, KeyValueCtx, KeyValueCtxView, KeyValueView, add_to_linker};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTableError;

use crate::names::{NameError, Scope, StateName};

/// How much of a request's remaining time a key-value call leaves unused, so that the guest
/// can still turn a failed call into a response before the request's deadline.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(50);

/// Per-store limits (configurable per store in the runtime config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValueLimits {
    /// The longest key, in bytes.
    pub max_key_size: usize,
    /// The largest value, in bytes.
    pub max_value_size: usize,
    /// How many keys one bucket may hold.
    pub max_keys: u64,
    /// The longest one call may take (the request's deadline may cut it shorter).
    pub timeout: Duration,
    /// The largest an embedded (SQLite) store's file may grow, in bytes. The embedded backend
    /// is built with it ([`sqlite::SqliteKeyValue::with_store_max_size`]); a server sizes its own.
    pub max_size: u64,
}

impl Default for KeyValueLimits {
    fn default() -> Self {
        Self {
            max_key_size: 1024,
            max_value_size: 1024 * 1024,
            max_keys: 100_000,
            timeout: Duration::from_secs(2),
            max_size: sqlite::DEFAULT_MAX_SIZE,
        }
    }
}

/// What went wrong in a key-value call. Every variant but [`KeyValueError::Resource`] reaches
/// the guest as a `wasi:keyvalue/store.error` (see [`KeyValueError::into_wit`]); `Resource` (a
/// handle the guest cannot have) traps.
#[derive(Debug, thiserror::Error)]
pub enum KeyValueError {
    #[error("key-value store `{store}` is not granted to this function")]
    AccessDenied { store: String },
    #[error("invalid key-value name: {0}")]
    InvalidName(#[from] NameError),
    #[error("the key is empty")]
    EmptyKey,
    #[error("a key of {len} bytes is longer than max_key_size ({max} bytes)")]
    KeyTooLong { len: usize, max: usize },
    #[error("a value of {len} bytes is larger than max_value_size ({max} bytes)")]
    ValueTooLarge { len: usize, max: usize },
    #[error(
        "key-value store `{store}` is full: it holds max_keys ({max_keys}) keys, so no new key can be added"
    )]
    TooManyKeys { store: String, max_keys: u64 },
    #[error(
        "key-value store `{store}` is full: it has reached its size limit of {} (`max_size` in the runtime config), so nothing more can be written; delete keys to make room",
        wedge_engine::units::format_size(*max_size)
    )]
    StoreTooLarge { store: String, max_size: u64 },
    #[error(
        "the value of `{key}` is not a decimal number between 0 and 18446744073709551615, so it cannot be incremented"
    )]
    NotANumber { key: String },
    #[error("incrementing `{key}` by {delta} overflows 18446744073709551615")]
    Overflow { key: String, delta: u64 },
    #[error("key-value store `{store}` is unavailable: {reason}")]
    Unavailable { store: String, reason: String },
    #[error("invalid key-value backend configuration: {0}")]
    InvalidConfig(String),
    #[error("key-value resource: {0}")]
    Resource(#[from] ResourceTableError),
}

impl KeyValueError {
    /// Whether this is a failure of the backend (as opposed to a refused request).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A future returned by a [`KeyValueBackend`].
pub type KvFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KeyValueError>> + Send + 'a>>;

/// One bucket: the scope (tenant) it belongs to and the store name the guest opened. Both are
/// checked on construction, so a backend may put them into paths and keys as they are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketId {
    scope: Scope,
    store: StateName,
}

impl BucketId {
    /// Both names are checked by the one rule of [`crate::names`].
    pub fn new(scope: &str, store: &str) -> Result<Self, KeyValueError> {
        Ok(Self::of(
            &Scope::new(scope)?,
            &StateName::new("store", store)?,
        ))
    }

    /// From names already checked.
    pub fn of(scope: &Scope, store: &StateName) -> Self {
        Self {
            scope: scope.clone(),
            store: store.clone(),
        }
    }

    pub fn scope(&self) -> &str {
        self.scope.as_str()
    }

    pub fn store(&self) -> &str {
        self.store.as_str()
    }

    /// The error for a failed backend call on this bucket.
    pub fn unavailable(&self, reason: impl std::fmt::Display) -> KeyValueError {
        KeyValueError::Unavailable {
            store: self.store.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// One page of `list-keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// Where the next page starts; `None` when this is the last page.
    pub cursor: Option<u64>,
}

/// How many keys a `list-keys` page holds at most (Redis takes it as a hint).
pub const LIST_PAGE_SIZE: usize = 1000;

/// Parses a counter as `increment` stores it: decimal ASCII digits (leading zeros allowed),
/// at most `u64::MAX`. Anything else (a sign, spaces, an empty value) is not a counter.
pub fn parse_counter(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A backend: one kind of storage, serving many buckets.
///
/// Keys, values and limits arrive checked (non-empty keys within `max_key_size`, values within
/// `max_value_size`); the backend enforces `max_keys` atomically with the write. Failures of
/// the storage itself are [`KeyValueError::Unavailable`] (see [`BucketId::unavailable`]). The
/// caller bounds every future with a timeout and may drop it at any point.
pub trait KeyValueBackend: Send + Sync + 'static {
    /// Makes the bucket ready (a backend that needs no preparation returns at once).
    fn open<'a>(&'a self, bucket: &'a BucketId) -> KvFuture<'a, ()>;

    fn get<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, Option<Vec<u8>>>;

    /// Stores `value` under `key`. If `key` is new and the bucket already holds `max_keys`
    /// keys, fails with [`KeyValueError::TooManyKeys`] and writes nothing.
    fn set<'a>(
        &'a self,
        bucket: &'a BucketId,
        key: String,
        value: Vec<u8>,
        max_keys: u64,
    ) -> KvFuture<'a, ()>;

    /// Deleting a missing key is not an error.
    fn delete<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, ()>;

    fn exists<'a>(&'a self, bucket: &'a BucketId, key: String) -> KvFuture<'a, bool>;

    /// One page of keys from `cursor` (`None`: the first page). Any `cursor` a guest makes up
    /// must give a page or an error, never a panic.
    fn list_keys<'a>(&'a self, bucket: &'a BucketId, cursor: Option<u64>) -> KvFuture<'a, KeyPage>;

    /// Adds `delta` to the counter under `key` (a missing key counts as 0; see
    /// [`parse_counter`]) and returns the new value, stored as decimal ASCII. A missing key is a
    /// new key for `max_keys`.
    fn increment<'a>(
        &'a self,
        bucket: &'a BucketId,
        key: String,
        delta: u64,
        max_keys: u64,
    ) -> KvFuture<'a, u64>;

    /// The values of `keys`, in their order (`None` for a missing key).
    fn get_many<'a>(
        &'a self,
        bucket: &'a BucketId,
        keys: Vec<String>,
    ) -> KvFuture<'a, Vec<Option<Vec<u8>>>>;

    /// Stores all pairs or none: if the new keys among them would take the bucket past
    /// `max_keys`, fails with [`KeyValueError::TooManyKeys`] and writes nothing. A key given
    /// twice gets its last value.
    fn set_many<'a>(
        &'a self,
        bucket: &'a BucketId,
        items: Vec<(String, Vec<u8>)>,
        max_keys: u64,
    ) -> KvFuture<'a, ()>;

    fn delete_many<'a>(&'a self, bucket: &'a BucketId, keys: Vec<String>) -> KvFuture<'a, ()>;
}

/// Which backend serves which store name: named ones from the runtime config, every other
/// granted name by the fallback (the embedded SQLite).
pub struct KeyValueStores {
    fallback: StoreBackend,
    named: HashMap<String, StoreBackend>,
}

#[derive(Clone)]
struct StoreBackend {
    backend: Arc<dyn KeyValueBackend>,
    limits: KeyValueLimits,
}

impl KeyValueStores {
    pub fn new(fallback: Arc<dyn KeyValueBackend>, fallback_limits: KeyValueLimits) -> Self {
        Self {
            fallback: StoreBackend {
                backend: fallback,
                limits: fallback_limits,
            },
            named: HashMap::new(),
        }
    }

    /// Serves the store named `store` (in every scope) by `backend`, with `limits`.
    pub fn insert(
        &mut self,
        store: String,
        backend: Arc<dyn KeyValueBackend>,
        limits: KeyValueLimits,
    ) {
        self.named.insert(store, StoreBackend { backend, limits });
    }

    /// The limits the store named `store` is served with.
    pub fn limits(&self, store: &str) -> &KeyValueLimits {
        &self.serving(store).limits
    }

    fn serving(&self, store: &str) -> &StoreBackend {
        self.named.get(store).unwrap_or(&self.fallback)
    }
}

/// What one function may open: its scope (tenant) and the store names it is granted.
#[derive(Debug, Clone)]
pub struct KeyValueGrant {
    pub scope: Scope,
    pub stores: Vec<StateName>,
}

#[cfg(test)]
mod tests;
