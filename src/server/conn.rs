//! One client connection, from its first byte to its close: which HTTP
//! version it speaks, hyper serving it, and for HTTP/1 the wait between
//! requests outside hyper ("parked").
//!
//! Why park: hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for
//! every HTTP/1 connection as long as it serves it, busy or idle, and does
//! not let them be sized. A keep-alive connection quiet for [`PARK_AFTER`]
//! is taken back from hyper (`into_parts`): while it waits for its next
//! request it holds its socket and a few words, not 16 KiB. Its next bytes
//! hand it to a new hyper connection, with what is left of the time the
//! next head has (hyper's `header_read_timeout`, counted from the end of
//! the last response as hyper counts it). Busy connections are never
//! parked: their next request comes within microseconds.
//!
//! A connection is taken back only when hyper holds nothing that would be
//! lost: no request in flight, every response byte flushed, and no request
//! ever that leaves hyper's reading state unknown (a request body, which
//! hyper may not have read to its end; not HTTP/1.1; a 101). Bytes hyper
//! read but had not parsed are handed to the next hyper connection first.
//!
//! Owns: the bytes read before hyper has the connection, the choice to
//! park. Must not: look at requests beyond what decides that choice.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Buf as _, Bytes, BytesMut};
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::LimitsConfig;
use crate::limits::{ConnActivity, ConnLimits, ConnPermit, Tracked};
use crate::router::{ConnInfo, handle};
use crate::state::AppState;

/// How long an HTTP/1 connection is quiet before it is taken out of hyper.
/// Far above the gap between a busy client's requests (microseconds: they
/// never pay for a new hyper connection), far below how long browsers and
/// front proxies keep idle connections (seconds to minutes). Short, because
/// connections opened together hold hyper's buffers together until then,
/// and the allocator keeps that peak (nginx frees a keep-alive
/// connection's buffers at once).
const PARK_AFTER: Duration = Duration::from_millis(50);

/// The client connection preface of HTTP/2 (RFC 9113, 3.4): a connection
/// that begins with it speaks HTTP/2 with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's end was, for the debug log.
pub(super) type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP/1 and HTTP/2 settings, from `limits`. Built once.
pub(super) struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
}

impl Protocols {
    /// The settings for `limits`.
    pub(super) fn new(limits: &LimitsConfig) -> Self {
        let mut h1 = http1::Builder::new();
        h1
            // the timer is what makes header_read_timeout take effect; it
            // also bounds a keep-alive connection's wait for its next request
            // head. It must stay hyper's while hyper has the connection: only
            // hyper knows when a head has begun, and it closes the
            // connection at once (a graceful shutdown would let a trickled
            // head go on reading). pipeline_flush stays off: with it, hyper
            // may hold a response unwritten while it reads, and a parked
            // connection would lose it
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // a head that does not fit is answered 431
            .max_buf_size(limits.max_header_bytes);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(limits.http2_keepalive_interval)
            .keep_alive_timeout(limits.http2_keepalive_timeout)
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            // CVE-2023-44487 (rapid reset): streams the client opens and
            // resets before we answer, and streams we reset for its errors,
            // are capped
            .max_pending_accept_reset_streams(super::MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(super::MAX_LOCAL_ERROR_RESET_STREAMS);
        Self {
            h1,
            h2,
            header_read_timeout: limits.header_read_timeout,
        }
    }
}

/// Serves one connection until it ends, is idle too long (no request begun
/// within the header timeout, or none in flight for `idle_timeout`), or the
/// server stops (graceful: in-flight requests finish).
pub(super) async fn serve<I>(
    mut io: ConnIo<I>,
    protocols: &Protocols,
    state: &AppState,
    live: Arc<ArcSwap<AppState>>,
    conn: ConnInfo,
    conns: &Arc<ConnLimits>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), ConnError>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let limits = &state.config.limits;
    let activity = io.activity.clone();
    let idle = activity.idle(limits.header_read_timeout, limits.idle_timeout);
    tokio::pin!(idle);
    let mut idle = Gated::new(idle);
    // which version: read until the HTTP/2 preface is seen or ruled out
    let h2 = tokio::select! {
        r = std::future::poll_fn(|cx| io.poll_sniff(cx)) => match r? {
            Some(h2) => h2,
            // closed before a byte
            None => return Ok(()),
        },
        () = &mut idle => return Ok(()),
        _ = stopped.changed() => return Ok(()),
    };
    let svc = {
        let activity = activity.clone();
        service_fn(move |req: http::Request<hyper::body::Incoming>| {
            // once per request: it finishes on the state it started with
            let state = live.load_full();
            if req.version() != http::Version::HTTP_11
                || !hyper::body::Body::is_end_stream(req.body())
            {
                activity.keep_in_hyper();
            }
            let guard = activity.begin();
            // boxed: hyper keeps the future per request in flight, and
            // moving it unboxed copied its whole size each time
            Box::pin(async move {
                let resp = handle(&state, req, conn).await;
                if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    guard.activity().keep_in_hyper();
                }
                Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, guard)))
            })
        })
    };
    if h2 {
        // boxed: inline, hyper's HTTP/2 state sized every connection's
        // task, an HTTP/1 one's too
        let mut connection = Box::pin(protocols.h2.serve_connection(io, svc));
        let mut closing = false;
        let stop = std::pin::pin!(stopped.changed());
        let mut stop = Gated::new(stop);
        loop {
            tokio::select! {
                r = connection.as_mut() => return r.map_err(Into::into),
                () = &mut idle, if !closing => {
                    connection.as_mut().graceful_shutdown();
                    return finish(connection, protocols.header_read_timeout).await;
                }
                _ = &mut stop, if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    let mut svc = svc;
    // a resumed connection's next head must begin being answered by this
    // deadline (hyper's own timer, set afresh for each connection, would
    // give it the whole header_read_timeout again)
    let mut head_deadline: Option<Instant> = None;
    loop {
        // boxed: the connection is moved out whole when it is parked, and
        // a parked connection's task keeps a pointer, not hyper's state
        let mut connection = Box::pin(protocols.h1.serve_connection(io, svc).with_upgrades());
        let since = activity.requests_begun();
        let park = std::pin::pin!(park_due(&activity, since, false));
        let mut park = Gated::new(park);
        let head_timer = tokio::time::sleep_until(head_deadline.unwrap_or_else(far_future));
        tokio::pin!(head_timer);
        let mut closing = false;
        {
            // gated like `idle` and `park`: polled only when the watch
            // changed, not at each of the task's wakes (about 500
            // instructions a request)
            let stop = std::pin::pin!(stopped.changed());
            let mut stop = Gated::new(stop);
            loop {
                tokio::select! {
                    r = connection.as_mut() => return r.map_err(Into::into),
                    () = &mut idle, if !closing => {
                        connection.as_mut().graceful_shutdown();
                        return finish(connection, protocols.header_read_timeout).await;
                    }
                    _ = &mut stop, if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = &mut park, if !closing && activity.parkable() => {
                        if activity.may_park() {
                            break;
                        }
                        // a response still being flushed to a slow reader
                        park.set(park_due(&activity, since, true));
                    }
                    () = head_timer.as_mut(), if head_deadline.is_some() => {
                        if activity.requests_begun() == since {
                            // the head did not come in time: closed at once,
                            // as hyper's timer does
                            return Ok(());
                        }
                        head_deadline = None;
                    }
                }
            }
        }
        // may_park held: nothing in flight, nothing unflushed, no upgrade
        let Some(parts) = Pin::into_inner(connection).into_parts() else {
            return Ok(());
        };
        io = parts.io;
        svc = parts.service;
        io.unread(&parts.read_buf);
        drop(parts.read_buf);
        // hyper's wait for the next head began when the last response was
        // all flushed
        let deadline =
            Instant::from_std(activity.head_wait_began()) + protocols.header_read_timeout;
        if !io.has_unread() {
            let woke = {
                let _parked = conns.park();
                tokio::select! {
                    r = std::future::poll_fn(|cx| io.poll_more(cx)) => Woke::Read(r?),
                    () = &mut idle => Woke::Close,
                    // closed at once, as hyper's timer does
                    () = tokio::time::sleep_until(deadline) => return Ok(()),
                    _ = stopped.changed() => Woke::Close,
                }
            };
            match woke {
                Woke::Read(true) => {}
                // the client closed its keep-alive connection, or we do
                Woke::Read(false) | Woke::Close => return close(io).await,
            }
        }
        if deadline <= Instant::now() {
            return Ok(());
        }
        head_deadline = Some(deadline);
    }
}

/// A future polled only once something it waits on (a timer, a notify)
/// woke it, not at every wake of the connection's task.
///
/// Why: the connection's `select!` polls every arm whenever its task
/// wakes, several times per request (the request head, the upstream's
/// answer, the flush), and the idle and park arms are timers and notifies
/// that almost never fire: polling them each time cost about 700
/// instructions a request. The inner future gets a waker of its own, which
/// marks the gate and wakes the task. Not polled again once it is ready
/// (it would stay pending): every arm it is used in returns, replaces it
/// (`set`) or is disabled (the stop arm, by `closing`) when it fires.
struct Gated<F> {
    inner: F,
    gate: Arc<Gate>,
    /// `gate` as a waker, made once.
    waker: std::task::Waker,
}

struct Gate {
    /// Set by the inner future's waker; taken by the poll that follows.
    woken: std::sync::atomic::AtomicBool,
    /// The task to wake.
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Release);
        self.task.wake();
    }
}

impl<F> Gated<F> {
    /// Gates `inner`, which is polled at the first poll.
    fn new(inner: F) -> Self {
        let gate = Arc::new(Gate {
            woken: std::sync::atomic::AtomicBool::new(true),
            task: futures_util::task::AtomicWaker::new(),
        });
        Self {
            inner,
            waker: std::task::Waker::from(Arc::clone(&gate)),
            gate,
        }
    }
}

impl<G: Future> Gated<Pin<&mut G>> {
    /// Replaces the inner future, polled at the next poll.
    fn set(&mut self, next: G) {
        self.inner.set(next);
        self.gate
            .woken
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

impl<F: Future + Unpin> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // registered before the mark is read: a wake in between is seen
        // at the next poll
        this.gate.task.register(cx.waker());
        if !this
            .gate
            .woken
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker))
    }
}

/// Why a parked connection's wait ended.
enum Woke {
    /// The client sent more (true) or closed (false).
    Read(bool),
    /// The idle timeout, or a stop.
    Close,
}

/// An instant no timer reaches (a disabled `select!` arm still needs one).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Ends a parked connection in order (a TLS connection sends its
/// close_notify), giving a peer that does not read a second at most.
async fn close<I: Write + Unpin>(mut io: I) -> Result<(), ConnError> {
    let shutdown = std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx));
    let _ = tokio::time::timeout(Duration::from_secs(1), shutdown).await;
    Ok(())
}

/// Waits until the connection may be parked: a request begun after the
/// first `since` has ended (a connection is never parked before a request
/// of its own, so one resumed with a partial head is not parked again at
/// once), and it has been quiet for [`PARK_AFTER`]; after a declined park
/// (`retry`), [`PARK_AFTER`] more first. Polled, not woken by requests: a
/// busy connection's timer wakes once per [`PARK_AFTER`], whatever its
/// rate of requests.
async fn park_due(activity: &ConnActivity, since: u64, retry: bool) {
    if retry {
        tokio::time::sleep(PARK_AFTER).await;
    }
    activity.request_ended_since(since).await;
    loop {
        let due = Instant::from_std(activity.idle_since()) + PARK_AFTER;
        let now = Instant::now();
        if activity.in_flight() > 0 {
            tokio::time::sleep(PARK_AFTER).await;
            // still in flight: a long answer (a stream, a long poll) is
            // waited for, not polled every PARK_AFTER to its end
            let begun = activity.requests_begun();
            if activity.in_flight() > 0 && begun > 0 {
                activity.request_ended_since(begun - 1).await;
            }
        } else if due > now {
            tokio::time::sleep_until(due).await;
        } else {
            return;
        }
    }
}

/// Gives a connection told to shut down, with nothing in flight, `grace`
/// to do so: a peer that will not even take the GOAWAY or the close gets
/// no more.
async fn finish<C>(connection: C, grace: Duration) -> Result<(), ConnError>
where
    C: Future<Output = hyper::Result<()>>,
{
    match tokio::time::timeout(grace, connection).await {
        Ok(r) => r.map_err(Into::into),
        Err(_elapsed) => Ok(()),
    }
}

/// A connection's socket (or TLS stream), with the bytes read from it that
/// hyper has yet to see, what the connection is doing (whether hyper
/// flushed what it wrote among it), and its [`ConnPermit`]: the place is
/// given back when the socket is dropped, which for an upgraded connection
/// (a WebSocket) is when the tunnel closes, not when HTTP ends.
pub(super) struct ConnIo<I> {
    io: I,
    /// Read from `io` before the current hyper connection had it: given to
    /// hyper before anything more is read.
    unread: Bytes,
    activity: Arc<ConnActivity>,
    _permit: ConnPermit,
    /// Keeps the worker serving this socket up (a tunnel's too).
    _open: super::workers::Open,
}

impl<I: Read + Unpin> ConnIo<I> {
    /// A new connection's IO, holding `permit` and its worker's `open`.
    pub(super) fn new(io: I, permit: ConnPermit, open: super::workers::Open) -> Self {
        Self {
            io,
            unread: Bytes::new(),
            activity: ConnActivity::new(),
            _permit: permit,
            _open: open,
        }
    }

    /// Puts a copy of `bytes` before what is still unread. A copy: hyper's
    /// read buffer (8 KiB or more) must not be kept alive by the few bytes
    /// of a head it had begun, nor by an empty view of it.
    fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut joined = BytesMut::with_capacity(bytes.len() + self.unread.len());
        joined.extend_from_slice(bytes);
        joined.extend_from_slice(&self.unread);
        self.unread = joined.freeze();
    }

    fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }

    /// Reads the connection's first bytes until they are the HTTP/2
    /// preface (`Some(true)`) or cannot be (`Some(false)`); `None`: closed
    /// before a byte. What was read stays unread for hyper.
    fn poll_sniff(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Option<bool>>> {
        loop {
            let have = self.unread.len().min(H2_PREFACE.len());
            if self.unread[..have] != H2_PREFACE[..have] {
                return Poll::Ready(Ok(Some(false)));
            }
            if have == H2_PREFACE.len() {
                return Poll::Ready(Ok(Some(true)));
            }
            if !ready!(self.poll_more(cx))? {
                // closed mid-preface: hyper's HTTP/1 side answers or closes
                return Poll::Ready(Ok((have > 0).then_some(false)));
            }
        }
    }

    /// Reads what the peer sent next into `unread`; false: it closed.
    fn poll_more(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        // most request heads in one read (hyper reads the rest)
        let mut chunk = [0_u8; 4096];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, buf.unfilled()))?;
        let got = buf.filled();
        if got.is_empty() {
            return Poll::Ready(Ok(false));
        }
        let mut joined = BytesMut::with_capacity(self.unread.len() + got.len());
        joined.extend_from_slice(&self.unread);
        joined.extend_from_slice(got);
        self.unread = joined.freeze();
        Poll::Ready(Ok(true))
    }
}

impl<I: Read + Unpin> Read for ConnIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.unread.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        if n == self.unread.len() {
            // not an empty view that keeps its buffer
            self.unread = Bytes::new();
        } else {
            self.unread.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: Write + Unpin> Write for ConnIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.activity.wrote();
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = ready!(Pin::new(&mut self.io).poll_flush(cx));
        if r.is_ok() {
            self.activity.flushed();
        }
        Poll::Ready(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.activity.wrote();
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.activity.wrote();
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its polls; ready once `open` is notified.
    struct Counted<'a> {
        polls: &'a AtomicUsize,
        open: Pin<Box<tokio::sync::futures::Notified<'a>>>,
    }

    impl Future for Counted<'_> {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            self.open.as_mut().poll(cx)
        }
    }

    #[tokio::test]
    async fn a_gated_future_is_polled_only_when_its_own_waker_fires() {
        let polls = AtomicUsize::new(0);
        let open = tokio::sync::Notify::new();
        let other = tokio::sync::Notify::new();
        let counted = std::pin::pin!(Counted {
            polls: &polls,
            open: Box::pin(open.notified()),
        });
        let mut gated = Gated::new(counted);
        let mut others = 0;
        let done = async {
            loop {
                // biased, `other` first: when both are woken, `other` wins
                // and the gate's mark must survive to the next round
                tokio::select! {
                    biased;
                    () = other.notified() => others += 1,
                    () = &mut gated => return others,
                }
            }
        };
        let wakes = async {
            for _ in 0..5 {
                other.notify_one();
                tokio::task::yield_now().await;
            }
            open.notify_one();
        };
        let (others, ()) = tokio::join!(done, wakes);
        assert_eq!(others, 5);
        // the first poll, and the one its notify woke: not one per wake of
        // the task
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_gated_timer_fires_and_a_replaced_one_is_polled_afresh() {
        let timer = std::pin::pin!(tokio::time::sleep(Duration::from_secs(3600)));
        let mut gated = Gated::new(timer);
        let pending = tokio::time::timeout(
            Duration::from_millis(20),
            std::future::poll_fn(|cx| Pin::new(&mut gated).poll(cx)),
        )
        .await;
        assert!(pending.is_err());
        gated.set(tokio::time::sleep(Duration::from_millis(10)));
        tokio::time::timeout(Duration::from_secs(5), &mut gated)
            .await
            .expect("the replaced timer fired");
    }
}
