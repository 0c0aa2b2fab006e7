//! `wedge serve`'s log lines go through a queue to a thread of their own, which writes to
//! stderr whatever has queued up in one `write`.
//!
//! Why: the server logs a line per request, and writing each line from the worker thread
//! that served the request cost a system call per request, about an eighth of a hello
//! function's CPU time under load (docs/benchmarks.md). Nothing is dropped: when the queue
//! is full, the logging thread waits for room. [`flush_and_stop`] writes out what is queued;
//! `main` calls it before it exits or reports a failure, and so does the panic hook.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds before a logging thread waits.
const QUEUE_LINES: usize = 16 * 1024;

enum Message {
    Line(Vec<u8>),
    Stop,
}

/// What `tracing_subscriber::fmt` writes each event to.
pub struct QueuedStderr {
    sender: SyncSender<Message>,
}

/// The writer thread, kept where the panic hook can reach it too.
struct Writer {
    sender: SyncSender<Message>,
    thread: JoinHandle<()>,
}

static WRITER: Mutex<Option<Writer>> = Mutex::new(None);

/// Starts the writer thread; log events written to the returned writer reach stderr in order.
pub fn start() -> io::Result<QueuedStderr> {
    let (sender, receiver) = mpsc::sync_channel(QUEUE_LINES);
    let thread = std::thread::Builder::new()
        .name("wedge-log".into())
        .spawn(move || write_lines(receiver))?;
    let queue = QueuedStderr {
        sender: sender.clone(),
    };
    if let Ok(mut writer) = WRITER.lock() {
        *writer = Some(Writer { sender, thread });
    }
    Ok(queue)
}

/// Writes out every queued line and stops the writer thread. Lines logged after it go to
/// stderr directly. Safe to call more than once, and from a panicking thread.
pub fn flush_and_stop() {
    let writer = match WRITER.try_lock() {
        Ok(mut writer) => writer.take(),
        Err(_) => None,
    };
    if let Some(Writer { sender, thread }) = writer
        && sender.send(Message::Stop).is_ok()
    {
        let _ = thread.join();
    }
}

/// While lines keep coming, the writer thread collects them this long between writes.
const BATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(2);

fn write_lines(receiver: Receiver<Message>) {
    let mut out = io::BufWriter::with_capacity(64 << 10, io::stderr());
    // Idle, the thread waits for a line. Once one comes, it writes what is queued every
    // BATCH_PERIOD for as long as more come: a sleeping thread costs a sender nothing, while
    // waking one for each line would cost more than writing the line there and then.
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                // A closed or broken stderr loses log lines but never stops the server.
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Message::Stop => {
                    let _ = out.flush();
                    return;
                }
            }
            next = match receiver.try_recv() {
                Ok(message) => Some(message),
                Err(_) => {
                    let _ = out.flush();
                    std::thread::sleep(BATCH_PERIOD);
                    receiver.try_recv().ok()
                }
            };
        }
    }
    let _ = out.flush();
}

/// One event's text, queued whole when the event is written.
pub struct QueuedLine<'a> {
    line: Vec<u8>,
    sender: &'a SyncSender<Message>,
}

impl<'a> MakeWriter<'a> for QueuedStderr {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine {
            line: Vec::with_capacity(256),
            sender: &self.sender,
        }
    }
}

impl Write for QueuedLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.line);
        // The writer thread has stopped (at exit): write the line directly.
        if let Err(mpsc::SendError(Message::Line(line))) = self.sender.send(Message::Line(line)) {
            let _ = io::stderr().write_all(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_queued_whole_when_its_writer_is_dropped() {
        let (sender, receiver) = mpsc::sync_channel(4);
        let queue = QueuedStderr { sender };
        {
            let mut line = queue.make_writer();
            line.write_all(b"one ").unwrap();
            line.write_all(b"event\n").unwrap();
            assert!(
                receiver.try_recv().is_err(),
                "nothing is sent before the drop"
            );
        }
        match receiver.try_recv() {
            Ok(Message::Line(line)) => assert_eq!(line, b"one event\n"),
            _ => panic!("expected the whole line"),
        }
        // An event that wrote nothing queues nothing.
        drop(queue.make_writer());
        assert!(receiver.try_recv().is_err());
    }
}
