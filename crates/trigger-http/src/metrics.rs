//! The HTTP trigger's own counters, rendered after the host's (function and node) metrics.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of requests that reached no function.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    pub unrouted: AtomicU64,
}

/// Appends the trigger's counters in the Prometheus text format.
pub fn render(out: &mut String, gateway: &GatewayMetrics) {
    let _ = writeln!(
        out,
        "# HELP wedge_unrouted_requests_total Requests that matched no route (404).\n# TYPE wedge_unrouted_requests_total counter\nwedge_unrouted_requests_total {}",
        gateway.unrouted.load(Ordering::Relaxed)
    );
}
