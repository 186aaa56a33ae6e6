//! The log writer: log lines go into one bounded in-memory buffer, and a
//! thread of its own writes that buffer out, a batch per write.
//!
//! It owns the buffer, the writer thread and the count of dropped lines. It
//! must never make a request wait: appending a line is a short critical
//! section (a copy into the buffer) and, when the buffer is full, the line is
//! dropped and counted instead. Formatting is not done here: the `tracing`
//! subscriber formats each event into one line before it is appended, and
//! the JSON access line comes formatted from [`super::access`].
//!
//! Why not `tracing-appender`'s non-blocking writer: it allocated a `Vec` per
//! line, woke its thread through a channel for nearly every line under load,
//! and wrote each line with a system call of its own. Here the thread is
//! woken only when a line finds the buffer empty, then lets lines gather for
//! [`GATHER`] and writes them all at once: at 20,000 lines/s that is about
//! 200 wakes and writes a second instead of 20,000 of each (`make bench`,
//! access log on).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Bytes of log lines held while the writer catches up (a slow terminal,
/// pipe or disk) before lines are dropped: some seconds of a busy proxy's
/// access log.
pub const CAPACITY: usize = 4 << 20;

/// How long the thread lets lines gather after the first one of a batch.
/// A line reaches the output at most this late (plus the write itself).
const GATHER: Duration = Duration::from_millis(5);

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    dropped: AtomicU64,
    capacity: usize,
}

struct State {
    buf: Vec<u8>,
    /// The thread waits for a line: the next one appended wakes it.
    waiting: bool,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a panic while holding the lock cannot leave the buffer half a line
        // longer than it should: extend_from_slice is the only change made
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut st = self.lock();
        if st.closed || st.buf.len() + line.len() > self.capacity {
            drop(st);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        st.buf.extend_from_slice(line);
        if st.waiting {
            st.waiting = false;
            drop(st);
            self.wake.notify_one();
        }
    }
}

/// Where `tracing` writes its lines: cheap to clone, one per subscriber.
#[derive(Clone)]
pub struct LogWriter(Arc<Shared>);

impl LogWriter {
    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// One event's writer. The subscriber writes each event's line with one
/// `write_all`, so a line is appended, or dropped, whole.
pub struct LineSink<'a>(&'a Shared);

impl Write for LineSink<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.0.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSink(&self.0)
    }
}

/// How long the guard's drop waits for the last lines to be written: an
/// output that does not take them (a full pipe, a stopped terminal) must
/// not keep the process from exiting.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Stops the writer thread when dropped, after it has written every line
/// appended before, or after [`SHUTDOWN_WAIT`] if the output blocks.
#[must_use = "dropping the guard stops the log writer"]
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the thread ends.
    ended: mpsc::Receiver<()>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take()
            && let Err(mpsc::RecvTimeoutError::Disconnected) =
                self.ended.recv_timeout(SHUTDOWN_WAIT)
        {
            let _ = t.join();
        }
        // else: the thread is stuck in a write; it is left behind, and the
        // process exits without it
    }
}

/// Starts the writer thread writing to `out`, with room for `capacity`
/// bytes of lines. When the thread cannot be started, that is said on
/// stderr and every line is dropped (and counted) rather than written by
/// the requests' own threads.
pub fn spawn<W>(out: W, capacity: usize) -> (LogWriter, WriterGuard)
where
    W: Write + Send + 'static,
{
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buf: Vec::new(),
            waiting: false,
            closed: false,
        }),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
        capacity,
    });
    let (ending, ended) = mpsc::channel::<()>();
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("gatehouse-log".to_owned())
            .spawn(move || {
                // dropped when the thread ends, however it ends
                let _ending = ending;
                run(&shared, out);
            })
    };
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            // without the thread nothing would ever be written: say so where
            // it can still be read, and leave the lines unwritten rather than
            // block requests on the output
            let _ = writeln!(io::stderr(), "gatehouse: cannot start the log writer: {e}");
            shared.lock().closed = true;
            None
        }
    };
    (
        LogWriter(shared.clone()),
        WriterGuard {
            shared,
            thread,
            ended,
        },
    )
}

fn run<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let closed = {
            let mut st = shared.lock();
            while st.buf.is_empty() && !st.closed {
                st.waiting = true;
                st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            st.waiting = false;
            if st.buf.is_empty() {
                // closed, and every line written
                let _ = out.flush();
                return;
            }
            st.closed
        };
        if !closed {
            // let the lines of the next few milliseconds join this write
            std::thread::sleep(GATHER);
        }
        std::mem::swap(&mut shared.lock().buf, &mut batch);
        // a failed write (a closed pipe) loses this batch only; the next
        // one is tried again
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > CAPACITY / 4 {
            // after a burst, do not keep the burst's memory
            batch.shrink_to(64 << 10);
        }
    }
}

#[cfg(test)]
mod tests;
