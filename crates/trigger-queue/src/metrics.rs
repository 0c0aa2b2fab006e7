//! Per-consumer counters, rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use wedge_capabilities::queue::QueueStats;

use crate::deliver::Outcome;

#[derive(Debug, Default)]
pub struct ConsumerMetrics {
    pub deliveries: AtomicU64,
    pub acked: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub backend_errors: AtomicU64,
    depth: AtomicU64,
    in_flight: AtomicU64,
    dead: AtomicU64,
    /// When the oldest waiting message was sent (ms since the epoch; 0: none).
    oldest_ms: AtomicU64,
}

impl ConsumerMetrics {
    pub fn count(&self, outcome: Outcome) {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
            Outcome::Acked => &self.acked,
            Outcome::Retried => &self.retried,
            Outcome::DeadLettered => &self.dead_lettered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe(&self, stats: &QueueStats) {
        self.depth.store(stats.depth, Ordering::Relaxed);
        self.in_flight.store(stats.in_flight, Ordering::Relaxed);
        self.dead.store(stats.dead, Ordering::Relaxed);
        self.oldest_ms
            .store(stats.oldest_enqueued_ms.unwrap_or(0), Ordering::Relaxed);
    }
}

/// One series: its name, type, help, and how to read it from a consumer's metrics (given the
/// time now, in ms since the epoch).
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ConsumerMetrics, u64) -> u64,
);

pub fn render<'a>(
    out: &mut String,
    consumers: impl Iterator<Item = (&'a str, usize, &'a str, &'a ConsumerMetrics)> + Clone,
) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let series: [Series; 8] = [
        (
            "wedge_queue_deliveries_total",
            "counter",
            "Deliveries of queue messages to functions.",
            |m, _| m.deliveries.load(Ordering::Relaxed),
        ),
        (
            "wedge_queue_acks_total",
            "counter",
            "Deliveries acknowledged (the function answered 2xx or returned).",
            |m, _| m.acked.load(Ordering::Relaxed),
        ),
        (
            "wedge_queue_retries_total",
            "counter",
            "Deliveries that failed and will be retried.",
            |m, _| m.retried.load(Ordering::Relaxed),
        ),
        (
            "wedge_queue_dead_lettered_total",
            "counter",
            "Messages moved to the dead-letter list.",
            |m, _| m.dead_lettered.load(Ordering::Relaxed),
        ),
        (
            "wedge_queue_backend_errors_total",
            "counter",
            "Failed calls to the queue's backend.",
            |m, _| m.backend_errors.load(Ordering::Relaxed),
        ),
        (
            "wedge_queue_depth",
            "gauge",
            "Messages waiting in the queue (ready, delayed or leased).",
            |m, _| m.depth.load(Ordering::Relaxed),
        ),
        (
            "wedge_queue_dead_letters",
            "gauge",
            "Messages in the queue's dead-letter list.",
            |m, _| m.dead.load(Ordering::Relaxed),
        ),
        (
            "wedge_queue_oldest_message_age_seconds",
            "gauge",
            "Age of the oldest waiting message (0: none).",
            |m, now| match m.oldest_ms.load(Ordering::Relaxed) {
                0 => 0,
                oldest => now.saturating_sub(oldest) / 1000,
            },
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (function, index, queue, metrics) in consumers.clone() {
            let _ = writeln!(
                out,
                "{name}{{function=\"{function}\",trigger=\"{index}\",queue=\"{queue}\"}} {}",
                value(metrics, now_ms)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP wedge_queue_in_flight Messages leased to a consumer now.\n# TYPE wedge_queue_in_flight gauge"
    );
    for (function, index, queue, metrics) in consumers {
        let _ = writeln!(
            out,
            "wedge_queue_in_flight{{function=\"{function}\",trigger=\"{index}\",queue=\"{queue}\"}} {}",
            metrics.in_flight.load(Ordering::Relaxed)
        );
    }
}
