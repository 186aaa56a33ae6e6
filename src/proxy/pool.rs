//! One upstream's connections: HTTP/1.1, kept open between requests.
//!
//! Why not hyper-util's pooled client: it keys one shared pool by scheme
//! and authority, so every request hashed both (SipHash) twice, took a
//! checkout future through a waiter queue and a connection wrapper, and
//! moved the request through several layers of futures. Here each
//! upstream has its own pool (known when the config is read), and a
//! request pops a ready connection off a short list: a signed-in GET went
//! from 57,400 to 49,600 instructions (callgrind).
//!
//! What it keeps of that client's behaviour:
//! - a connection the upstream closed while idle is skipped, and a request
//!   that a reused connection did not start to send (it was closed under
//!   it) is sent again on another: the request was not sent, so this is
//!   safe for any method;
//! - a connection goes back to the pool only once hyper says it is ready
//!   for the next request (its response read to the end); one whose
//!   response is still streaming goes back when it ends;
//! - at most [`MAX_IDLE`] idle connections are kept per connection worker
//!   (as nginx's `keepalive`, per worker process), each for at most
//!   [`IDLE_TIMEOUT`]: an older one is not used (a middlebox may have
//!   dropped it silently), and a task closes them;
//! - HTTP/1 upgrades (WebSocket) work.
//!
//! And one thing it did not do: connecting is bounded as a whole (TCP,
//! TLS and the handshake); the connector's own timeout covers TCP only.
//!
//! HTTP/1.1 only, over TLS too (the connector offers no ALPN, so the server
//! speaks HTTP/1.1), as nginx does: an upgrade (WebSocket) needs HTTP/1.1,
//! and one kind of connection keeps the pool one list. hyper-util's client
//! spoke HTTP/2 to a TLS upstream that offered it, where a WebSocket
//! upgrade failed.
//!
//! Owns: upstream connections. Must not: look at requests or responses
//! beyond sending them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower_service::Service as _;

use crate::server::workers;

/// Idle connections kept per upstream and connection worker.
pub(super) const MAX_IDLE: usize = 64;

/// How long an idle connection is kept (below the 2 minutes many load
/// balancers keep one, above the 60-75 s of nginx and Node).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a request did not get a response head.
pub(super) type SendError = Box<dyn std::error::Error + Send + Sync>;

/// The [`SendError`] of a request whose connection took it but gave no
/// response head within the time [`Pool::send`] was given.
#[derive(Debug)]
pub(super) struct NoAnswerInTime;

impl std::fmt::Display for NoAnswerInTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no response head in time")
    }
}

impl std::error::Error for NoAnswerInTime {}

/// One upstream's idle connections and how to open a new one.
pub(super) struct Pool<B> {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector is asked for.
    target: Uri,
    /// How long connecting (TCP, TLS, handshake) may take.
    connect_timeout: Duration,
    /// How long a connection may stay idle ([`IDLE_TIMEOUT`]; shorter in
    /// tests).
    idle_timeout: Duration,
    /// Idle connections, the most recently used last, one list per
    /// connection worker (and one for other threads): a request takes a
    /// connection whose task runs on its own thread, so neither wakes the
    /// other thread (see `server::workers`).
    idle: Box<[Mutex<Vec<Idle<B>>>]>,
    /// Whether the task that closes stale idle connections was started.
    reaper: AtomicBool,
}

struct Idle<B> {
    tx: http1::SendRequest<B>,
    since: Instant,
}

impl<B> std::fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .finish()
    }
}

impl<B> Pool<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<SendError>,
{
    /// A pool reaching `target` (`scheme://authority/`) through
    /// `connector`, connecting within `connect_timeout`.
    pub(super) fn new(
        connector: HttpsConnector<HttpConnector>,
        target: Uri,
        connect_timeout: Duration,
    ) -> Arc<Self> {
        Self::with_idle_timeout(connector, target, connect_timeout, IDLE_TIMEOUT)
    }

    fn with_idle_timeout(
        connector: HttpsConnector<HttpConnector>,
        target: Uri,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            connector,
            target,
            connect_timeout,
            idle_timeout,
            idle: (0..workers::slots()).map(|_| Mutex::default()).collect(),
            reaper: AtomicBool::new(false),
        })
    }

    /// Sends `req` (origin-form, its `Host` set) on an idle connection or a
    /// new one, and gives the connection back once it is ready again.
    /// Dropping the future before the response head closes the connection
    /// (HTTP/1 cannot abort one request otherwise). With `answer_within`,
    /// a connection that took the request and gave no response head in
    /// that time is closed, and the error is [`NoAnswerInTime`]: the time
    /// counts from when a connection was had, as connecting has its own
    /// bound.
    pub(super) async fn send(
        self: &Arc<Self>,
        mut req: Request<B>,
        answer_within: Option<Duration>,
    ) -> Result<Response<Incoming>, SendError> {
        // each resend spends an idle connection; a new one is never resent
        for _ in 0..=MAX_IDLE {
            let (mut tx, reused) = match self.take() {
                Some(tx) => (tx, true),
                None => (self.connect().await?, false),
            };
            let sent = match answer_within {
                None => tx.try_send_request(req).await,
                Some(within) => tokio::time::timeout(within, tx.try_send_request(req))
                    .await
                    .map_err(|_elapsed| NoAnswerInTime)?,
            };
            match sent {
                Ok(resp) => {
                    self.release(tx);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // not sent: the idle connection was closed under us
                    Some(unsent) if reused => {
                        tracing::debug!(error = %e.error(), "idle upstream connection closed; trying another");
                        req = unsent;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
        Err("every idle upstream connection closed under the request".into())
    }

    /// The most recently used idle connection still open and not idle too
    /// long, if any.
    fn take(&self) -> Option<http1::SendRequest<B>> {
        let mut idle = self
            .here()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(i) = idle.pop() {
            if i.since.elapsed() >= self.idle_timeout {
                // the most recent is too old: so are the rest
                idle.clear();
                return None;
            }
            if i.tx.is_ready() {
                return Some(i.tx);
            }
            // closed by the upstream while idle: dropped
        }
        None
    }

    async fn connect(&self) -> Result<http1::SendRequest<B>, SendError> {
        let connect = async {
            let io = self.connector.clone().call(self.target.clone()).await?;
            http1::Builder::new()
                .handshake(io)
                .await
                .map_err(SendError::from)
        };
        // the connector's own timeout covers TCP only, not TLS
        let (tx, conn) = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_elapsed| format!("no connection within {:?}", self.connect_timeout))??;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }

    /// Puts `tx` back once it is ready for another request: at once when
    /// the response was read whole, else when its body ends.
    fn release(self: &Arc<Self>, mut tx: http1::SendRequest<B>) {
        if tx.is_ready() {
            self.put(tx);
            return;
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            // an error: the connection closed (an upgrade, an error, a
            // body dropped unread)
            if tx.ready().await.is_ok()
                && let Some(pool) = pool.upgrade()
            {
                pool.put(tx);
            }
        });
    }

    fn put(self: &Arc<Self>, tx: http1::SendRequest<B>) {
        // put runs in the runtime (a request, or a task it spawned)
        if !self.reaper.load(Ordering::Relaxed)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
            && !self.reaper.swap(true, Ordering::Relaxed)
        {
            rt.spawn(reap(Arc::downgrade(self), self.idle_timeout));
        }
        let mut idle = self
            .here()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() >= MAX_IDLE {
            // the least recently used goes
            idle.remove(0);
        }
        idle.push(Idle {
            tx,
            since: Instant::now(),
        });
    }

    /// This thread's idle list.
    fn here(&self) -> &Mutex<Vec<Idle<B>>> {
        // slots() is fixed for the process, so current() is in range; the
        // last list is the safe answer all the same
        let i = workers::current().min(self.idle.len() - 1);
        &self.idle[i]
    }

    /// Drops the connections idle longer than `max` or closed.
    fn evict(&self, max: Duration) {
        let now = Instant::now();
        for idle in &self.idle {
            let mut idle = idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            idle.retain(|i| now.duration_since(i.since) < max && !i.tx.is_closed());
        }
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|i| i.lock().map_or(0, |i| i.len()))
            .sum()
    }
}

/// Closes a pool's connections idle `max` or longer now and then, until
/// the pool is gone.
async fn reap<B>(pool: Weak<Pool<B>>, max: Duration)
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<SendError>,
{
    /// Lets the next put start another reaper when this one is dropped
    /// with its runtime (a worker's, ended with its server).
    struct Restart<B>(Weak<Pool<B>>);
    impl<B> Drop for Restart<B> {
        fn drop(&mut self) {
            if let Some(pool) = self.0.upgrade() {
                pool.reaper.store(false, Ordering::Relaxed);
            }
        }
    }
    let _restart = Restart(pool.clone());
    let mut tick = tokio::time::interval(max / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.evict(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, Empty, Full};
    use std::io::{Read as _, Write as _};
    use std::sync::atomic::AtomicUsize;

    type TestBody = Full<bytes::Bytes>;

    fn pool_with(port: u16, idle_timeout: Duration) -> Arc<Pool<TestBody>> {
        let connector = crate::http::client::upstream_connector(Duration::from_secs(2)).unwrap();
        Pool::with_idle_timeout(
            connector,
            format!("http://127.0.0.1:{port}/").parse().unwrap(),
            Duration::from_secs(2),
            idle_timeout,
        )
    }

    fn pool(port: u16) -> Arc<Pool<TestBody>> {
        pool_with(port, IDLE_TIMEOUT)
    }

    fn request(method: &str, body: &'static str) -> Request<TestBody> {
        Request::builder()
            .method(method)
            .uri("/")
            .header("host", "u")
            .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
            .unwrap()
    }

    fn get() -> Request<TestBody> {
        request("GET", "")
    }

    /// Reads one request (head, and a body of `Content-Length`) off `s`;
    /// `None` at EOF.
    fn read_request(s: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + len {
                    buf.drain(..end + 4 + len);
                    return Some(head);
                }
            }
            let mut chunk = [0; 1024];
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// An upstream on its own thread (so that the test's runtime does not
    /// schedule it): `serve(n, stream)` runs for the `n`th connection
    /// accepted. Counts the requests it read, through `read_request`.
    fn upstream<F>(serve: F) -> (u16, Arc<AtomicUsize>)
    where
        F: Fn(usize, std::net::TcpStream) + Send + Sync + 'static,
    {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let serve = Arc::clone(&serve);
                std::thread::spawn(move || serve(n, s));
            }
        });
        (port, accepted)
    }

    /// Answers every request `204`, keeping the connection open.
    fn answer_all(_n: usize, mut s: std::net::TcpStream) {
        let mut buf = Vec::new();
        while read_request(&mut s, &mut buf).is_some() {
            if s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_err() {
                return;
            }
        }
    }

    /// Until `cond` holds, yielding to the runtime (hyper's connection
    /// tasks); false after a second.
    async fn eventually(cond: impl Fn() -> bool) -> bool {
        for _ in 0..1000 {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        false
    }

    #[tokio::test]
    async fn each_worker_reuses_only_the_connections_it_opened() {
        use crate::server::workers::{self, Workers};
        let (port, accepted) = upstream(answer_all);
        let p = pool(port);
        let w = Workers::start().unwrap();
        let n = workers::slots() - 1;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // one job per worker (each is placed where none is open yet), each
        // sending twice, the second once its first connection is back
        for _ in 0..n {
            let (p, tx) = (p.clone(), tx.clone());
            w.spawn(move |open| async move {
                let _open = open;
                for _ in 0..2 {
                    let r = p.send(get(), None).await.unwrap();
                    r.into_body().collect().await.unwrap();
                    let back = eventually(|| p.here().lock().is_ok_and(|l| !l.is_empty()));
                    assert!(back.await, "the connection went back to this worker's list");
                }
                let _ = tx.send(workers::current());
            });
        }
        drop(tx);
        let mut slots = Vec::new();
        while let Some(s) = rx.recv().await {
            slots.push(s);
        }
        slots.sort_unstable();
        assert_eq!(slots, (1..=n).collect::<Vec<_>>(), "one job per worker");
        // each worker connected once and reused its own connection; another
        // worker's idle one was never taken
        assert_eq!(accepted.load(Ordering::SeqCst), n);
        for slot in 1..=n {
            assert_eq!(p.idle[slot].lock().unwrap().len(), 1, "slot {slot}");
        }
        assert!(p.idle[0].lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_is_read() {
        let (port, accepted) = upstream(answer_all);
        let p = pool(port);
        for _ in 0..5 {
            assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
            assert!(eventually(|| p.idle_count() == 1).await);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_not_used() {
        // one request per connection, closed without `Connection: close`
        let (port, accepted) = upstream(|_, mut s| {
            let mut buf = Vec::new();
            if read_request(&mut s, &mut buf).is_some() {
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
            }
        });
        let p = pool(port);
        for _ in 0..3 {
            assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
            // hyper's connection task sees the close
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_request_racing_the_close_of_an_idle_connection_fails_alone() {
        let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
        let close_rx = Mutex::new(close_rx);
        let (closed_tx, closed_rx) = std::sync::mpsc::channel();
        let closed_tx = Mutex::new(closed_tx);
        let seen = Arc::new(AtomicUsize::new(0));
        let seen_first = Arc::clone(&seen);
        let (port, accepted) = upstream(move |n, mut s| {
            if n > 0 {
                return answer_all(n, s);
            }
            let mut buf = Vec::new();
            read_request(&mut s, &mut buf).unwrap();
            seen_first.fetch_add(1, Ordering::SeqCst);
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            close_rx.lock().unwrap().recv().unwrap();
            s.shutdown(std::net::Shutdown::Both).unwrap();
            // anything more on this connection would be counted
            if read_request(&mut s, &mut buf).is_some() {
                seen_first.fetch_add(1, Ordering::SeqCst);
            }
            drop(s);
            closed_tx.lock().unwrap().send(()).unwrap();
        });
        let p = pool(port);
        assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
        assert!(eventually(|| p.idle_count() == 1).await);
        // closed while the runtime does not run: hyper's task has not seen
        // it, so the idle connection still looks ready when taken
        close_tx.send(()).unwrap();
        closed_rx.recv().unwrap();
        // hyper writes the request before it reads the close: the request
        // was sent, so it is not sent again (an error, a 502 upstream of
        // here). Were the close read first, the unsent request would go
        // on a new connection.
        match p.send(get(), None).await {
            Ok(resp) => {
                assert_eq!(resp.status(), 204);
                assert_eq!(accepted.load(Ordering::SeqCst), 2);
            }
            Err(e) => {
                assert!(e.to_string().contains("connection closed"), "{e}");
                assert_eq!(accepted.load(Ordering::SeqCst), 1);
            }
        }
        // the dead connection is gone: the next request gets a new one
        assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_that_took_the_request_and_stays_silent_is_out_of_time() {
        let (port, accepted) = upstream(|_, mut s| {
            let mut buf = Vec::new();
            read_request(&mut s, &mut buf).unwrap();
            // read, never answered, held open
            std::thread::sleep(Duration::from_secs(5));
        });
        let p = pool(port);
        let started = std::time::Instant::now();
        let e = p
            .send(get(), Some(Duration::from_millis(100)))
            .await
            .unwrap_err();
        assert!(e.is::<NoAnswerInTime>(), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        // closed, not kept: the next request gets a new connection
        assert_eq!(p.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_request_that_was_sent_is_never_sent_again() {
        let seen = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&seen);
        let (port, accepted) = upstream(move |_, mut s| {
            let mut buf = Vec::new();
            read_request(&mut s, &mut buf).unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            // the POST is read whole, then the connection closes unanswered
            if read_request(&mut s, &mut buf).is_some() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        let p = pool(port);
        assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
        assert!(eventually(|| p.idle_count() == 1).await);
        assert!(p.send(request("POST", "pay once"), None).await.is_err());
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_goes_back_only_when_its_response_body_was_read() {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        let (port, accepted) = upstream(move |n, mut s| {
            if n > 0 {
                return answer_all(n, s);
            }
            let mut buf = Vec::new();
            read_request(&mut s, &mut buf).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
                .unwrap();
            go_rx.lock().unwrap().recv().unwrap();
            s.write_all(b"hello").unwrap();
            answer_all(n, s);
        });
        let p = pool(port);
        let resp = p.send(get(), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(p.idle_count(), 0, "pooled while its body streams");
        // a request meanwhile opens a connection of its own
        assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        go_tx.send(()).unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        assert!(eventually(|| p.idle_count() == 2).await);
    }

    #[tokio::test]
    async fn a_connection_close_answer_is_not_pooled() {
        let (port, accepted) = upstream(|_, mut s| {
            let mut buf = Vec::new();
            read_request(&mut s, &mut buf).unwrap();
            s.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .unwrap();
            // held open: only the header says it will close
            std::thread::sleep(Duration::from_millis(500));
        });
        let p = pool(port);
        assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
        assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(p.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_connection_idle_too_long_is_not_used_and_is_closed() {
        let (port, accepted) = upstream(answer_all);
        let p = pool_with(port, Duration::from_millis(300));
        assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
        assert!(eventually(|| p.idle_count() == 1).await);
        tokio::time::sleep(Duration::from_millis(320)).await;
        // too old at take, whether or not the reaper came by
        assert_eq!(p.send(get(), None).await.unwrap().status(), 204);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // the reaper (every 100 ms here) closes the idle one in time
        assert!(eventually(|| p.idle_count() == 1).await);
        let reaped = async {
            while p.idle_count() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2), reaped)
            .await
            .expect("the reaper closed the idle connection");
    }

    #[tokio::test]
    async fn idle_connections_are_capped() {
        let (port, _accepted) = upstream(answer_all);
        let p = pool(port);
        let sends: Vec<_> = (0..MAX_IDLE + 8).map(|_| p.send(get(), None)).collect();
        for r in futures_util::future::join_all(sends).await {
            assert_eq!(r.unwrap().status(), 204);
        }
        assert!(
            eventually(|| p.idle_count() == MAX_IDLE).await,
            "{}",
            p.idle_count()
        );
        p.evict(Duration::from_secs(3600));
        assert_eq!(p.idle_count(), MAX_IDLE);
        p.evict(Duration::ZERO);
        assert_eq!(p.idle_count(), 0);
    }

    #[tokio::test]
    async fn an_upstream_that_refuses_is_an_error_not_a_hang() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(pool(port).send(get(), None).await.is_err());
    }

    #[tokio::test]
    async fn an_upstream_that_never_finishes_connecting_times_out() {
        // accepts TCP, never answers the TLS hello
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let connector = crate::http::client::upstream_connector(Duration::from_secs(2)).unwrap();
        let p: Arc<Pool<TestBody>> = Pool::new(
            connector,
            format!("https://127.0.0.1:{port}/").parse().unwrap(),
            Duration::from_millis(200),
        );
        let err = tokio::time::timeout(Duration::from_secs(5), p.send(get(), None))
            .await
            .expect("bounded by the connect timeout")
            .unwrap_err();
        assert!(err.to_string().contains("no connection within"), "{err}");
        drop(l);
    }

    #[test]
    fn a_pool_used_outside_a_runtime_does_not_panic() {
        let p: Arc<Pool<Empty<bytes::Bytes>>> = Pool::new(
            crate::http::client::upstream_connector(Duration::from_secs(1)).unwrap(),
            "http://127.0.0.1:9/".parse().unwrap(),
            Duration::from_secs(1),
        );
        assert_eq!(p.idle_count(), 0);
    }
}
