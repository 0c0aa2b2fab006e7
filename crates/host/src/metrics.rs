//! Prometheus metrics, rendered by hand in the text exposition format: a handful of
//! counters and histograms does not justify a metrics framework on the hot path.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub use crate::call::HostMetrics;

/// Histogram bucket bounds in seconds: from tens of microseconds (instantiation) to
/// seconds (slow requests).
const BUCKETS: [f64; 17] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(value.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Metrics of one function.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    responses: Mutex<BTreeMap<u16, u64>>,
    pub latency: Histogram,
    pub instantiation: Histogram,
    pub in_flight: AtomicI64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub rejections: AtomicU64,
    /// Instances of a function that reuses them (or a WASI 0.3 handler).
    pub instances: InstanceMetrics,
}

/// How a function's instances were created and retired.
#[derive(Debug, Default)]
pub struct InstanceMetrics {
    created: AtomicU64,
    live: AtomicI64,
    /// Instances waiting for a request: the next one goes to one of them, not to a new one.
    idle: AtomicI64,
    /// Requests served by instances retired so far.
    requests_of_retired: AtomicU64,
    retired: Mutex<BTreeMap<&'static str, u64>>,
}

impl InstanceMetrics {
    pub fn created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// An instance ended after serving `requests`, for `cause` (`max_requests`, `idle`,
    /// `trap`, `timeout`, `memory_limit`).
    pub fn retired(&self, cause: &'static str, requests: u64) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.requests_of_retired
            .fetch_add(requests, Ordering::Relaxed);
        *self
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(cause)
            .or_default() += 1;
    }

    /// An instance became idle (`true`) or took a request or ended while idle (`false`).
    pub fn set_idle(&self, idle: bool) {
        self.idle
            .fetch_add(if idle { 1 } else { -1 }, Ordering::Relaxed);
    }

    pub fn created_count(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }
}

impl FunctionMetrics {
    pub fn record_response(&self, status: u16, latency: Duration) {
        *self
            .responses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
        self.latency.observe(latency);
    }
}

/// Renders every function's metrics and the node's rejections in the Prometheus text format.
pub fn render<'a>(
    host: &HostMetrics,
    functions: impl Iterator<Item = (&'a str, &'a FunctionMetrics)> + Clone,
) -> String {
    let mut out = String::new();
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };

    header(
        &mut out,
        "wedge_requests_total",
        "counter",
        "Responses by function and status.",
    );
    for (name, m) in functions.clone() {
        for (status, count) in m.responses.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "wedge_requests_total{{function=\"{name}\",status=\"{status}\"}} {count}"
            );
        }
    }
    header(
        &mut out,
        "wedge_request_duration_seconds",
        "histogram",
        "Time from routing to response headers.",
    );
    for (name, m) in functions.clone() {
        m.latency.render(
            &mut out,
            "wedge_request_duration_seconds",
            &format!("function=\"{name}\""),
        );
    }
    header(
        &mut out,
        "wedge_instantiation_duration_seconds",
        "histogram",
        "Time to instantiate a fresh instance for a request.",
    );
    for (name, m) in functions.clone() {
        m.instantiation.render(
            &mut out,
            "wedge_instantiation_duration_seconds",
            &format!("function=\"{name}\""),
        );
    }
    header(
        &mut out,
        "wedge_in_flight_requests",
        "gauge",
        "Requests being handled now.",
    );
    for (name, m) in functions.clone() {
        let _ = writeln!(
            out,
            "wedge_in_flight_requests{{function=\"{name}\"}} {}",
            m.in_flight.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "wedge_traps_total",
        "counter",
        "Requests whose guest trapped.",
    );
    for (name, m) in functions.clone() {
        let _ = writeln!(
            out,
            "wedge_traps_total{{function=\"{name}\"}} {}",
            m.traps.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "wedge_timeouts_total",
        "counter",
        "Requests stopped at their deadline.",
    );
    for (name, m) in functions.clone() {
        let _ = writeln!(
            out,
            "wedge_timeouts_total{{function=\"{name}\"}} {}",
            m.timeouts.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "wedge_rejections_total",
        "counter",
        "Requests refused before running: over capacity (503) or too large (413).",
    );
    for (name, m) in functions.clone() {
        let _ = writeln!(
            out,
            "wedge_rejections_total{{function=\"{name}\",reason=\"function_concurrency\"}} {}",
            m.rejections.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "wedge_rejections_total{{function=\"\",reason=\"global_concurrency\"}} {}",
        host.rejected_global.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "wedge_rejections_total{{function=\"\",reason=\"body_size\"}} {}",
        host.rejected_body_size.load(Ordering::Relaxed)
    );
    // Instances of functions that reuse them (or WASI 0.3 handlers): only those that have
    // had one, so a fresh-per-request function adds no lines.
    let reusing = functions.filter(|(_, m)| m.instances.created_count() > 0);
    header(
        &mut out,
        "wedge_instances_created_total",
        "counter",
        "Instances created for functions that reuse them or are WASI 0.3 handlers.",
    );
    for (name, m) in reusing.clone() {
        let _ = writeln!(
            out,
            "wedge_instances_created_total{{function=\"{name}\"}} {}",
            m.instances.created_count()
        );
    }
    header(
        &mut out,
        "wedge_instances_live",
        "gauge",
        "Instances alive now (serving or idle).",
    );
    for (name, m) in reusing.clone() {
        let _ = writeln!(
            out,
            "wedge_instances_live{{function=\"{name}\"}} {}",
            m.instances.live.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "wedge_instances_idle",
        "gauge",
        "Instances alive and waiting for a request.",
    );
    for (name, m) in reusing.clone() {
        let _ = writeln!(
            out,
            "wedge_instances_idle{{function=\"{name}\"}} {}",
            m.instances.idle.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "wedge_instances_retired_total",
        "counter",
        "Instances retired, by cause: max_requests, idle, trap, timeout, memory_limit.",
    );
    for (name, m) in reusing.clone() {
        let retired = m
            .instances
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (cause, count) in retired.iter() {
            let _ = writeln!(
                out,
                "wedge_instances_retired_total{{function=\"{name}\",cause=\"{cause}\"}} {count}"
            );
        }
    }
    header(
        &mut out,
        "wedge_instance_requests_total",
        "counter",
        "Requests served by the instances retired so far (divide by the retired count for requests per instance).",
    );
    for (name, m) in reusing {
        let _ = writeln!(
            out,
            "wedge_instance_requests_total{{function=\"{name}\"}} {}",
            m.instances.requests_of_retired.load(Ordering::Relaxed)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let f = FunctionMetrics::default();
        f.record_response(200, Duration::from_micros(30));
        f.record_response(500, Duration::from_millis(3));
        let text = render(&HostMetrics::default(), [("hello", &f)].into_iter());
        assert!(text.contains("wedge_requests_total{function=\"hello\",status=\"200\"} 1"));
        assert!(text.contains(
            "wedge_request_duration_seconds_bucket{function=\"hello\",le=\"0.00005\"} 1"
        ));
        assert!(
            text.contains(
                "wedge_request_duration_seconds_bucket{function=\"hello\",le=\"0.005\"} 2"
            )
        );
        assert!(text.contains("wedge_request_duration_seconds_count{function=\"hello\"} 2"));
    }
}
