//! Durable queues: what producers send to and what the queue trigger delivers from.
//!
//! # Shape
//!
//! - A [`QueueBackend`] is one kind of queue storage; it serves many queues, each named by a
//!   [`QueueId`]: the scope (tenant) and the queue's name. Backends: [`sqlite`] (embedded, the
//!   default: one SQLite file per scope in the data dir); others (Redis Streams, for more
//!   than one node) plug in through the same trait, chosen per queue name by the runtime
//!   config ([`Queues`]).
//! - Delivery is at least once, with leases: [`QueueBackend::receive`] leases a batch of
//!   ready messages (each lease has a deadline; a message whose consumer died becomes ready
//!   again when it passes), and [`QueueBackend::settle`] ends each lease: acknowledged (gone),
//!   retried after a delay, dead-lettered (kept, listable, replayable), or acknowledged
//!   together with a message sent to another queue (a stream function's output: on the
//!   embedded backend one transaction, so consume-transform-produce is exactly once).
//! - Producers are the deploy API, `wedge queues send`, and guests granted `queues = [...]`
//!   (`wedge:queue/producer`, [`host`]).
//!
//! # Scope isolation
//!
//! As with key-value and SQL, the guest and the API name only the queue; the scope comes from
//! the function (`app`, or `fn-NAME` for a deployed one), never from the caller's text, and a
//! [`QueueId`] is built from checked names only ([`crate::names`]).

mod host;
pub mod sqlite;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use host::{Queue, QueueCtx, QueueCtxView, QueueView, add_to_linker};

use crate::names::{NameError, Scope, StateName};

/// A future returned by a [`QueueBackend`].
pub type QueueFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, QueueError>> + Send + 'a>>;

/// One queue: its scope and its name, both checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId {
    scope: Scope,
    name: StateName,
}

impl QueueId {
    pub fn new(scope: &str, name: &str) -> Result<Self, QueueError> {
        Ok(Self::of(
            &Scope::new(scope)?,
            &StateName::new("queue", name)?,
        ))
    }

    pub fn of(scope: &Scope, name: &StateName) -> Self {
        Self {
            scope: scope.clone(),
            name: name.clone(),
        }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    pub fn name(&self) -> &StateName {
        &self.name
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.scope, self.name)
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub body: Bytes,
    pub content_type: Option<String>,
}

/// What ends one lease, chosen by the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: the message is gone.
    Ack,
    /// Try again after `delay` (the next delivery counts one more attempt).
    Retry { delay: Duration },
    /// Give up: the message moves to the queue's dead-letter list with the reason.
    DeadLetter { reason: String },
    /// Done, and `message` goes to `output` (a stream function's result). Where
    /// [`QueueBackend::atomic_with`] says so, both happen in one transaction.
    AckAndSend {
        output: QueueId,
        message: NewMessage,
    },
}

/// A leased message: delivered to one consumer until settled or until its lease passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// Unique within its queue, stable across attempts (the CloudEvents `ce-id`).
    pub id: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    /// Which delivery this is: 1 for the first.
    pub attempt: u32,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub enqueued_ms: u64,
    /// What [`QueueBackend::settle`] needs to end this lease (and no later one).
    pub lease: LeaseToken,
}

/// Identifies one lease of one message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub String);

/// A message that was given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub attempts: u32,
    pub enqueued_ms: u64,
    pub died_ms: u64,
    pub reason: String,
}

/// How full a queue is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages waiting (ready, delayed for a retry, or leased).
    pub depth: u64,
    /// Of those, leased to a consumer now.
    pub in_flight: u64,
    /// Messages in the dead-letter list.
    pub dead: u64,
    /// When the oldest waiting message was sent (ms since the Unix epoch).
    pub oldest_enqueued_ms: Option<u64>,
}

/// How to lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// The most messages to lease at once.
    pub max: usize,
    /// How long each lease lasts (longer than the function's timeout).
    pub lease: Duration,
    /// First in, first out: only the oldest messages, and none while an older one is
    /// leased or waiting for its retry.
    pub ordered: bool,
}

/// What went wrong with a queue call.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue `{0}` is not granted to this function")]
    AccessDenied(String),
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error("a message of {size} bytes is larger than max_message_size ({max} bytes)")]
    TooLarge { size: usize, max: usize },
    #[error("queue `{queue}` is unavailable: {reason}")]
    Unavailable { queue: String, reason: String },
    #[error(
        "queue `{queue}` is full: it has reached its size limit of {}; let its consumers catch up",
        wedge_engine::units::format_size(*max_size)
    )]
    Full { queue: String, max_size: u64 },
    #[error("invalid queue backend configuration: {0}")]
    InvalidConfig(String),
}

impl QueueError {
    pub fn unavailable(queue: &QueueId, reason: impl std::fmt::Display) -> Self {
        QueueError::Unavailable {
            queue: queue.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// One kind of queue storage.
pub trait QueueBackend: Send + Sync + 'static {
    /// Appends `messages`, durably before it answers; returns their ids in order.
    fn send<'a>(
        &'a self,
        queue: &'a QueueId,
        messages: Vec<NewMessage>,
    ) -> QueueFuture<'a, Vec<String>>;

    /// Leases up to `options.max` ready messages (none: an empty list).
    fn receive<'a>(
        &'a self,
        queue: &'a QueueId,
        options: ReceiveOptions,
    ) -> QueueFuture<'a, Vec<Leased>>;

    /// Ends leases, all in one transaction where the backend has them. A lease that has
    /// passed (and may be held by another consumer now) is left alone.
    fn settle<'a>(
        &'a self,
        queue: &'a QueueId,
        settlements: Vec<(LeaseToken, Settlement)>,
    ) -> QueueFuture<'a, ()>;

    /// Whether [`Settlement::AckAndSend`] from `queue` to `output` is one transaction.
    fn atomic_with(&self, queue: &QueueId, output: &QueueId) -> bool;

    /// The dead-letter list, oldest first.
    fn dead_letters<'a>(
        &'a self,
        queue: &'a QueueId,
        limit: usize,
    ) -> QueueFuture<'a, Vec<DeadLetter>>;

    /// Moves dead letters (those with `ids`, or all) back to the queue as new messages with
    /// their attempts reset; returns how many.
    fn replay<'a>(&'a self, queue: &'a QueueId, ids: Option<Vec<String>>) -> QueueFuture<'a, u64>;

    fn stats<'a>(&'a self, queue: &'a QueueId) -> QueueFuture<'a, QueueStats>;

    /// Resolves when a message may have become ready on `queue` (a send through this
    /// backend), or after `timeout` (messages delayed for a retry, sends from elsewhere).
    fn wait<'a>(&'a self, queue: &'a QueueId, timeout: Duration) -> QueueFuture<'a, ()>;
}

/// Limits of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimits {
    /// The largest message body.
    pub max_message_size: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_message_size: 256 << 10,
        }
    }
}

#[derive(Clone)]
struct Served {
    backend: Arc<dyn QueueBackend>,
    limits: QueueLimits,
}

/// Which backend (and which limits) serve which queue name: names the runtime config lists
/// get their own, every other one goes to the fallback (the embedded SQLite).
#[derive(Clone)]
pub struct Queues {
    fallback: Served,
    named: HashMap<String, Served>,
}

impl Queues {
    pub fn new(fallback: Arc<dyn QueueBackend>, limits: QueueLimits) -> Self {
        Self {
            fallback: Served {
                backend: fallback,
                limits,
            },
            named: HashMap::new(),
        }
    }

    pub fn insert(&mut self, name: String, backend: Arc<dyn QueueBackend>, limits: QueueLimits) {
        self.named.insert(name, Served { backend, limits });
    }

    fn served(&self, name: &StateName) -> &Served {
        self.named.get(name.as_str()).unwrap_or(&self.fallback)
    }

    /// The backend serving `queue`.
    pub fn backend(&self, queue: &QueueId) -> &Arc<dyn QueueBackend> {
        &self.served(queue.name()).backend
    }

    pub fn limits(&self, queue: &QueueId) -> &QueueLimits {
        &self.served(queue.name()).limits
    }

    /// The queue names the runtime config lists.
    pub fn configured(&self) -> impl Iterator<Item = &str> {
        self.named.keys().map(String::as_str)
    }

    /// Sends after checking each message against the queue's limits (all or none).
    pub async fn send(
        &self,
        queue: &QueueId,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<String>, QueueError> {
        let served = self.served(queue.name());
        for message in &messages {
            if message.body.len() > served.limits.max_message_size {
                return Err(QueueError::TooLarge {
                    size: message.body.len(),
                    max: served.limits.max_message_size,
                });
            }
        }
        served.backend.send(queue, messages).await
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
