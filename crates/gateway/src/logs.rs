//! Each function's log: a bounded ring of lines (guest stdout/stderr and wedge's notes about
//! its requests), each tagged with the request id.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Lines kept per function; older ones are dropped first.
pub const LOG_CAPACITY: usize = 1000;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// A note from wedge about the request (a trap, a timeout, malformed output).
    Wedge,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Wedge => "wedge",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogLine {
    pub unix_millis: u64,
    pub request_id: String,
    pub stream: Stream,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct FunctionLog {
    lines: Mutex<VecDeque<LogLine>>,
}

impl FunctionLog {
    pub fn push(&self, function: &str, request_id: &str, stream: Stream, text: &str) {
        let unix_millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        // Also into wedge's own log, one structured line each: readable, never interleaved.
        tracing::info!(target: "wedge::guest", function, request_id, stream = stream.as_str(), "{text}");
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == LOG_CAPACITY {
            lines.pop_front();
        }
        lines.push_back(LogLine {
            unix_millis,
            request_id: request_id.to_string(),
            stream,
            text: text.to_string(),
        });
    }

    /// Splits captured output into lines and appends them.
    pub fn push_output(
        &self,
        function: &str,
        request_id: &str,
        stream: Stream,
        bytes: &[u8],
        dropped: usize,
    ) {
        if bytes.is_empty() && dropped == 0 {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        for line in text.lines() {
            self.push(function, request_id, stream, line);
        }
        if dropped > 0 {
            self.push(
                function,
                request_id,
                Stream::Wedge,
                &format!(
                    "{dropped} more bytes of {} were dropped (per-request capture limit)",
                    stream.as_str()
                ),
            );
        }
    }

    /// A copy of the lines currently kept, oldest first.
    pub fn snapshot(&self) -> Vec<LogLine> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_bounded_and_keeps_the_newest() {
        let log = FunctionLog::default();
        for i in 0..LOG_CAPACITY + 10 {
            log.push("f", "r", Stream::Stdout, &i.to_string());
        }
        let lines = log.snapshot();
        assert_eq!(lines.len(), LOG_CAPACITY);
        assert_eq!(lines[0].text, "10");
        assert_eq!(lines.last().unwrap().text, (LOG_CAPACITY + 9).to_string());
    }
}
