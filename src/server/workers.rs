//! Connection workers: one thread per core, each running its own
//! single-threaded runtime; the accept loop hands each new connection to the
//! worker serving the fewest.
//!
//! Why not the multi-threaded runtime's work stealing: a request touches
//! its client connection's task and an upstream connection's task, and
//! with stealing these ran on different threads, each hand-off waking the
//! other thread (a system call) and moving the request's cache lines
//! across cores. Here a connection, the upstream connections it uses (the
//! pool keeps one list per worker, see [`current`]) and whatever it spawns
//! stay on one thread, as in nginx's worker processes. Side by side with
//! the bare hyper proxy, a signed-in GET's CPU time went from 33-43 to
//! 25-36 microseconds (the instructions did not change); `make bench`'s
//! rows moved less than that (README, Performance > Threads).
//!
//! What it gives up: a busy connection cannot move to an idle core. A
//! connection is placed where the fewest are open; an HTTP/2 connection's
//! streams all run on its worker, so one client holding a single HTTP/2
//! connection (a front proxy that multiplexes) gets one core, as with
//! nginx. A Redis or provider connection's task runs where it was first
//! used (Redis: on the main runtime, whose revocation feed asks first), and
//! the other threads' commands wake that thread. One Redis connection per
//! worker was tried: after a Sentinel failover or a Redis restart each
//! worker's first command then failed (closed), not only the first one.
//!
//! Owns: the worker threads and their runtimes. Must not: look at what it
//! runs. Everything else (discovery, reload, the revocation feed, metrics)
//! stays on the process's main runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc};

/// A connection's work, made into a future on the worker (a socket must be
/// registered with the runtime that polls it).
type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

thread_local! {
    /// 1 + this worker's index on a worker thread, 0 elsewhere.
    static CURRENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The slot of the current thread: 1 + its worker index on a worker, 0 on
/// any other thread. Per-thread state (the upstream pools' idle lists) is
/// kept in [`slots`] slots and indexed by this.
pub(crate) fn current() -> usize {
    CURRENT.with(std::cell::Cell::get)
}

/// How many slots per-thread state needs: one per worker, one for the
/// other threads. Fixed for the process: every server starts this many
/// workers less one.
pub(crate) fn slots() -> usize {
    static SLOTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| {
        // the CPUs this process may run on (affinity and cgroup quota)
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) + 1
    })
}

/// What a worker and the accept loop share.
#[derive(Default)]
struct Load {
    /// Connections handed to the worker whose socket is still open (a
    /// WebSocket tunnel's too, after its connection's task ended).
    open: AtomicUsize,
    /// Woken when `open` drops to zero.
    none_open: Notify,
    /// The worker's thread is gone: it gets no more connections.
    dead: AtomicBool,
}

/// One open connection on a worker, held with its socket: while any is
/// held, the worker (and its runtime, which polls the socket) stays up.
pub(crate) struct Open(Arc<Load>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_open.notify_waiters();
        }
    }
}

/// One worker as the accept loop sees it.
struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    load: Arc<Load>,
}

/// A server's connection workers. Dropping it lets each worker finish the
/// connections it has (WebSocket tunnels included); then its thread ends,
/// and with its runtime the tasks those connections left (idle upstream
/// connections).
pub(crate) struct Workers {
    workers: Vec<Worker>,
}

impl Workers {
    /// Starts one worker per CPU this process may use. The workers log
    /// through the subscriber current here (the global one in the binary;
    /// a test's own, in tests).
    pub(crate) fn start() -> std::io::Result<Self> {
        let mut workers = Vec::with_capacity(slots() - 1);
        for index in 0..slots() - 1 {
            let (jobs, rx) = mpsc::unbounded_channel();
            let load = Arc::new(Load::default());
            // the binary's global subscriber reaches every thread; a scoped
            // one (a test's) is set on the worker too. Only then: a scoped
            // subscriber anywhere sends every thread's events the slow way
            let dispatch = (!crate::telemetry::installed())
                .then(|| tracing::dispatcher::get_default(Clone::clone));
            let worker_load = load.clone();
            let (built_tx, built_rx) = std::sync::mpsc::sync_channel(1);
            std::thread::Builder::new()
                .name(format!("gatehouse-worker-{index}"))
                .spawn(move || {
                    let _logs = dispatch.as_ref().map(tracing::dispatcher::set_default);
                    // built on its own thread: a runtime dropped on the
                    // caller's (inside its runtime, if this thread could not
                    // start) would panic
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => {
                            let _ = built_tx.send(Ok(()));
                            rt
                        }
                        Err(e) => {
                            let _ = built_tx.send(Err(e));
                            return;
                        }
                    };
                    CURRENT.with(|c| c.set(index + 1));
                    // marks the worker dead however its thread ends
                    let _dead = Dead(worker_load.clone());
                    runtime.block_on(run(rx, &worker_load));
                })?;
            built_rx
                .recv()
                .map_err(|_gone| std::io::Error::other("a worker thread ended at its start"))??;
            workers.push(Worker { jobs, load });
        }
        Ok(Self { workers })
    }

    /// Runs `make(open)`'s future on the worker with the fewest open
    /// connections; the connection keeps `open` as long as its socket.
    /// `make` runs on that worker's thread, inside its runtime.
    pub(crate) fn spawn<M, F>(&self, make: M)
    where
        M: FnOnce(Open) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(worker) = self
            .workers
            .iter()
            .filter(|w| !w.load.dead.load(Ordering::Relaxed))
            .min_by_key(|w| w.load.open.load(Ordering::Relaxed))
        else {
            tracing::error!("no connection worker is left; connection dropped");
            return;
        };
        worker.load.open.fetch_add(1, Ordering::AcqRel);
        let open = Open(worker.load.clone());
        let job: Job = Box::new(move || Box::pin(make(open)));
        if worker.jobs.send(job).is_err() {
            // its thread is gone: the job, and its count, were dropped
            worker.load.dead.store(true, Ordering::Relaxed);
            tracing::error!("a connection worker is gone; connection dropped");
        }
    }
}

/// Marks a worker dead when its thread ends.
struct Dead(Arc<Load>);

impl Drop for Dead {
    fn drop(&mut self) {
        self.0.dead.store(true, Ordering::Relaxed);
    }
}

/// A worker's loop: spawns each job it is handed; once the server drops
/// its end, waits until none of its connections is open.
async fn run(mut jobs: mpsc::UnboundedReceiver<Job>, load: &Load) {
    while let Some(job) = jobs.recv().await {
        // made inside the task: a panic there ends that connection only
        tokio::spawn(async move { job().await });
    }
    loop {
        let none_open = load.none_open.notified();
        tokio::pin!(none_open);
        // registered before the count is read: a drop to zero in between
        // still wakes it
        none_open.as_mut().enable();
        if load.open.load(Ordering::Acquire) == 0 {
            return;
        }
        none_open.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn each_job_runs_on_a_worker_thread_inside_its_runtime() {
        let workers = Workers::start().expect("workers");
        let (tx, mut rx) = mpsc::unbounded_channel();
        for _ in 0..4 {
            let tx = tx.clone();
            workers.spawn(move |_open| async move {
                // a timer works only inside the worker's runtime
                tokio::time::sleep(Duration::from_millis(1)).await;
                let _ = tx.send((current(), std::thread::current().name().map(str::to_owned)));
            });
        }
        drop(tx);
        let mut seen = Vec::new();
        while let Some(s) = rx.recv().await {
            seen.push(s);
        }
        assert_eq!(seen.len(), 4);
        for (slot, name) in seen {
            assert!(slot >= 1 && slot < slots(), "slot {slot}");
            assert_eq!(name, Some(format!("gatehouse-worker-{}", slot - 1)));
        }
        assert_eq!(current(), 0, "the test's own thread is no worker");
    }

    #[tokio::test]
    async fn connections_go_where_fewest_are_open() {
        let workers = Workers::start().expect("workers");
        let (hold_tx, hold_rx) = tokio::sync::watch::channel(());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let n = 2 * workers.workers.len();
        for _ in 0..n {
            let tx = tx.clone();
            let mut hold = hold_rx.clone();
            workers.spawn(move |open| async move {
                let _open = open;
                let _ = tx.send(current());
                let _ = hold.changed().await;
            });
        }
        let mut per_slot = vec![0; slots()];
        for _ in 0..n {
            per_slot[rx.recv().await.expect("ran")] += 1;
        }
        // held open: each worker got two
        assert_eq!(&per_slot[1..], vec![2; workers.workers.len()].as_slice());
        for w in &workers.workers {
            assert_eq!(w.load.open.load(Ordering::Relaxed), 2);
        }
        drop(hold_tx);
        // ended: the counts go back to zero
        for _ in 0..200 {
            if workers
                .workers
                .iter()
                .all(|w| w.load.open.load(Ordering::Relaxed) == 0)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("open counts did not return to zero");
    }

    #[test]
    fn a_dropped_server_lets_its_connections_and_tunnels_finish() {
        let workers = Workers::start().expect("workers");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let tunnel_tx = done_tx.clone();
        // a connection still being served
        workers.spawn(move |open| async move {
            let _open = open;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = done_tx.send("connection");
        });
        // a WebSocket tunnel: its connection's task has ended, its socket
        // goes on in a task of its own
        workers.spawn(move |open| async move {
            tokio::spawn(async move {
                let _open = open;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tunnel_tx.send("tunnel");
            });
        });
        drop(workers);
        let mut ended: Vec<&str> = (0..2)
            .map(|_| {
                done_rx
                    .recv_timeout(Duration::from_secs(5))
                    .expect("ran to its end")
            })
            .collect();
        ended.sort_unstable();
        assert_eq!(ended, ["connection", "tunnel"]);
    }
}
