//! Each function's log: a bounded ring of lines (guest stdout/stderr and wedge's notes about
//! its requests), each tagged with the request id. Followers (the deploy API's
//! `logs?follow=1`) get every new line as it is pushed.
//!
//! A function's log outlives its versions: a redeploy hands the same log to the new version,
//! so `wedge logs -f` keeps following across it.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Lines kept per function; older ones are dropped first.
pub const LOG_CAPACITY: usize = 1000;

/// Lines a follower may fall behind before it misses some (and is told so).
const FOLLOW_BACKLOG: usize = 1024;

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

impl LogLine {
    /// `2026-11-23T16:40:01.123Z <request id> stdout: text`, one line, no newline.
    pub fn render(&self) -> String {
        format!(
            "{} {} {}: {}",
            crate::time::rfc3339_millis(self.unix_millis),
            self.request_id,
            self.stream.as_str(),
            self.text
        )
    }
}

#[derive(Debug, Default)]
pub struct FunctionLog {
    inner: Mutex<LogInner>,
}

#[derive(Debug, Default)]
struct LogInner {
    lines: VecDeque<LogLine>,
    /// Made by the first follower: a channel preallocates its backlog, which thousands of
    /// idle functions should not pay for.
    followers: Option<broadcast::Sender<LogLine>>,
}

impl FunctionLog {
    pub fn push(&self, function: &str, request_id: &str, stream: Stream, text: &str) {
        let unix_millis = crate::time::now_millis();
        // Also into wedge's own log, one structured line each: readable, never interleaved.
        tracing::info!(target: "wedge::guest", function, request_id, stream = stream.as_str(), "{text}");
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.lines.len() == LOG_CAPACITY {
            inner.lines.pop_front();
        }
        let line = LogLine {
            unix_millis,
            request_id: request_id.to_string(),
            stream,
            text: text.to_string(),
        };
        // Sent under the lock, so a follower's snapshot and its stream neither overlap
        // nor leave a gap.
        if let Some(followers) = &inner.followers
            && followers.receiver_count() > 0
        {
            let _ = followers.send(line.clone());
        }
        inner.lines.push_back(line);
    }

    /// The lines kept so far and a stream of every line pushed after them. The stream ends
    /// when the function is gone (its last version dropped).
    pub fn follow(&self) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = inner
            .followers
            .get_or_insert_with(|| broadcast::channel(FOLLOW_BACKLOG).0)
            .subscribe();
        (inner.lines.iter().cloned().collect(), receiver)
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
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lines
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

    #[test]
    fn a_follower_gets_the_past_then_every_new_line() {
        let log = FunctionLog::default();
        log.push("f", "r1", Stream::Stdout, "before");
        let (past, mut new) = log.follow();
        log.push("f", "r2", Stream::Stderr, "after");
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].text, "before");
        let line = new.try_recv().unwrap();
        assert_eq!(line.text, "after");
        assert!(
            line.render().ends_with(" r2 stderr: after"),
            "{}",
            line.render()
        );
        drop(log);
        assert!(matches!(
            new.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
    }
}
