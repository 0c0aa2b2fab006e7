//! Request ids: short, unique within a process run, and unlikely to repeat across runs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// `<run>-<n>`: the run part differs between restarts, the counter within one.
pub fn next() -> String {
    static RUN: OnceLock<u32> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or_default();
        nanos ^ std::process::id().rotate_left(16)
    });
    format!("{run:08x}-{:06}", NEXT.fetch_add(1, Ordering::Relaxed))
}
