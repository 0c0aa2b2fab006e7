//! The queue endpoints of the deploy API (docs/api.md, "Queues"):
//!
//! ```text
//! GET  /_wedge/api/v1/queues                      every queue the node knows, with its depth
//! GET  /_wedge/api/v1/queues/{name}               one queue's depth, in flight, dead letters
//! POST /_wedge/api/v1/queues/{name}/messages      the body is one message (its Content-Type kept)
//! POST /_wedge/api/v1/queues/{name}/batch         a JSON array: each element one JSON message
//! GET  /_wedge/api/v1/queues/{name}/dlq           the dead-letter list (?limit=N, 100 by default)
//! POST /_wedge/api/v1/queues/{name}/dlq/replay    all dead letters back ({"ids": [...]}: some)
//! ```
//!
//! A queue lives in a scope: the app's, or with `?function=NAME` that function's (a deployed
//! function's queues are its own).

use bytes::Bytes;
use serde_json::{Value, json};
use wedge_capabilities::queue::{NewMessage, QueueError, QueueId, QueueStats};

/// One query parameter's value.
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

pub(crate) fn stats_json(queue: &QueueId, stats: &QueueStats) -> Value {
    json!({
        "name": queue.name().as_str(),
        "scope": queue.scope().as_str(),
        "depth": stats.depth,
        "in_flight": stats.in_flight,
        "dead_letters": stats.dead,
        "oldest_enqueued": stats.oldest_enqueued_ms.map(wedge_host::time::rfc3339_millis),
    })
}

/// The messages of a `batch` body: a JSON array, each element sent as its JSON text.
pub(crate) fn batch_messages(body: &[u8]) -> Result<Vec<NewMessage>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| format!("the body is not JSON: {error}"))?;
    let Value::Array(items) = value else {
        return Err(
            "the body must be a JSON array of messages, e.g. [{\"n\": 1}, {\"n\": 2}]".into(),
        );
    };
    if items.is_empty() {
        return Err("the array is empty: send at least one message".into());
    }
    Ok(items
        .into_iter()
        .map(|item| NewMessage {
            body: Bytes::from(item.to_string()),
            content_type: Some("application/json".into()),
        })
        .collect())
}

/// The status and stable code of a queue error.
pub(crate) fn error_status(error: &QueueError) -> (u16, &'static str) {
    match error {
        QueueError::AccessDenied(_) => (403, "forbidden"),
        QueueError::InvalidName(_) => (400, "invalid_request"),
        QueueError::TooLarge { .. } => (413, "too_large"),
        QueueError::Full { .. } => (507, "queue_full"),
        QueueError::Unavailable { .. } => (503, "queue_unavailable"),
        QueueError::InvalidConfig(_) => (500, "internal"),
    }
}
